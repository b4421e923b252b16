"""Trimming criteria on CIFAR-10: accuracy vs parameters for relevance, L1, APoZ and random.

A VGG16-layout baseline (13 conv in blocks of 2-2-3-3-3, BN + ReLU, max-pooling after
each block, small dense head), widths scaled down to 16-32-64-128-128 so that it
trains on 2 CPU cores, is trimmed to 50 %, 25 %, 10 %, 5 % and 1.1 % of its
parameters with each criterion. Every criterion gets the same iterative schedule:
the budgets are reached one after the other (each step is one round of
``fpgacnn.trimming.trim_schedule`` on the previous step's model), every round
re-scores the current model and is followed by the same distilled fine-tuning
(teacher: the baseline) on the whole training split, a new flipped and shifted view of
it every epoch, with a cosine learning-rate decay, the same seeds and the same views for
every criterion. Ranking options
are chosen on the validation split (carved out of train/) before the runs; test/
is only used to report.

Resumable: the decoded data, the baseline, the chosen settings and every finished
step are cached under ``benchmarks/work/``; rerunning continues where it stopped.

    nice -n 5 .venv/bin/python benchmarks/trim_cifar10.py   # progress: benchmarks/work/trim_cifar10.log
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

import numpy as np  # noqa: E402

import cifar10  # noqa: E402
import trim_cifar10_report as report  # noqa: E402

WORK = cifar10.WORK
RESULTS = cifar10.ROOT / "benchmarks" / "results"
LOG = WORK / "trim_cifar10.log"
BASELINE = WORK / "cifar10_baseline.h5"
# Allocation rules, each with its own finished steps and result files.
# "planned" (default): every step trims each layer to the width that a one-shot cut of the
#   *baseline* to that budget gives, ranking by score per square root of the kernel's
#   parameter cost; which kernels go is re-scored on the current model. The cost rule was
#   chosen on validation accuracy by trim_cifar10_allocation.py (one-shot to 10 %: 75.02 %
#   against 63.34 % for the score alone).
# "sqrt_params": the same cost rule re-planned on the current model at every step; it drifts
#   into alternating wide and 4-kernel layers (see the discussion in trim_cifar10_replanned.md).
# "score": the ranking probe's choice below (no cost), the first result.
# "shared": every criterion trims to the *same* widths, those of the random criterion's
#   planned cut, so criteria differ only in which kernels of a layer they keep. It asks
#   whether a criterion chooses kernels well, apart from how its scores split the budget
#   between layers. Random under it is the planned random chain (the same widths by
#   construction), copied rather than rerun.
# "rank": as "planned", with each layer's scores replaced by their quantiles
#   (normalize="rank"): the criterion's own plan, graded by cost the way random scores are.
ALLOCATIONS = {
    "planned": {"cost": "sqrt_params", "runs": WORK / "trim_cifar10_runs_planned", "stem": "trim_cifar10"},
    "sqrt_params": {"cost": "sqrt_params", "runs": WORK / "trim_cifar10_runs_sqrt_params",
                    "stem": "trim_cifar10_replanned"},
    "score": {"cost": None, "runs": WORK / "trim_cifar10_runs_augmented", "stem": "trim_cifar10_score_only"},
    "shared": {"cost": "sqrt_params", "runs": WORK / "trim_cifar10_runs_shared", "stem": "trim_cifar10_shared_widths",
               "widths_from": "random"},
    "rank": {"cost": "sqrt_params", "normalize": "rank", "runs": WORK / "trim_cifar10_runs_rank",
             "stem": "trim_cifar10_rank"},
}
RUNS = ALLOCATIONS["planned"]["runs"]  # the default chain's finished steps (trim_cifar10_longer.py reads them)
TEACHER_CACHE = WORK / "teacher_logits"

CRITERIA = ("relevance", "relevance_weighted", "l1", "apoz", "random")
RUN_ORDER = ("relevance_weighted", "l1", "relevance", "random", "apoz")
FRACTIONS = (0.5, 0.25, 0.10, 0.05, 0.011)
SETTINGS = {
    "seed": 0,
    "widths": [16, 32, 64, 128, 128],
    "convs_per_block": [2, 2, 3, 3, 3],
    "dense": 128,
    "baseline_epochs": 20,
    "baseline_batch_size": 128,
    "baseline_learning_rate": 1e-3,  # Adam, cosine decay to 0
    "augmentation": "random horizontal flip + random translation up to 4 px (zero fill)",
    "finetune_images": 45000,  # the whole training split
    "finetune_epochs": 8,  # per budget step, every criterion
    "finetune_batch_size": 128,
    "finetune_learning_rate": 5e-4,  # Adam, cosine decay to 0 within each step
    "finetune_options": {"augment": "flip_shift", "lr_schedule": "cosine"},
    "temperature": 4.0,
    "alpha": 0.5,
    "representative": 1000,  # images the data-driven criteria score on
    # ranking options tried on the validation split: the same chain, shortened to
    # `probe_fractions` with `probe_epochs` per step; mean val accuracy over all criteria
    "probe_fractions": [0.25, 0.05],
    "probe_epochs": 1,
    "probe_images": 5000,
    "candidates": [{"ranking": "layer", "normalize": "mean", "cost": None, "min_kernels": 1},
                   {"ranking": "global", "normalize": "mean", "cost": None, "min_kernels": 1},
                   {"ranking": "global", "normalize": "mean", "cost": None, "min_kernels": 4}],
}


def log(msg: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {msg}"
    print(line, flush=True)
    with LOG.open("a") as fh:
        fh.write(line + "\n")


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, batch_size=512, verbose=0), axis=1) == y))


def save_row(path: Path, row: dict) -> None:
    """One finished run of a side study, so that rerunning the study skips it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2) + "\n")


def read_rows(directory: Path) -> list[dict]:
    """Every finished run a side study saved with ``save_row`` (none before its first)."""
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))] if directory.exists() else []


def write_markdown(path: Path, text: str) -> None:
    """Write a generated result page, keeping the hand-written ``## Discussion`` it may end with."""
    old = path.read_text() if path.exists() else ""
    path.write_text(text + (old[old.index("\n## Discussion"):] if "\n## Discussion" in old else ""))


def train_baseline(data, s) -> dict:
    """Train (or load) the baseline; its numbers are cached beside the .h5."""
    from tensorflow import keras

    from fpgacnn.trimming import count_macs

    meta_path = WORK / "cifar10_baseline.json"
    if BASELINE.exists() and meta_path.exists():
        log(f"baseline: cached {BASELINE}")
        return json.loads(meta_path.read_text())
    from fpgacnn.zoo import vgg16_layout

    assert tuple(s["convs_per_block"]) == (2, 2, 3, 3, 3)
    model = vgg16_layout(s["widths"], s["dense"], seed=s["seed"])
    seconds = train_supervised(model, data, s, "baseline")
    meta = {"params": int(model.count_params()), "macs": count_macs(model),
            "val_accuracy": accuracy(model, data.x_val, data.y_val),
            "accuracy": accuracy(model, data.x_test, data.y_test),
            "train_s": seconds}
    model.save(BASELINE)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"baseline: {meta}")
    return meta


def train_supervised(model, data, s, label: str) -> float:
    """The baseline's recipe (cross-entropy, Adam with cosine decay, flipped and shifted
    views) on ``model`` in place; returns the seconds it took."""
    from tensorflow import keras

    epochs = s["baseline_epochs"]
    steps = epochs * int(np.ceil(len(data.x_train) / s["baseline_batch_size"]))
    lr = keras.optimizers.schedules.CosineDecay(s["baseline_learning_rate"], steps)
    aug = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=s["seed"]),
                            keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant", seed=s["seed"])])
    trainer = keras.Sequential([keras.Input((32, 32, 3)), aug, model])  # shares model's weights
    trainer.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            log(f"{label} epoch {epoch + 1}/{epochs}: loss {logs['loss']:.3f} "
                f"acc {logs['accuracy']:.3f} val_acc {logs['val_accuracy']:.3f}")

    t0 = time.perf_counter()
    trainer.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                epochs=epochs, batch_size=s["baseline_batch_size"], verbose=0,
                callbacks=[Progress()], shuffle=True)
    return round(time.perf_counter() - t0, 1)


class CachedTeacher:
    """The baseline as a teacher whose outputs are kept on disk, keyed by the input bytes.

    Every criterion and budget step is distilled on the same seeded views of the same
    images, so the baseline's logits for each view are computed once for the whole
    benchmark instead of once per fine-tuning epoch (the teacher is the biggest network
    in the loop). Outputs are identical to calling the baseline.
    """

    def __init__(self, model, cache=TEACHER_CACHE):
        self.model, self.cache = model, cache
        cache.mkdir(parents=True, exist_ok=True)

    def get_weights(self):
        return self.model.get_weights()

    def predict(self, x, batch_size=256, verbose=0):
        import hashlib

        x = np.ascontiguousarray(x, dtype=np.float32)
        key = hashlib.sha1(x.tobytes()).hexdigest() + f"_{len(x)}"
        path = self.cache / f"{key}.npy"
        if path.exists():
            return np.load(path)
        from fpgacnn.distill import predict_in_batches

        out = predict_in_batches(self.model, x, batch_size).astype(np.float32)
        np.save(path.with_suffix(".tmp.npy"), out)
        path.with_suffix(".tmp.npy").replace(path)
        return out


def subset(data, n: int, seed: int):
    idx = np.sort(np.random.default_rng(seed).permutation(len(data.x_train))[:n])
    return data.x_train[idx], data.y_train[idx]


def choose_ranking(baseline, data, s, base_meta) -> dict:
    """Pick ranking options by mean validation accuracy of a shortened chain (never test).

    Chained, not one-shot: a first version probed with a single cut and chose global
    ranking without a floor, which over five re-scored steps cut the first conv layer to
    one kernel. Only a probe that re-scores like the real schedule can see that.
    """
    from fpgacnn.trimming import trim_schedule

    path = WORK / "trim_cifar10_choice.json"
    if path.exists():
        return json.loads(path.read_text())
    x, y = subset(data, s["probe_images"], s["seed"] + 1)
    trials = []
    for cand in s["candidates"]:
        accs = {}
        for criterion in CRITERIA:
            current = baseline
            for step, frac in enumerate(s["probe_fractions"], start=1):
                current = trim_schedule(current, x, y, target={"params": frac * base_meta["params"]},
                                        criterion=criterion, finetune_epochs=s["probe_epochs"], distill=True,
                                        teacher=baseline, temperature=s["temperature"], alpha=s["alpha"],
                                        representative=s["representative"], batch_size=s["finetune_batch_size"],
                                        learning_rate=s["finetune_learning_rate"], seed=s["seed"] + step,
                                        **cand).model
            accs[criterion] = accuracy(current, data.x_val, data.y_val)
            log(f"probe {cand} {criterion}: val_acc {accs[criterion]:.4f} params {current.count_params()}")
        trials.append({**cand, "val_accuracy": accs, "mean_val_accuracy": float(np.mean(list(accs.values())))})
    best = max(trials, key=lambda t: t["mean_val_accuracy"])
    choice = {**{k: best[k] for k in s["candidates"][0]}, "trials": trials}
    path.write_text(json.dumps(choice, indent=2) + "\n")
    log(f"chosen on validation: {best}")
    return choice


def select_allocation(choice: dict, argv: list[str]) -> dict:
    """Apply ``--allocation planned|sqrt_params|score|shared|rank`` (default planned) to the probe's choice."""
    name = argv[argv.index("--allocation") + 1] if "--allocation" in argv else "planned"
    if name not in ALLOCATIONS:
        raise SystemExit(f"--allocation must be one of {sorted(ALLOCATIONS)}, not {name!r}")
    return {**choice, "cost": ALLOCATIONS[name]["cost"], "allocation": name,
            "normalize": ALLOCATIONS[name].get("normalize", choice["normalize"])}


def oneshot_cut(criterion, baseline, x, y, target, s, choice, recalibrate: bool = False):
    """A one-shot cut of the baseline to ``target`` (no fine-tuning): the step's plan."""
    from fpgacnn.trimming import trim_schedule

    return trim_schedule(baseline, x, y, target=target, criterion=criterion, rounds=1, finetune_epochs=0,
                         ranking=choice["ranking"], normalize=choice["normalize"], cost=choice["cost"],
                         min_kernels=choice["min_kernels"], representative=s["representative"],
                         batch_size=s["finetune_batch_size"], seed=s["seed"] + 1, recalibrate=recalibrate)


def planned_widths(criterion, baseline, x, y, target, s, choice) -> dict[str, int]:
    """Kernels per layer of a one-shot cut of the baseline to ``target``."""
    return oneshot_cut(criterion, baseline, x, y, target, s, choice).widths


def runs_dir(allocation: str, seed: int) -> Path:
    """Finished steps of one allocation and fine-tuning seed (seed 0 where the results always were)."""
    runs = ALLOCATIONS[allocation]["runs"]
    return runs if seed == 0 else runs / f"seed{seed}"


def run_chain(criterion, baseline, data, s, base_meta, choice, seed: int = 0) -> list[dict]:
    """All budgets for one criterion, each step starting from the previous step's model.

    ``seed`` changes only the fine-tuning (views, shuffling, scoring images); the baseline
    and the planned allocation stay the same, so seeds measure the spread of the recipe."""
    from tensorflow import keras

    from fpgacnn.trimming import trim_schedule
    from fpgacnn.trimming.surgery import custom_objects

    runs = runs_dir(choice["allocation"], seed)
    runs.mkdir(parents=True, exist_ok=True)
    x, y = subset(data, s["finetune_images"], s["seed"])
    teacher = CachedTeacher(baseline)
    current, rows = baseline, []
    for frac in FRACTIONS:
        name = f"{criterion}_{round(frac * 1000):04d}"  # per mille: relevance_0011 = 1.1 %
        row_path, model_path = runs / f"{name}.json", runs / f"{name}.h5"
        if row_path.exists() and model_path.exists():
            rows.append(json.loads(row_path.read_text()))
            with keras.utils.custom_object_scope(custom_objects()):
                current = keras.models.load_model(model_path, compile=False)
            continue
        t0 = time.perf_counter()
        target = {"params": frac * base_meta["params"]}
        if choice["allocation"] in ("planned", "shared", "rank"):
            planner = ALLOCATIONS[choice["allocation"]].get("widths_from", criterion)
            target = {"widths": planned_widths(planner, baseline, x, y, target, s, choice)}
        res = trim_schedule(current, x, y, target=target, criterion=criterion,
                            rounds=1, finetune_epochs=s["finetune_epochs"], distill=True, teacher=teacher,
                            temperature=s["temperature"], alpha=s["alpha"], x_val=data.x_val, y_val=data.y_val,
                            ranking=choice["ranking"], normalize=choice["normalize"], cost=choice["cost"],
                            min_kernels=choice["min_kernels"], representative=s["representative"], batch_size=s["finetune_batch_size"],
                            learning_rate=s["finetune_learning_rate"], seed=s["seed"] + 1 + seed,
                            finetune_options=s["finetune_options"])  # one seed: the same views at every step
        current = res.model
        row = {"criterion": criterion, "param_fraction": frac, "seed": seed, "params": int(current.count_params()),
               "accuracy": accuracy(current, data.x_test, data.y_test),
               "val_accuracy": res.report["rounds"][-1]["val_accuracy"], "macs": res.report["macs_after"],
               "kernels": {n: e["kernels_after"] for n, e in res.report["layers"].items()},
               "seconds": round(time.perf_counter() - t0, 1)}
        current.save(model_path)
        row_path.write_text(json.dumps(row, indent=2) + "\n")
        log(f"{criterion} {frac:g} seed {seed}: params {row['params']} val {row['val_accuracy']:.4f} "
            f"test {row['accuracy']:.4f} ({row['seconds']} s)")
        rows.append(row)
    return rows


def arg(flag: str, default: str) -> str:
    return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default


def finished_runs(allocation: str) -> list[dict]:
    """Every finished step of every seed (rows written before seeds existed are seed 0)."""
    root = runs_dir(allocation, 0)
    dirs = [(0, root)] + sorted((int(d.name[4:]), d) for d in root.glob("seed*") if d.name[4:].isdigit())
    return [{"seed": seed, **json.loads(p.read_text())} for seed, d in dirs for c in RUN_ORDER for f in FRACTIONS
            if (p := d / f"{c}_{round(f * 1000):04d}.json").exists()]


def main() -> None:
    """``--write-only`` rewrites the results from the finished steps without training;
    ``--seeds 0,1,2`` and ``--criteria l1,relevance`` choose the chains to run."""
    t0 = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)
    from tensorflow import keras

    s = SETTINGS
    log("loading CIFAR-10")
    data = cifar10.load(seed=s["seed"])
    base_meta = train_baseline(data, s)
    baseline = keras.models.load_model(BASELINE, compile=False)
    choice = choose_ranking(baseline, data, s, base_meta)
    choice = select_allocation(choice, sys.argv)
    seeds = [int(v) for v in arg("--seeds", "0").split(",")]
    criteria = arg("--criteria", ",".join(RUN_ORDER)).split(",")
    if set(criteria) - set(CRITERIA):
        raise SystemExit(f"--criteria must name criteria from {', '.join(CRITERIA)}")
    if "--write-only" in sys.argv:
        report.write_results(base_meta, finished_runs(choice["allocation"]), choice, s, time.perf_counter() - t0)
        return
    for seed in seeds:
        for criterion in criteria:
            run_chain(criterion, baseline, data, s, base_meta, choice, seed)
            report.write_results(base_meta, finished_runs(choice["allocation"]), choice, s, time.perf_counter() - t0)
    log(f"done in {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
