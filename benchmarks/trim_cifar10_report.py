"""Results of the CIFAR-10 trimming benchmark (``trim_cifar10.py``): JSON, Markdown and plot.

Kept apart from the chain that produces the numbers: ``--write-only`` rewrites these
from finished steps without training. A Markdown file's hand-written ``## Discussion``
section survives a rewrite.
"""
from __future__ import annotations

import json
import os
import platform

import numpy as np

import trim_cifar10 as chain

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


def stem(result) -> str:
    return chain.ALLOCATIONS[result["settings"]["allocation"]]["stem"]


def write_results(base_meta, runs, choice, s, wall_s) -> None:
    chain.RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "baseline": {"params": base_meta["params"], "macs": base_meta["macs"], "accuracy": base_meta["accuracy"],
                     "val_accuracy": base_meta["val_accuracy"], "train_s": base_meta["train_s"]},
        "runs": runs,
        "settings": {**s, **{k: choice[k] for k in s["candidates"][0]}, "allocation": choice["allocation"]},
        "ranking_probe": choice["trials"],
        "wall_s_this_invocation": round(wall_s, 1),
        "cores": os.cpu_count(), "machine": platform.machine(),
        "command": "nice -n 5 .venv/bin/python benchmarks/trim_cifar10.py --allocation " + choice["allocation"],
    }
    (chain.RESULTS / f"{stem(result)}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result)
    chain.write_markdown(chain.RESULTS / f"{stem(result)}.md", markdown(result))


def plot(result) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    base = result["baseline"]
    stats = seed_stats(result["runs"])
    for criterion in chain.CRITERIA:
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
    fig.savefig(chain.RESULTS / f"{stem(result)}.png", dpi=120)
    plt.close(fig)


def seed_stats(runs) -> dict:
    """``{(criterion, fraction): {"mean", "sd", "n", "params"}}`` of test accuracy over seeds
    (sample standard deviation; 0 for one seed)."""
    out = {}
    for c in chain.CRITERIA:
        for f in chain.FRACTIONS:
            rows = [r for r in runs if r["criterion"] == c and r["param_fraction"] == f]
            if rows:
                a = np.array([r["accuracy"] for r in rows])
                out[(c, f)] = {"mean": float(a.mean()), "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                               "n": len(a), "params": int(np.mean([r["params"] for r in rows]))}
    return out


def seeds_section(result) -> str:
    """Mean and spread over fine-tuning seeds, where a criterion has more than one."""
    stats = seed_stats(result["runs"])
    crit = [c for c in chain.CRITERIA if any(v["n"] > 1 for (k, _), v in stats.items() if k == c)]
    if not crit:
        return ""
    rows = []
    for f in chain.FRACTIONS:
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
    head = "| params (target) | " + " | ".join(chain.CRITERIA) + " |\n|---|" + "---|" * len(chain.CRITERIA) + "\n"
    rows = []
    for frac in chain.FRACTIONS:
        cells = []
        for c in chain.CRITERIA:
            r = acc.get((c, frac))
            cells.append(f"{100 * r['accuracy']:.2f} ({r['params']:,})" if r else "-")
        rows.append(f"| {100 * frac:g} % of {base['params']:,} | " + " | ".join(cells) + " |")
    val_rows = []
    for frac in chain.FRACTIONS:
        cells = [f"{100 * acc[(c, frac)]['val_accuracy']:.2f}" if (c, frac) in acc else "-" for c in chain.CRITERIA]
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
        both = [f for f in chain.FRACTIONS if (crit, f) in stats and ("l1", f) in stats]
        worse = [f for f in both if stats[(crit, f)]["mean"] < stats[("l1", f)]["mean"]]
        if both:
            missing = "" if len(both) == len(chain.FRACTIONS) else \
                f" (compared at {', '.join(f'{100 * f:g} %' for f in both)} only: the other budgets lack a run)"
            n = min(min(stats[(crit, f)]["n"], stats[("l1", f)]["n"]) for f in both)
            over = " (seed 0)" if n == 1 else f" (means over at least {n} seeds)"
            gaps = "; ".join(f"{100 * f:g} %: {100 * (stats[(crit, f)]['mean'] - stats[('l1', f)]['mean']):+.2f}"
                             for f in both)
            checks.append(f"- {crit} >= L1 at every budget{over}: " + ("**met**" if not worse else
                          "**not met** at " + ", ".join(f"{100 * f:g} %" for f in worse))
                          + f" ({crit} minus L1, points: {gaps})" + missing)
        elif any((crit, f) in acc for f in chain.FRACTIONS):
            checks.append(f"- {crit} >= L1 at every budget: not measured (no L1 run with this allocation)")
    probe = "\n".join(f"| {t['ranking']} | {t['normalize']} | {t['cost'] or '-'} | {t['min_kernels']} | "
                      + " | ".join(f"{100 * t['val_accuracy'][c]:.2f}" if c in t["val_accuracy"] else "-"
                                   for c in chain.CRITERIA)
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
        f"Budgets {', '.join(f'{100 * f:g} %' for f in chain.FRACTIONS)} of the baseline's parameters, reached in "
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
        "| ranking | normalisation | cost | min kernels | " + " | ".join(chain.CRITERIA) + " | mean |\n|---|---|---|---|"
        + "---|" * (len(chain.CRITERIA) + 1)
        + "\n" + probe + "\n\n"
        + (f"The cost **{s['cost']}** replaces the probe's 'none': it was chosen afterwards on validation "
           "accuracy by `trim_cifar10_allocation.py` (one-shot to 10 %, relevance_weighted: 75.02 % with it, "
           "63.34 % without). " + ALLOCATION_WORDS[s["allocation"]] + " The same chain without a cost is "
           "`trim_cifar10_score_only.md` (`--allocation score`).\n\n" if s["cost"] else "")
        + "## Test accuracy (%) and parameters\n\n" + head + "\n".join(rows) + "\n\n"
        f"Baseline: {100 * base['accuracy']:.2f} %. Plot: `{stem(result)}.png` (means over seeds, bars one standard "
        "deviation). Validation accuracy (%), the split every choice was made on:\n\n" + head
        + "\n".join(val_rows) + "\n\n" + seeds_section(result)
        + "Minutes per criterion (all five steps, seed 0, 2 shared cores): "
        + ", ".join(f"{c} {sum(r['seconds'] for (k, _), r in acc.items() if k == c) / 60:.1f}"
                    for c in chain.CRITERIA if any(r["criterion"] == c for r in result["runs"]))
        + f" (a chain that finds no cached teacher outputs also runs the teacher on every view; later chains "
        f"read them from the cache); baseline training {base['train_s'] / 60:.1f}.\n\n"
        "## Targets\n\n" + "\n".join(checks) + "\n"
    )
