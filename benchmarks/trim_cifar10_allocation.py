"""How many kernels each layer keeps, not which: kernel allocation under a parameter budget.

In ``trim_cifar10.py`` every criterion, ranked globally with per-layer mean
normalisation, cuts the first VGG block from 16 to 4-6 kernels on the way to 10 % of
the parameters, although those kernels cost almost nothing (the whole first block is
0.3 % of the parameters) and every later layer sees the image only through them. This
script trims the same baseline one-shot to 10 % and 1.1 % of its parameters under two
allocation rules and fine-tunes each result with the recipe of ``trim_cifar10.py``:

* ``global``: the benchmark's rule (score alone, at least 4 kernels per layer);
* ``global, cost=sqrt_params``: score per square root of the kernel's parameter cost
  (for relevance_weighted and L1).

(Score per full parameter cost was tried in the benchmark's ranking probe: it cuts the
deep layers to their floors; see ``trim_cifar10_score_only.md``.)

Choices are read on the validation split; test accuracy is reported beside it.

    nice -n 5 .venv/bin/python benchmarks/trim_cifar10_allocation.py
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cifar10  # noqa: E402
import trim_cifar10 as bench  # noqa: E402

RUNS = cifar10.WORK / "trim_cifar10_allocation"
RESULTS = bench.RESULTS
FRACTIONS = (0.10, 0.011)
VARIANTS = [("relevance_weighted", None), ("relevance_weighted", "sqrt_params"), ("l1", "sqrt_params")]


def run(criterion, cost, frac, baseline, teacher, data, x, y, s, base_params) -> dict:
    from tensorflow import keras  # noqa: F401

    from fpgacnn.trimming import trim_schedule

    name = f"{criterion}_{cost or 'none'}_{round(frac * 1000):04d}"
    path = RUNS / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    res = trim_schedule(baseline, x, y, target={"params": frac * base_params}, criterion=criterion, rounds=1,
                        finetune_epochs=s["finetune_epochs"], distill=True, teacher=teacher,
                        temperature=s["temperature"], alpha=s["alpha"], x_val=data.x_val, y_val=data.y_val,
                        ranking="global", normalize="mean", cost=cost, min_kernels=4,
                        representative=s["representative"], batch_size=s["finetune_batch_size"],
                        learning_rate=s["finetune_learning_rate"], seed=s["seed"] + 1,
                        finetune_options=s["finetune_options"])
    row = {"criterion": criterion, "cost": cost, "param_fraction": frac, "params": int(res.model.count_params()),
           "val_accuracy": res.report["rounds"][-1]["val_accuracy"],
           "accuracy": bench.accuracy(res.model, data.x_test, data.y_test),
           "kernels": {n: e["kernels_after"] for n, e in res.report["layers"].items()},
           "seconds": round(time.perf_counter() - t0, 1)}
    RUNS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2) + "\n")
    bench.log(f"allocation {name}: params {row['params']} val {row['val_accuracy']:.4f} test {row['accuracy']:.4f}")
    return row


def markdown(rows, base) -> str:
    layers = list(rows[0]["kernels"])
    head = ("| budget | criterion | allocation | params | val. acc. | test acc. | kernels per layer ("
            + ", ".join(layers) + ") |\n|---|---|---|---:|---:|---:|---|\n")
    body = "\n".join(f"| {100 * r['param_fraction']:g} % | {r['criterion']} | global{', cost=' + r['cost'] if r['cost'] else ''} | "
                     f"{r['params']:,} | {100 * r['val_accuracy']:.2f} | {100 * r['accuracy']:.2f} | "
                     + "-".join(str(r["kernels"][n]) for n in layers) + " |" for r in rows)
    return ("# Kernel allocation under a parameter budget (CIFAR-10)\n\n"
            "`nice -n 5 .venv/bin/python benchmarks/trim_cifar10_allocation.py`: the baseline of "
            f"`trim_cifar10.md` ({base['params']:,} parameters, {100 * base['accuracy']:.2f} % test) trimmed "
            "one-shot (not chained) to each budget, then fine-tuned with the same recipe as `trim_cifar10.md` "
            "(8 distilled epochs on flipped/shifted views, cosine decay). At least 4 kernels per layer.\n\n"
            + head + body + "\n")


def main() -> None:
    from tensorflow import keras

    s = bench.SETTINGS
    data = cifar10.load(seed=s["seed"])
    base = json.loads((cifar10.WORK / "cifar10_baseline.json").read_text())
    baseline = keras.models.load_model(bench.BASELINE, compile=False)
    teacher = bench.CachedTeacher(baseline)
    x, y = bench.subset(data, s["finetune_images"], s["seed"])
    rows = [run(c, cost, f, baseline, teacher, data, x, y, s, base["params"]) for f in FRACTIONS
            for c, cost in VARIANTS]
    (RESULTS / "trim_cifar10_allocation.json").write_text(json.dumps({"baseline": base, "runs": rows}, indent=2)
                                                          + "\n")
    bench.write_markdown(RESULTS / "trim_cifar10_allocation.md", markdown(rows, base))


if __name__ == "__main__":
    main()
