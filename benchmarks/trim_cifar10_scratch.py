"""Are the trimmed weights worth keeping, or only the trimmed widths?

The control of Liu et al. ("Rethinking the value of network pruning", ICLR 2019): take
the architecture a trimming chain ends with (kernels per layer), throw its weights away,
initialise it afresh and train it from scratch, then compare with the trimmed model.
Two recipes, both on the same data and views as the trimmed model's:

- ``scratch``: the baseline's own recipe (cross-entropy, same epochs, same schedule);
- ``scratch_distilled``: the recipe of ``trim_cifar10_longer.py`` (distilled from the
  baseline, same extra epochs, same seeded views and learning rate), so the only
  difference from the trimmed model's long run is where the weights start.

If the from-scratch networks match the trimmed ones, the accuracy gap to the baseline
is the capacity of those widths, not what trimming throws away. A third architecture,
``uniform`` (every layer of the baseline scaled by one factor, the widest such network
within the trimmed model's parameters, trained with the ``scratch`` recipe), asks whether
the trimmer's allocation of kernels between layers is the better one at that budget.

    nice -n 5 .venv/bin/python benchmarks/trim_cifar10_scratch.py   # needs trim_cifar10.py's finished steps

Writes ``benchmarks/results/trim_cifar10_scratch.{json,md}``; resumable (one row per run).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cifar10  # noqa: E402
import trim_cifar10 as chain  # noqa: E402
import trim_cifar10_longer as longer  # noqa: E402

CRITERION = "relevance_weighted"
FRACTIONS = (0.10, 0.011)
UNIFORM = "uniform"
# (architecture, recipe) pairs run at every budget, in order
RUNS = ((CRITERION, "scratch"), (CRITERION, "scratch_distilled"), (UNIFORM, "scratch"))
DISTILLED_EPOCHS = 48  # the longest run of trim_cifar10_longer.py
OUT = chain.WORK / "trim_cifar10_scratch"
STEM = "trim_cifar10_scratch"


def fresh_copy(model, seed: int):
    """The same layers and widths with newly initialised weights (nothing kept from ``model``)."""
    from tensorflow import keras

    keras.utils.set_random_seed(seed)
    return keras.models.clone_model(model)


def uniform_model(max_params: int, s):
    """The baseline's layout with every width scaled by one factor: the widest within ``max_params``."""
    from fpgacnn.zoo import vgg16_layout

    def build(f):
        return vgg16_layout([max(1, round(f * w)) for w in s["widths"]], max(1, round(f * s["dense"])),
                            seed=s["seed"])

    lo, hi = 0.0, 1.0
    for _ in range(20):  # params grow with the factor; bisect on it
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if build(mid).count_params() <= max_params else (lo, mid)
    return build(lo)


def run(arch: str, recipe: str, fraction: float, data, baseline, s) -> dict:
    from tensorflow import keras

    from fpgacnn.distill import finetune
    from fpgacnn.trimming.calibrate import recalibrate_batchnorm
    from fpgacnn.trimming.surgery import custom_objects

    trimmed_name = f"{CRITERION}_{round(fraction * 1000):04d}"
    name = f"{arch}_{round(fraction * 1000):04d}"
    done = OUT / f"{recipe}_{name}.json"
    if done.exists():
        return json.loads(done.read_text())
    trimmed_row = json.loads((chain.RUNS / f"{trimmed_name}.json").read_text())
    if arch == UNIFORM:
        model = uniform_model(trimmed_row["params"], s)
    else:
        with keras.utils.custom_object_scope(custom_objects()):
            trimmed = keras.models.load_model(chain.RUNS / f"{trimmed_name}.h5", compile=False)
        model = fresh_copy(trimmed, s["seed"])
    x, y = chain.subset(data, s["finetune_images"], s["seed"])
    if recipe == "scratch":
        epochs = s["baseline_epochs"]
        seconds = chain.train_supervised(model, data, s, f"{recipe} {name}")
    else:
        epochs = DISTILLED_EPOCHS
        t0 = time.perf_counter()
        # seed 7 and these options: the very views and schedule of trim_cifar10_longer.py's runs
        finetune(model, x, y, teacher=chain.CachedTeacher(baseline), epochs=epochs,
                 batch_size=s["finetune_batch_size"], learning_rate=s["finetune_learning_rate"], seed=7,
                 x_val=data.x_val, y_val=data.y_val, temperature=s["temperature"], alpha=s["alpha"],
                 **s["finetune_options"])
        recalibrate_batchnorm(model, longer.representative(x, s), batch_size=s["finetune_batch_size"])
        seconds = round(time.perf_counter() - t0, 1)
    kernels = {layer.name: int(layer.get_weights()[0].shape[-1]) for layer in model.layers
               if layer.__class__.__name__ in ("Conv2D", "Dense")}
    row = {"recipe": recipe, "architecture": arch, "param_fraction": fraction, "params": int(model.count_params()),
           "kernels": kernels, "epochs": epochs,
           "accuracy": chain.accuracy(model, data.x_test, data.y_test),
           "val_accuracy": chain.accuracy(model, data.x_val, data.y_val),
           "trimmed_accuracy": trimmed_row["accuracy"], "seconds": seconds}
    if arch != UNIFORM and (row["params"] != trimmed_row["params"] or kernels != trimmed_row["kernels"]):
        raise SystemExit(f"{name}: the fresh copy's widths differ from the trimmed model's "
                         f"({row['params']} against {trimmed_row['params']} parameters)")
    chain.save_row(done, row)
    chain.log(f"{recipe} {name}: test {row['accuracy']:.4f} (trimmed {row['trimmed_accuracy']:.4f})")
    return row


def finished_rows() -> list[dict]:
    rows = chain.read_rows(OUT)
    return sorted(rows, key=lambda r: (-r["param_fraction"], RUNS.index((r["architecture"], r["recipe"]))))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-only", action="store_true", help="rewrite the results from the finished runs")
    args = ap.parse_args(argv)
    s = chain.SETTINGS
    if not args.write_only:
        from tensorflow import keras

        data = cifar10.load(seed=s["seed"])
        baseline = keras.models.load_model(chain.BASELINE, compile=False)
        for fraction in FRACTIONS:
            for arch, recipe in RUNS:
                run(arch, recipe, fraction, data, baseline, s)
    write(finished_rows(), s)


def longer_accuracy(fraction: float) -> float | None:
    """The trimmed model's test accuracy after the same extra distilled epochs, if that run exists."""
    path = longer.row_path(CRITERION, DISTILLED_EPOCHS, "planned", fraction)
    return json.loads(path.read_text())["accuracy"] if path.exists() else None


def write(rows: list[dict], s: dict) -> None:
    base = json.loads((chain.WORK / "cifar10_baseline.json").read_text())
    for r in rows:
        r["trimmed_longer_accuracy"] = longer_accuracy(r["param_fraction"])
    result = {"baseline_accuracy": base["accuracy"], "runs": rows,
              "command": "nice -n 5 .venv/bin/python benchmarks/trim_cifar10_scratch.py",
              "cores": os.cpu_count(), "machine": platform.machine()}
    chain.RESULTS.mkdir(parents=True, exist_ok=True)
    (chain.RESULTS / f"{STEM}.json").write_text(json.dumps(result, indent=2) + "\n")

    def pct(v):
        return "–" if v is None else f"{100 * v:.2f}"

    def arch(r):
        if r["architecture"] == UNIFORM:
            return "uniform (" + "-".join(str(r["kernels"][f"block{b}_conv1"]) for b in range(1, 6)) + \
                f", fc {r['kernels']['fc1']})"
        return f"{r['architecture']} chain's widths"

    lines = [f"| {100 * r['param_fraction']:g} % | {arch(r)} | {r['params']:,} | {r['recipe']} | {r['epochs']} | "
             f"{pct(r['accuracy'])} | {pct(r['trimmed_accuracy'])} | "
             f"{pct(r['trimmed_longer_accuracy']) if r['recipe'] == 'scratch_distilled' else '–'} |" for r in rows]
    chain.write_markdown(
        chain.RESULTS / f"{STEM}.md",
        "# Trimmed widths trained from scratch\n\n"
        f"`{result['command']}` ({result['cores']} cores, {result['machine']}). The architecture of the "
        f"`{CRITERION}` chain's model at each budget (`trim_cifar10.md`, seed 0), initialised afresh; `uniform`: "
        "the baseline with every layer scaled by one factor, the widest within the same parameters. `scratch`: "
        f"the baseline's recipe ({s['baseline_epochs']} epochs, cross-entropy, Adam from "
        f"{s['baseline_learning_rate']:g} with cosine decay, flipped/shifted views). `scratch_distilled`: "
        f"{DISTILLED_EPOCHS} epochs distilled from the baseline with `trim_cifar10_longer.py`'s recipe and views "
        "(the trimmed model's own long run starts from its trimmed weights instead). Test accuracy (%):\n\n"
        "| budget | architecture | params | recipe | epochs | from scratch | trimmed (chain) "
        "| trimmed + same extra epochs |\n"
        "|---|---|---:|---|---:|---:|---:|---:|\n" + "\n".join(lines) + "\n\n"
        f"Baseline: {100 * base['accuracy']:.2f} %. The trimmed model's chain gave it {s['finetune_epochs']} "
        "distilled epochs per budget step, on top of the baseline's training.\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
