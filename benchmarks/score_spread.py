"""How widely do a criterion's scores spread inside each layer of the CIFAR-10 baseline?

Under one global threshold on score per (square root of) cost, a layer whose normalised
scores are nearly equal is kept almost whole or cut to its floor, depending only on its
cost; widely spread scores cut every layer by a graded amount. This measures the spread
(coefficient of variation of the mean-normalised scores, per trimmable layer) for each
criterion on the scoring images the trimming benchmark uses.

    .venv/bin/python benchmarks/score_spread.py   # needs trim_cifar10.py's baseline

Writes ``benchmarks/results/score_spread.{json,md}``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import cifar10  # noqa: E402
import trim_cifar10 as chain  # noqa: E402

CRITERIA = ("relevance", "relevance_weighted", "apoz", "l1", "random")


def main() -> None:
    from tensorflow import keras

    from fpgacnn.trimming import ChannelGraph
    from fpgacnn.trimming.core import group_scores, kernel_scores

    s = chain.SETTINGS
    data = cifar10.load(seed=s["seed"])
    baseline = keras.models.load_model(chain.BASELINE, compile=False)
    x, _ = chain.subset(data, s["finetune_images"], s["seed"])
    # the first step's scoring images: trim_schedule's seeded choice with the chain's seed
    rep = x[np.sort(np.random.default_rng(s["seed"] + 1).permutation(len(x))[: s["representative"]])]
    graph = ChannelGraph(baseline)
    layers = [g.producers[0] for g in graph.groups if g.trimmable]
    spread = {}
    for criterion in CRITERIA:
        scores = group_scores(graph, kernel_scores(baseline, rep, graph, criterion=criterion,
                                                   batch_size=s["finetune_batch_size"], seed=s["seed"] + 1), "mean")
        spread[criterion] = [round(float(np.std(v) / np.mean(v)), 3) if np.mean(v) > 0 else None
                             for v in scores.values()]
    result = {"layers": layers, "coefficient_of_variation": spread, "scoring_images": int(s["representative"]),
              "normalize": "mean", "command": ".venv/bin/python benchmarks/score_spread.py"}
    out = chain.RESULTS / "score_spread"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    head = "| layer | " + " | ".join(CRITERIA) + " |\n|---|" + "---:|" * len(CRITERIA) + "\n"
    rows = "\n".join(f"| {name} | " + " | ".join(f"{spread[c][i]:.2f}" if spread[c][i] is not None else "-"
                                                 for c in CRITERIA) + " |" for i, name in enumerate(layers))
    out.with_suffix(".md").write_text(
        "# Spread of kernel scores inside each layer (CIFAR-10 baseline)\n\n"
        f"`{result['command']}`: coefficient of variation (standard deviation / mean) of each trimmable "
        f"layer's mean-normalised scores on the trimming benchmark's {s['representative']} scoring images. "
        "Low values: the layer's kernels look alike to the criterion, so a global threshold on score per cost "
        "keeps the layer almost whole or cuts it to its floor. `normalize=\"rank\"` gives every layer the "
        "spread of random scores while keeping the criterion's order.\n\n" + head + rows + "\n")


if __name__ == "__main__":
    main()
