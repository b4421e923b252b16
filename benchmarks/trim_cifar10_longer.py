"""How much of the gap at a deep cut (10 % of the parameters by default) is the fine-tuning budget?

``trim_cifar10.py`` gives every budget step 8 epochs of distilled fine-tuning. This takes
the chain's model at one budget (seed 0) and goes on fine-tuning it with the same recipe
(distilled from the baseline, flipped and shifted views, cosine decay) for more epochs,
then reports validation and test accuracy. One run gives every criterion it names the same extra epochs.

    nice -n 5 .venv/bin/python benchmarks/trim_cifar10_longer.py   # needs trim_cifar10.py's finished steps
    nice -n 5 .venv/bin/python benchmarks/trim_cifar10_longer.py --epochs 48 --criteria relevance_weighted,l1,untrimmed
    nice -n 5 .venv/bin/python benchmarks/trim_cifar10_longer.py --epochs 48 --fraction 0.011 --criteria relevance_weighted
    nice -n 5 .venv/bin/python benchmarks/trim_cifar10_longer.py --epochs 48 --allocation rank --criteria relevance_weighted

Writes ``benchmarks/results/trim_cifar10_longer.{json,md}`` with every (criterion, extra
epochs) run finished so far; resumable (one row per run).
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

import numpy as np  # noqa: E402

import cifar10  # noqa: E402
import trim_cifar10 as chain  # noqa: E402

FRACTION = 0.10
EXTRA_EPOCHS = 16  # the budget every criterion was given first
CRITERIA = ("relevance_weighted", "relevance", "l1", "random")
# Not a criterion: the untrimmed baseline fine-tuned the same way, distilled from its own
# starting point. It tells how much of a trimmed model's gain is the baseline's short training.
UNTRIMMED = "untrimmed"
OUT = chain.WORK / "trim_cifar10_longer"
STEM = "trim_cifar10_longer"


def row_path(criterion: str, epochs: int, allocation: str = "planned", fraction: float = FRACTION) -> Path:
    name = criterion if criterion == UNTRIMMED else f"{criterion}_{round(fraction * 1000):04d}"
    if allocation != "planned" and criterion != UNTRIMMED:
        name += f"_{allocation}"
    # the first runs (16 epochs) keep their unsuffixed names
    return OUT / (f"{name}.json" if epochs == EXTRA_EPOCHS else f"{name}_e{epochs}.json")


def chain_model_path(criterion: str, allocation: str, fraction: float) -> Path:
    """The trimming chain's saved model at ``fraction`` (its row sits beside it as .json)."""
    return chain.runs_dir(allocation, 0) / f"{criterion}_{round(fraction * 1000):04d}.h5"


def representative(x, s):
    """The images batch-norm statistics are re-estimated on after fine-tuning."""
    return x[np.sort(np.random.default_rng(s["seed"] + 1).permutation(len(x))[: s["representative"]])]


def run(criterion, epochs, data, baseline, s, allocation: str = "planned", fraction: float = FRACTION) -> dict:
    from tensorflow import keras

    from fpgacnn.distill import finetune
    from fpgacnn.trimming.calibrate import recalibrate_batchnorm
    from fpgacnn.trimming.surgery import custom_objects

    done = row_path(criterion, epochs, allocation, fraction)
    if done.exists():
        return json.loads(done.read_text())
    if criterion == UNTRIMMED:  # the control: the baseline itself gets the same extra epochs
        before = json.loads((chain.WORK / "cifar10_baseline.json").read_text())
        model = keras.models.load_model(chain.BASELINE, compile=False)
    else:
        path = chain_model_path(criterion, allocation, fraction)
        before = json.loads(path.with_suffix(".json").read_text())
        with keras.utils.custom_object_scope(custom_objects()):
            model = keras.models.load_model(path, compile=False)
    x, y = chain.subset(data, s["finetune_images"], s["seed"])
    t0 = time.perf_counter()
    # seed 7: views the chain's steps (seed 1) did not see
    finetune(model, x, y, teacher=chain.CachedTeacher(baseline), epochs=epochs,
             batch_size=s["finetune_batch_size"], learning_rate=s["finetune_learning_rate"], seed=7,
             x_val=data.x_val, y_val=data.y_val, temperature=s["temperature"], alpha=s["alpha"],
             **s["finetune_options"])
    recalibrate_batchnorm(model, representative(x, s), batch_size=s["finetune_batch_size"])
    untrimmed = criterion == UNTRIMMED
    row = {"criterion": criterion, "allocation": None if untrimmed else allocation,
           "param_fraction": 1.0 if untrimmed else fraction,
           "params": int(model.count_params()),
           "epochs_in_chain": 0 if untrimmed else s["finetune_epochs"], "extra_epochs": epochs,
           "accuracy_before": before["accuracy"], "val_accuracy_before": before["val_accuracy"],
           "accuracy": chain.accuracy(model, data.x_test, data.y_test),
           "val_accuracy": chain.accuracy(model, data.x_val, data.y_val),
           "seconds": round(time.perf_counter() - t0, 1)}
    chain.save_row(done, row)
    chain.log(f"longer {criterion} +{epochs} epochs: test {row['accuracy_before']:.4f} -> {row['accuracy']:.4f}")
    return row


def finished_rows() -> list[dict]:
    rows = chain.read_rows(OUT)
    return sorted(rows, key=lambda r: (-r["param_fraction"] if r["criterion"] != UNTRIMMED else -FRACTION,
                                       r["extra_epochs"], r["allocation"] or "planned", CRITERIA.index(r["criterion"])
                                       if r["criterion"] in CRITERIA else len(CRITERIA), r["criterion"]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=EXTRA_EPOCHS, help=f"extra epochs (default {EXTRA_EPOCHS})")
    ap.add_argument("--criteria", default=",".join(CRITERIA),
                    help=f"comma-separated, in run order; {UNTRIMMED!r} fine-tunes the baseline itself")
    ap.add_argument("--allocation", default="planned", choices=sorted(chain.ALLOCATIONS),
                    help="which trimming chain's models to go on with (default planned)")
    ap.add_argument("--fraction", type=float, default=FRACTION, choices=chain.FRACTIONS,
                    help=f"which budget step's model (default {FRACTION})")
    ap.add_argument("--write-only", action="store_true", help="rewrite the results from the finished runs")
    args = ap.parse_args(argv)
    criteria = [c for c in args.criteria.split(",") if c]
    unknown = sorted(set(criteria) - set(chain.CRITERIA) - {UNTRIMMED})
    if unknown or args.epochs < 1:
        ap.error(f"unknown criteria {unknown}" if unknown else "--epochs must be at least 1")
    s = chain.SETTINGS
    if not args.write_only:
        from tensorflow import keras

        data = cifar10.load(seed=s["seed"])
        baseline = keras.models.load_model(chain.BASELINE, compile=False)
        for c in criteria:
            if c == UNTRIMMED or chain_model_path(c, args.allocation, args.fraction).exists():
                run(c, args.epochs, data, baseline, s, args.allocation, args.fraction)
    write(finished_rows(), s)


def command(row: dict, rows: list[dict]) -> str:
    """The command line that ran ``row``, with every criterion run alongside it."""
    def group(r):  # the control runs beside the default budget
        return (r["extra_epochs"], r["allocation"] or "planned",
                FRACTION if r["criterion"] == UNTRIMMED else r["param_fraction"])

    epochs, allocation, fraction = group(row)
    cmd = "nice -n 5 .venv/bin/python benchmarks/trim_cifar10_longer.py"
    if group(row) == (EXTRA_EPOCHS, "planned", FRACTION):
        return cmd
    criteria = ",".join(r["criterion"] for r in rows if group(r) == group(row))
    return (cmd + (f" --epochs {epochs}" if epochs != EXTRA_EPOCHS else "")
            + (f" --fraction {fraction:g}" if fraction != FRACTION else "")
            + (f" --allocation {allocation}" if allocation != "planned" else "") + f" --criteria {criteria}")


def write(rows: list[dict], s: dict) -> None:
    base = json.loads((chain.WORK / "cifar10_baseline.json").read_text())
    commands = sorted({command(r, rows) for r in rows})
    result = {"baseline_accuracy": base["accuracy"], "runs": rows, "commands": commands,
              "cores": os.cpu_count(), "machine": platform.machine()}
    chain.RESULTS.mkdir(parents=True, exist_ok=True)
    (chain.RESULTS / f"{STEM}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"| {100 * r['param_fraction']:g} % | {r['criterion']} | {r['allocation'] or '–'} | "
             f"{r['extra_epochs']} | {r['params']:,} | {100 * r['accuracy_before']:.2f} | "
             f"{100 * r['accuracy']:.2f} | {100 * (r['accuracy'] - r['accuracy_before']):+.2f} | "
             f"{100 * (base['accuracy'] - r['accuracy']):.2f} |" for r in rows]
    chain.write_markdown(
        chain.RESULTS / f"{STEM}.md",
        "# Longer fine-tuning of trimmed models\n\n"
        + "Commands: " + "; ".join(f"`{c}`" for c in commands)
        + f" ({result['cores']} cores, {result['machine']}). The chain's model at a budget (a fraction of the "
        "baseline's parameters; chain `planned`: `trim_cifar10.md`, `rank`: `trim_cifar10_rank.md`; seed 0: "
        f"{s['finetune_epochs']} epochs of distilled fine-tuning after each step down to that budget), fine-tuned "
        "for the extra epochs "
        "with the same recipe (new views, the cosine decay stretched over the extra epochs), batch-norm "
        "statistics re-estimated. Test accuracy (%):\n\n"
        "| budget | criterion | chain | extra epochs | params | after the chain | after the extra epochs | change "
        "| below the baseline |\n"
        "|---:|---|---|---:|---:|---:|---:|---:|---:|\n" + "\n".join(lines) + "\n\n"
        f"Baseline: {100 * base['accuracy']:.2f} % (trained {s['baseline_epochs']} epochs)."
        + (f" `{UNTRIMMED}` is the control: the baseline itself given the same extra epochs (its 'after the "
           "chain' is its own accuracy), distilled from its starting point; a trimmed model is compared fairly "
           "with it rather than with the baseline.\n" if any(r["criterion"] == UNTRIMMED for r in rows) else "\n"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
