"""How much of the gap at 10 % of the parameters is the fine-tuning budget?

``trim_cifar10.py`` gives every budget step 8 epochs of distilled fine-tuning. This takes
the chain's model at one budget (seed 0) and goes on fine-tuning it with the same recipe
(distilled from the baseline, flipped and shifted views, cosine decay) for more epochs,
then reports validation and test accuracy. The same extra epochs for every criterion.

    nice -n 5 .venv/bin/python benchmarks/trim_cifar10_longer.py   # needs trim_cifar10.py's finished steps

Writes ``benchmarks/results/trim_cifar10_longer.{json,md}``; resumable (one row per run).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import cifar10  # noqa: E402
import trim_cifar10 as chain  # noqa: E402

FRACTION = 0.10
EXTRA_EPOCHS = 16
CRITERIA = ("relevance_weighted", "relevance", "l1", "random")
OUT = chain.WORK / "trim_cifar10_longer"
STEM = "trim_cifar10_longer"


def run(criterion, data, baseline, s) -> dict:
    from tensorflow import keras

    from fpgacnn.distill import finetune
    from fpgacnn.trimming.calibrate import recalibrate_batchnorm
    from fpgacnn.trimming.surgery import custom_objects

    name = f"{criterion}_{round(FRACTION * 1000):04d}"
    done = OUT / f"{name}.json"
    if done.exists():
        return json.loads(done.read_text())
    before = json.loads((chain.RUNS / f"{name}.json").read_text())
    with keras.utils.custom_object_scope(custom_objects()):
        model = keras.models.load_model(chain.RUNS / f"{name}.h5", compile=False)
    x, y = chain.subset(data, s["finetune_images"], s["seed"])
    t0 = time.perf_counter()
    # seed 7: views the chain's steps (seed 1) did not see
    finetune(model, x, y, teacher=chain.CachedTeacher(baseline), epochs=EXTRA_EPOCHS,
             batch_size=s["finetune_batch_size"], learning_rate=s["finetune_learning_rate"], seed=7,
             x_val=data.x_val, y_val=data.y_val, temperature=s["temperature"], alpha=s["alpha"],
             **s["finetune_options"])
    rep = x[np.sort(np.random.default_rng(s["seed"] + 1).permutation(len(x))[: s["representative"]])]
    recalibrate_batchnorm(model, rep, batch_size=s["finetune_batch_size"])
    row = {"criterion": criterion, "param_fraction": FRACTION, "params": int(model.count_params()),
           "epochs_in_chain": s["finetune_epochs"], "extra_epochs": EXTRA_EPOCHS,
           "accuracy_before": before["accuracy"], "val_accuracy_before": before["val_accuracy"],
           "accuracy": chain.accuracy(model, data.x_test, data.y_test),
           "val_accuracy": chain.accuracy(model, data.x_val, data.y_val),
           "seconds": round(time.perf_counter() - t0, 1)}
    OUT.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(row, indent=2) + "\n")
    chain.log(f"longer {criterion}: test {row['accuracy_before']:.4f} -> {row['accuracy']:.4f}")
    return row


def main() -> None:
    from tensorflow import keras

    s = chain.SETTINGS
    data = cifar10.load(seed=s["seed"])
    base = json.loads((chain.WORK / "cifar10_baseline.json").read_text())
    baseline = keras.models.load_model(chain.BASELINE, compile=False)
    rows = [run(c, data, baseline, s) for c in CRITERIA if (chain.RUNS / f"{c}_0100.h5").exists()]
    result = {"baseline_accuracy": base["accuracy"], "fraction": FRACTION, "extra_epochs": EXTRA_EPOCHS,
              "runs": rows, "command": "nice -n 5 .venv/bin/python benchmarks/trim_cifar10_longer.py",
              "cores": os.cpu_count(), "machine": platform.machine()}
    chain.RESULTS.mkdir(parents=True, exist_ok=True)
    (chain.RESULTS / f"{STEM}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"| {r['criterion']} | {r['params']:,} | {100 * r['accuracy_before']:.2f} | {100 * r['accuracy']:.2f} | "
             f"{100 * (r['accuracy'] - r['accuracy_before']):+.2f} | {100 * (base['accuracy'] - r['accuracy']):.2f} |"
             for r in rows]
    (chain.RESULTS / f"{STEM}.md").write_text(
        "# Longer fine-tuning at 10 % of the parameters\n\n"
        f"`{result['command']}` ({result['cores']} cores, {result['machine']}). The chain's model at "
        f"{100 * FRACTION:g} % of the baseline's parameters (`trim_cifar10.md`, seed 0: {s['finetune_epochs']} epochs "
        f"of distilled fine-tuning after each of the 50 %, 25 % and 10 % steps) fine-tuned {EXTRA_EPOCHS} epochs more "
        "with the same recipe (new views), batch-norm statistics re-estimated. Test accuracy (%):\n\n"
        "| criterion | params | after the chain | after the extra epochs | change | below the baseline |\n"
        "|---|---:|---:|---:|---:|---:|\n" + "\n".join(lines) + "\n\n"
        f"Baseline: {100 * base['accuracy']:.2f} %.\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
