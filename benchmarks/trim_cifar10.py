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

    nice -n 10 .venv/bin/python benchmarks/trim_cifar10.py   # progress: benchmarks/work/trim_cifar10.log
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
RUNS = ALLOCATIONS["planned"]["runs"]
STEM = ALLOCATIONS["planned"]["stem"]
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
    steps = s["baseline_epochs"] * int(np.ceil(len(data.x_train) / s["baseline_batch_size"]))
    lr = keras.optimizers.schedules.CosineDecay(s["baseline_learning_rate"], steps)
    aug = keras.Sequential([keras.layers.RandomFlip("horizontal", seed=s["seed"]),
                            keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant", seed=s["seed"])])
    trainer = keras.Sequential([keras.Input((32, 32, 3)), aug, model])  # shares model's weights
    trainer.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            log(f"baseline epoch {epoch + 1}/{s['baseline_epochs']}: loss {logs['loss']:.3f} "
                f"acc {logs['accuracy']:.3f} val_acc {logs['val_accuracy']:.3f}")

    t0 = time.perf_counter()
    trainer.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val),
                epochs=s["baseline_epochs"], batch_size=s["baseline_batch_size"], verbose=0,
                callbacks=[Progress()], shuffle=True)
    meta = {"params": int(model.count_params()), "macs": count_macs(model),
            "val_accuracy": accuracy(model, data.x_val, data.y_val),
            "accuracy": accuracy(model, data.x_test, data.y_test),
            "train_s": round(time.perf_counter() - t0, 1)}
    model.save(BASELINE)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"baseline: {meta}")
    return meta


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


ALLOCATION_WORDS = {
    "planned": "**Allocation planned on the baseline:** each step's kernels per layer are those of a one-shot cut "
               "of the baseline to that budget (same criterion, same cost rule); the step re-scores the current "
               "model only to choose which kernels of each layer go (`trim_schedule(target={'widths': ...})`).",
    "sqrt_params": "**Allocation re-planned at every step** on the current model (`--allocation sqrt_params`).",
    "shared": "**One allocation for every criterion** (`--allocation shared`): each step's kernels per layer are "
              "those of the random criterion's planned cut of the baseline, so the criteria differ only in which "
              "kernels of each layer they keep. The random rows are the planned random chain (the same widths by "
              "construction), not a rerun.",
    "rank": "**Allocation planned on the baseline with rank-normalised scores** (`--allocation rank`): as the "
            "planned chain, but each layer's scores are replaced by their quantiles before the one threshold on "
            "score per square root of cost, so the cost alone grades how many kernels each layer keeps and the "
            "criterion decides which.",
}


def select_allocation(choice: dict, argv: list[str]) -> dict:
    """Apply ``--allocation planned|sqrt_params|score|shared|rank`` (default planned) to the probe's choice."""
    global RUNS, STEM
    name = argv[argv.index("--allocation") + 1] if "--allocation" in argv else "planned"
    if name not in ALLOCATIONS:
        raise SystemExit(f"--allocation must be one of {sorted(ALLOCATIONS)}, not {name!r}")
    RUNS, STEM = ALLOCATIONS[name]["runs"], ALLOCATIONS[name]["stem"]
    return {**choice, "cost": ALLOCATIONS[name]["cost"], "allocation": name,
            "normalize": ALLOCATIONS[name].get("normalize", choice["normalize"])}


def planned_widths(criterion, baseline, x, y, target, s, choice) -> dict[str, int]:
    """Kernels per layer of a one-shot cut of the baseline to ``target`` (no fine-tuning)."""
    from fpgacnn.trimming import ChannelGraph, trim_schedule

    res = trim_schedule(baseline, x, y, target=target, criterion=criterion, rounds=1, finetune_epochs=0,
                        ranking=choice["ranking"], normalize=choice["normalize"], cost=choice["cost"],
                        min_kernels=choice["min_kernels"], representative=s["representative"],
                        batch_size=s["finetune_batch_size"], seed=s["seed"] + 1, recalibrate=False)
    graph = ChannelGraph(baseline)
    return {n: e["kernels_after"] for n, e in res.report["layers"].items() if graph.group(n).trimmable}


def runs_dir(seed: int) -> Path:
    """Finished steps of one fine-tuning seed (seed 0 where the results always were)."""
    return RUNS if seed == 0 else RUNS / f"seed{seed}"


def run_chain(criterion, baseline, data, s, base_meta, choice, seed: int = 0) -> list[dict]:
    """All budgets for one criterion, each step starting from the previous step's model.

    ``seed`` changes only the fine-tuning (views, shuffling, scoring images); the baseline
    and the planned allocation stay the same, so seeds measure the spread of the recipe."""
    from tensorflow import keras

    from fpgacnn.trimming import trim_schedule
    from fpgacnn.trimming.surgery import custom_objects

    runs = runs_dir(seed)
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


def write_results(base_meta, runs, choice, s, wall_s) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "baseline": {"params": base_meta["params"], "macs": base_meta["macs"], "accuracy": base_meta["accuracy"],
                     "val_accuracy": base_meta["val_accuracy"], "train_s": base_meta["train_s"]},
        "runs": runs,
        "settings": {**s, **{k: choice[k] for k in s["candidates"][0]}, "allocation": choice["allocation"]},
        "ranking_probe": choice["trials"],
        "wall_s_this_invocation": round(wall_s, 1),
        "cores": os.cpu_count(), "machine": platform.machine(),
        "command": "nice -n 10 .venv/bin/python benchmarks/trim_cifar10.py --allocation " + choice["allocation"],
    }
    (RESULTS / f"{STEM}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result)
    md = RESULTS / f"{STEM}.md"
    keep = ""
    if md.exists() and "\n## Discussion" in md.read_text():
        keep = md.read_text()[md.read_text().index("\n## Discussion"):]
    md.write_text(markdown(result) + keep)


def plot(result) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    base = result["baseline"]
    stats = seed_stats(result["runs"])
    for criterion in CRITERIA:
        pts = sorted((v["params"], 100 * v["mean"], 100 * v["sd"]) for (c, _), v in stats.items() if c == criterion)
        if not pts:
            continue
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                    label=criterion)
    ax.axhline(100 * base["accuracy"], color="k", ls="--", lw=1, label=f"baseline ({base['params']:,} params)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("CIFAR-10, VGG16 layout (widths 16-128): trimmed + distilled")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{STEM}.png", dpi=120)
    plt.close(fig)


def seed_stats(runs) -> dict:
    """``{(criterion, fraction): {"mean", "sd", "n", "params"}}`` of test accuracy over seeds
    (sample standard deviation; 0 for one seed)."""
    out = {}
    for c in CRITERIA:
        for f in FRACTIONS:
            rows = [r for r in runs if r["criterion"] == c and r["param_fraction"] == f]
            if rows:
                a = np.array([r["accuracy"] for r in rows])
                out[(c, f)] = {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                               "n": len(a), "params": int(np.mean([r["params"] for r in rows]))}
    return out


def seeds_section(result) -> str:
    """Mean and spread over fine-tuning seeds, where a criterion has more than one."""
    stats = seed_stats(result["runs"])
    crit = [c for c in CRITERIA if any(v["n"] > 1 for (k, _), v in stats.items() if k == c)]
    if not crit:
        return ""
    rows = []
    for f in FRACTIONS:
        cells = [f"{100 * v['mean']:.2f} ± {100 * v['sd']:.2f} ({v['n']})" if (v := stats.get((c, f))) else "-"
                 for c in crit]
        rows.append(f"| {100 * f:g} % | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in result["runs"]})
    return ("## Over fine-tuning seeds\n\n"
            f"Test accuracy (%), mean ± sample standard deviation (runs) over seeds {', '.join(map(str, seeds))}: "
            "the same baseline and planned allocation, another seed for the fine-tuning views, shuffling and "
            "scoring images. The tables above are seed 0.\n\n"
            "| params (target) | " + " | ".join(crit) + " |\n|---|" + "---|" * len(crit) + "\n"
            + "\n".join(rows) + "\n\n")


def markdown(result) -> str:
    s, base = result["settings"], result["baseline"]
    acc = {(r["criterion"], r["param_fraction"]): r for r in result["runs"] if r.get("seed", 0) == 0}
    stats = seed_stats(result["runs"])
    head = "| params (target) | " + " | ".join(CRITERIA) + " |\n|---|" + "---|" * len(CRITERIA) + "\n"
    rows = []
    for frac in FRACTIONS:
        cells = []
        for c in CRITERIA:
            r = acc.get((c, frac))
            cells.append(f"{100 * r['accuracy']:.2f} ({r['params']:,})" if r else "-")
        rows.append(f"| {100 * frac:g} % of {base['params']:,} | " + " | ".join(cells) + " |")
    val_rows = []
    for frac in FRACTIONS:
        cells = [f"{100 * acc[(c, frac)]['val_accuracy']:.2f}" if (c, frac) in acc else "-" for c in CRITERIA]
        val_rows.append(f"| {100 * frac:g} % | " + " | ".join(cells) + " |")
    checks = []
    for crit in ("relevance", "relevance_weighted"):
        for frac, limit in ((0.10, 1.0), (0.011, 3.0)):
            r = acc.get((crit, frac))
            if r:
                drop = 100 * (base["accuracy"] - r["accuracy"])
                checks.append(f"- {crit} at {100 * frac:g} % of the parameters: baseline minus trimmed = "
                              f"{drop:+.2f} points (target at most {limit:g}): "
                              f"**{'met' if drop <= limit else 'not met'}**")
        both = [f for f in FRACTIONS if (crit, f) in stats and ("l1", f) in stats]
        worse = [f for f in both if stats[(crit, f)]["mean"] < stats[("l1", f)]["mean"]]
        if both:
            missing = "" if len(both) == len(FRACTIONS) else \
                f" (compared at {', '.join(f'{100 * f:g} %' for f in both)} only: the other budgets lack a run)"
            n = min(min(stats[(crit, f)]["n"], stats[("l1", f)]["n"]) for f in both)
            over = " (seed 0)" if n == 1 else f" (means over at least {n} seeds)"
            gaps = "; ".join(f"{100 * f:g} %: {100 * (stats[(crit, f)]['mean'] - stats[('l1', f)]['mean']):+.2f}"
                             for f in both)
            checks.append(f"- {crit} >= L1 at every budget{over}: " + ("**met**" if not worse else
                          "**not met** at " + ", ".join(f"{100 * f:g} %" for f in worse))
                          + f" ({crit} minus L1, points: {gaps})" + missing)
        elif any((crit, f) in acc for f in FRACTIONS):
            checks.append(f"- {crit} >= L1 at every budget: not measured (no L1 run with this allocation)")
    probe = "\n".join(f"| {t['ranking']} | {t['normalize']} | {t['cost'] or '-'} | {t['min_kernels']} | "
                      + " | ".join(f"{100 * t['val_accuracy'][c]:.2f}" if c in t["val_accuracy"] else "-"
                                   for c in CRITERIA)
                      + f" | {100 * t['mean_val_accuracy']:.2f} |" for t in result["ranking_probe"])
    return (
        "# Trimming criteria on CIFAR-10\n\n"
        f"`{result['command']}` ({result['cores']} cores, {result['machine']}); data: "
        "`../shared/datasets/cifar10-jpg.zip` (JPEG-compressed CIFAR-10), train/ split 45,000 train + "
        "5,000 validation (stratified, seed 0), test/ (10,000) only for the numbers below.\n\n"
        "## Baseline\n\n"
        f"VGG16 layout: 13 conv 3x3 (no bias) + BN + ReLU in blocks of {s['convs_per_block']} with widths "
        f"{s['widths']}, 2x2 max-pooling after each block, Flatten, Dense {s['dense']} + ReLU + Dropout 0.3, "
        f"Dense 10 (logits). Trained {s['baseline_epochs']} epochs, Adam {s['baseline_learning_rate']:g} with "
        f"cosine decay, batch {s['baseline_batch_size']}, {s['augmentation']}, seed {s['seed']}. "
        f"**{base['params']:,} parameters, {base['macs']:,} MACs, test accuracy {100 * base['accuracy']:.2f} %** "
        f"(validation {100 * base['val_accuracy']:.2f} %, {base['train_s'] / 60:.0f} min). Saved as "
        "`benchmarks/work/cifar10_baseline.h5`.\n\n"
        "## Trimming schedule (identical for every criterion)\n\n"
        f"Budgets {', '.join(f'{100 * f:g} %' for f in FRACTIONS)} of the baseline's parameters, reached in "
        "that order: each step is one `trim_schedule` round on the previous step's model (re-scored), the "
        "keep ratio bisected so that parameters <= budget, batch-norm statistics re-estimated on the scoring "
        "images, then "
        f"{s['finetune_epochs']} epochs of fine-tuning distilled from the baseline (T={s['temperature']:g}, "
        f"alpha={s['alpha']:g}; Adam {s['finetune_learning_rate']:g} with cosine decay to 0, batch "
        f"{s['finetune_batch_size']}, weights of the epoch with the best validation loss kept) on all "
        f"{s['finetune_images']:,} training images, each epoch a new seeded view (random horizontal flip, shift "
        "up to 4 px with zero fill; the same views for every criterion), batch-norm statistics re-estimated "
        "again. Data-driven criteria "
        f"score on {s['representative']} training images. Ranking: **{s['ranking']}**, normalisation "
        f"**{s['normalize']}**, cost **{s['cost'] or 'none'}**, at least **{s['min_kernels']}** kernels per "
        "layer, chosen on validation accuracy (mean over relevance, L1, APoZ and random, probed with plain "
        "fine-tuning: 1 epoch per step on 5,000 images, no augmentation) of the same chain shortened to "
        f"{' then '.join(f'{100 * f:g} %' for f in s['probe_fractions'])}:\n\n"
        "| ranking | normalisation | cost | min kernels | " + " | ".join(CRITERIA) + " | mean |\n|---|---|---|---|"
        + "---|" * (len(CRITERIA) + 1)
        + "\n" + probe + "\n\n"
        + (f"The cost **{s['cost']}** replaces the probe's 'none': it was chosen afterwards on validation "
           "accuracy by `trim_cifar10_allocation.py` (one-shot to 10 %, relevance_weighted: 75.02 % with it, "
           "63.34 % without). " + ALLOCATION_WORDS[s["allocation"]] + " The same chain without a cost is "
           "`trim_cifar10_score_only.md` (`--allocation score`).\n\n" if s["cost"] else "")
        + "## Test accuracy (%) and parameters\n\n" + head + "\n".join(rows) + "\n\n"
        f"Baseline: {100 * base['accuracy']:.2f} %. Plot: `{STEM}.png` (means over seeds, bars one standard "
        "deviation). Validation accuracy (%), the split every choice was made on:\n\n" + head
        + "\n".join(val_rows) + "\n\n" + seeds_section(result)
        + "Minutes per criterion (all five steps, seed 0, 2 shared cores): "
        + ", ".join(f"{c} {sum(r['seconds'] for (k, _), r in acc.items() if k == c) / 60:.1f}"
                    for c in CRITERIA if any(r["criterion"] == c for r in result["runs"]))
        + f" (a chain that finds no cached teacher outputs also runs the teacher on every view; later chains "
        f"read them from the cache); baseline training {base['train_s'] / 60:.1f}.\n\n"
        "## Targets\n\n" + "\n".join(checks) + "\n"
    )


def arg(flag: str, default: str) -> str:
    return sys.argv[sys.argv.index(flag) + 1] if flag in sys.argv else default


def finished_runs() -> list[dict]:
    """Every finished step of every seed (rows written before seeds existed are seed 0)."""
    dirs = [(0, RUNS)] + sorted((int(d.name[4:]), d) for d in RUNS.glob("seed*") if d.name[4:].isdigit())
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
        write_results(base_meta, finished_runs(), choice, s, time.perf_counter() - t0)
        return
    for seed in seeds:
        for criterion in criteria:
            run_chain(criterion, baseline, data, s, base_meta, choice, seed)
            write_results(base_meta, finished_runs(), choice, s, time.perf_counter() - t0)
    log(f"done in {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
