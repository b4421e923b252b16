"""Does a one-shot cut, before any fine-tuning, tell which allocation a chain should use?

``trim_cifar10.md`` and ``trim_cifar10_rank.md`` show the default per-layer normalisation
("mean") winning down to 25 % of the parameters and rank normalisation winning at 5 % and
1.1 %. A trimmer that picks between them needs a cheap signal. This cuts the baseline
one-shot to every budget of the chain under both normalisations (relevance_weighted, the
chain's ranking and cost rule), re-estimates batch-norm statistics and reads validation
accuracy, then sets the chains' test accuracies beside it.

    .venv/bin/python benchmarks/oneshot_plans.py   # needs trim_cifar10.py's baseline and both chains

Writes ``benchmarks/results/oneshot_plans.{json,md}``.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cifar10  # noqa: E402
import trim_cifar10 as chain  # noqa: E402

CRITERION = "relevance_weighted"
PLANS = {"mean": "planned", "rank": "rank"}  # normalisation -> the chain that used it


def main() -> None:
    from tensorflow import keras

    s = chain.SETTINGS
    data = cifar10.load(seed=s["seed"])
    baseline = keras.models.load_model(chain.BASELINE, compile=False)
    base = json.loads((chain.WORK / "cifar10_baseline.json").read_text())
    probe = json.loads((chain.WORK / "trim_cifar10_choice.json").read_text())
    x, y = chain.subset(data, s["finetune_images"], s["seed"])
    rows = []
    for frac in chain.FRACTIONS:
        row = {"param_fraction": frac}
        for norm, allocation in PLANS.items():
            choice = chain.select_allocation(probe, ["--allocation", allocation])
            cut = chain.oneshot_cut(CRITERION, baseline, x, y, {"params": frac * base["params"]}, s, choice,
                                    recalibrate=True).model
            done = chain.runs_dir(allocation, 0) / f"{CRITERION}_{round(frac * 1000):04d}.json"
            row[norm] = {"oneshot_val_accuracy": chain.accuracy(cut, data.x_val, data.y_val),
                         "params": int(cut.count_params()),
                         "chain_accuracy": json.loads(done.read_text())["accuracy"] if done.exists() else None}
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"criterion": CRITERION, "rows": rows, "command": ".venv/bin/python benchmarks/oneshot_plans.py"}
    out = chain.RESULTS / "oneshot_plans"
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")

    lines = "\n".join(f"| {100 * r['param_fraction']:g} % | {pct(r['mean']['oneshot_val_accuracy'])} | "
                      f"{pct(r['rank']['oneshot_val_accuracy'])} | {pct(r['mean']['chain_accuracy'])} | "
                      f"{pct(r['rank']['chain_accuracy'])} | {agree(r)} |" for r in rows)
    out.with_suffix(".md").write_text(
        "# One-shot cuts as a signal for the allocation (CIFAR-10)\n\n"
        f"`{result['command']}`: {CRITERION}, the baseline cut one-shot to each budget with per-layer "
        "normalisation \"mean\" (the chain of `trim_cifar10.md`) and \"rank\" (`trim_cifar10_rank.md`), "
        "batch-norm statistics re-estimated, no fine-tuning. Accuracy (%):\n\n"
        "| budget | one-shot val., mean | one-shot val., rank | chain test, mean | chain test, rank | same order |\n"
        "|---|---:|---:|---:|---:|---|\n" + lines + "\n\n" + reading(rows))
    print(json.dumps(result, indent=2))


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def agree(row) -> str:
    """Does the one-shot cut rank "mean" and "rank" as the finished chains do?"""
    (a_mean, a_rank), (c_mean, c_rank) = ([row[n][k] for n in PLANS] for k in ("oneshot_val_accuracy",
                                                                               "chain_accuracy"))
    return "-" if None in (c_mean, c_rank) else "yes" if (a_mean > a_rank) == (c_mean > c_rank) else "no"


def reading(rows) -> str:
    """What the table says, computed from it so a rerun cannot leave stale prose."""
    marks = [agree(r) for r in rows]
    judged = [m for m in marks if m != "-"]
    weak = [f"{100 * r['param_fraction']:g} %" for r in rows
            if max(r[n]["oneshot_val_accuracy"] for n in PLANS) < 0.2]  # CIFAR-10 chance is 10 %
    text = (f"The one-shot cut orders the two plans as the chains' end results do at {judged.count('yes')} of "
            f"{len(judged)} budgets.")
    if weak:
        text += (f" At {', '.join(weak)} both one-shot cuts are within 10 points of chance (10 %), so there the "
                 "order rests on a few points of a broken network and is a weak signal. A chain cannot switch plan "
                 "part-way either: kernels removed for one plan cannot come back for another.")
    return text + "\n"


if __name__ == "__main__":
    main()
