"""Which kernels survive: per-layer normalisation, layer or global ranking, floors.

Raw scores do not compare across layers. L1 norms grow with a layer's fan-in (27
weights per kernel in the first conv of a VGG, 1,152 in the last); post-activation
means follow each layer's activation scale, which the next layer's weights and
batch norm undo anyway. So before kernels of different layers compete for one
global threshold, each producer's scores are divided by the layer's **mean
absolute score** (``normalize="mean"``, the default): 1.0 is "as relevant as an
average kernel of this layer", a dead kernel stays exactly 0 in every layer, and
the order inside a layer never changes. We prefer it to dividing by the max (one
outlier kernel would squash the whole layer) and to z-scores (they discard the
zero point, so dead kernels no longer rank below weak live ones, and
half of every layer turns negative). ``"max"``, ``"zscore"`` and ``"none"`` are
there for comparison.

``"rank"`` replaces each score by its quantile in the layer (mean 1, the layer's order
kept): every layer's scores then spread alike, so with a cost (below) how many kernels a
layer keeps follows its cost alone, graded, while the criterion still decides which.
That matters in deep cuts. Mean-normalised scores vary little inside a layer
(coefficient of variation in the convs of the CIFAR-10 VGG: mostly 0.1-0.2 for the
activation criteria, 0.02-0.07 for L1, 0.5-0.7 for random scores;
``benchmarks/results/score_spread.md``), so against a cost each layer is kept almost
whole or cut to its floor; random scores cut every layer by a graded amount and did
better at 5 % of the parameters and below (``benchmarks/results/trim_cifar10.md``). The price: a dead layer
ranks like a live one, so the layer's overall relevance no longer counts.

Rankings: ``"layer"`` keeps ``keep`` of every layer's kernels (the paper's
setting); ``"global"`` keeps the overall best ``keep`` fraction of all trimmable
kernels under one threshold, so a layer whose kernels are mostly weak loses more
than a layer of uniformly useful ones. Either way each layer keeps at least
``max(min_kernels, ceil(min_fraction * n))`` kernels, so no layer is cut to
nothing by a global threshold.

Under a parameter or MAC budget a kernel's price matters as much as its score: a
first-layer VGG filter costs ~170 parameters, a last-layer one ~2,300. Global
ranking with ``costs`` compares score per relative cost instead (``select``). Dividing
by the full cost overshoots on a VGG: relevance scores differ far less between layers
than costs do (14x), so the deep layers go down to their floors while the cheap early
layers stay whole. ``"sqrt_params"``/``"sqrt_macs"`` divide by the square root of the
relative cost, a middle way between ignoring the price and letting it decide.
"""
from __future__ import annotations

import math

import numpy as np

from fpgacnn.errors import InputError

NORMALIZATIONS = ("mean", "max", "zscore", "rank", "none")
RANKINGS = ("layer", "global")
COSTS = ("params", "macs", "sqrt_params", "sqrt_macs")


def normalize_scores(scores, how: str = "mean") -> np.ndarray:
    """One layer's scores on a scale shared by all layers (see module docstring)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if how == "none" or s.size == 0:
        return s
    if how == "mean":
        ref = np.mean(np.abs(s))
        return s / ref if ref > 0 else np.zeros_like(s)
    if how == "max":
        ref = np.max(np.abs(s))
        return s / ref if ref > 0 else np.zeros_like(s)
    if how == "zscore":
        std = np.std(s)
        return (s - s.mean()) / std if std > 0 else np.zeros_like(s)
    if how == "rank":  # mid-rank quantile, ties share it: 2 * (below + tied / 2) / n
        ordered = np.sort(s)
        below, up_to = np.searchsorted(ordered, s, "left"), np.searchsorted(ordered, s, "right")
        return (below + up_to) / s.size
    raise InputError(f"unknown score normalisation '{how}' (choose from {', '.join(NORMALIZATIONS)})")


def floor(size: int, min_kernels: int = 1, min_fraction: float = 0.0) -> int:
    """The fewest kernels a group of ``size`` may keep."""
    return min(int(size), max(int(min_kernels), math.ceil(float(min_fraction) * size - 1e-9)))


def select(group_scores: dict[int, np.ndarray], keep: float, *, ranking: str = "layer",
           min_kernels: int = 1, min_fraction: float = 0.0,
           costs: dict[int, float] | None = None) -> dict[int, np.ndarray]:
    """Boolean keep-mask per group id from (normalised) per-kernel scores.

    ``costs`` (global ranking only): what one kernel of each group costs (parameters or
    MACs it takes with it). Kernels then compete on score per relative cost -- score
    divided by cost / mean kernel cost -- so under a parameter budget a cheap
    first-layer filter outranks an equally relevant but 10x dearer last-layer one.
    Ties go to the lower kernel index (then the earlier group), so the choice is
    deterministic. For fixed scores and costs the kept set only grows with ``keep``,
    which is what lets schedules bisect on ``keep``.
    """
    order = {g: np.argsort(-np.asarray(s), kind="stable") for g, s in group_scores.items()}
    floors = {g: floor(len(s), min_kernels, min_fraction) for g, s in group_scores.items()}
    if ranking == "layer":
        counts = {g: min(len(s), max(floors[g], math.ceil(keep * len(s) - 1e-9)))
                  for g, s in group_scores.items()}
    elif ranking == "global":
        counts = dict(floors)
        total = sum(len(s) for s in group_scores.values())
        extra = math.ceil(keep * total - 1e-9) - sum(floors.values())
        if extra > 0:
            # candidates: every kernel beyond its group's floor, best first
            worth = _per_cost(group_scores, costs) if costs else group_scores
            cand = [(-float(worth[g][i]), pos, g)
                    for pos, g in enumerate(group_scores) for i in order[g][floors[g]:]]
            cand.sort(key=lambda c: (c[0], c[1]))  # stable: lower index first within a group
            for _, _, g in cand[:extra]:
                counts[g] += 1
    else:
        raise InputError(f"unknown ranking '{ranking}' (choose from {', '.join(RANKINGS)})")
    return _top_masks(group_scores, counts, order)


def select_widths(group_scores: dict[int, np.ndarray], counts: dict[int, int]) -> dict[int, np.ndarray]:
    """Keep-mask per group holding its ``counts[g]`` best-scoring kernels (all where absent,
    at least one, at most the group); ties go to the lower index, as in ``select``."""
    return _top_masks(group_scores, {g: len(s) if g not in counts else min(len(s), max(1, int(counts[g])))
                                     for g, s in group_scores.items()})


def _top_masks(group_scores, counts, order=None) -> dict[int, np.ndarray]:
    """The ``counts[g]`` highest-scoring kernels of every group (stable: lower index first)."""
    masks = {}
    for g, s in group_scores.items():
        idx = order[g] if order is not None else np.argsort(-np.asarray(s), kind="stable")
        mask = np.zeros(len(s), dtype=bool)
        mask[idx[:counts[g]]] = True
        masks[g] = mask
    return masks


def _per_cost(group_scores, costs) -> dict[int, np.ndarray]:
    """Scores per relative cost; a negative score is multiplied instead, so dear stays worse."""
    sizes = {g: len(s) for g, s in group_scores.items()}
    mean_cost = sum(costs[g] * sizes[g] for g in group_scores) / max(sum(sizes.values()), 1)
    out = {}
    for g, s in group_scores.items():
        rel = max(float(costs[g]), 1e-12) / mean_cost if mean_cost > 0 else 1.0
        s = np.asarray(s, dtype=np.float64)
        out[g] = np.where(s >= 0, s / rel, s * rel)
    return out


def check_ranking(ranking: str, normalize: str, min_fraction, cost: str | None = None) -> None:
    if cost is not None and (cost not in COSTS or ranking != "global"):
        raise InputError(f"cost must be one of {', '.join(COSTS)} with global ranking, got {cost!r} "
                         f"with {ranking} ranking")
    if ranking not in RANKINGS:
        raise InputError(f"unknown ranking '{ranking}' (choose from {', '.join(RANKINGS)})")
    if normalize not in NORMALIZATIONS:
        raise InputError(f"unknown score normalisation '{normalize}' (choose from {', '.join(NORMALIZATIONS)})")
    if isinstance(min_fraction, bool) or not isinstance(min_fraction, (int, float, np.floating, np.integer)) \
            or not (0.0 <= float(min_fraction) <= 1.0):
        raise InputError(f"min_fraction must be a fraction in [0, 1], got {min_fraction!r}")
