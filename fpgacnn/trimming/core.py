"""``trim``: choose the kernels to keep per channel group, then rebuild the model.

Selection is per ``ChannelGroup`` (graph.py): a group tied together by a residual
``Add`` is scored by the mean of its producers' (normalised) scores and loses the
same kernels in every producer. Groups that reach a model output or are otherwise
fixed keep all their kernels, so the model's output layer never changes width.
How scores are normalised and ranked (per layer or globally) is in ``select.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fpgacnn.errors import InputError
from fpgacnn.trimming.graph import ChannelGraph
from fpgacnn.trimming.relevance import CRITERIA, check_data, criterion_scores
from fpgacnn.trimming.select import COSTS, check_ranking, normalize_scores, select
from fpgacnn.trimming.surgery import count_macs, rebuild, trimmed_size
from fpgacnn.validate import check_input_shape, check_model_weights


@dataclass
class TrimResult:
    """The trimmed model and a JSON-serialisable report of what was removed."""

    model: object
    report: dict

    @property
    def widths(self) -> dict[str, int]:
        """Kernels kept per trimmable layer: a ``target={"widths": ...}`` for ``trim_schedule``,
        so an allocation planned one way can be reached another."""
        return {name: e["kernels_after"] for name, e in self.report["layers"].items() if not e["fixed"]}


def trim_model(model, x=None, keep: float = 0.5, *, batch_size: int = 64, scores=None,
               min_kernels: int = 1, criterion: str = "relevance", seed: int = 0,
               ranking: str = "layer", normalize: str = "mean", min_fraction: float = 0.0,
               cost: str | None = None) -> TrimResult:
    """Remove the lowest-scoring kernels of the trimmable layers.

    ``ranking="layer"``: each trimmable group keeps ``max(floor, ceil(keep * n))``
    kernels (at most ``n``), the highest-scoring ones. ``ranking="global"``:
    ``ceil(keep * N)`` of all ``N`` trimmable kernels survive, chosen by one
    threshold over per-layer normalised scores (``normalize``); with ``cost``
    ("params" or "macs") on score per unit of that cost (``select.select``). ``floor``
    is ``max(min_kernels, ceil(min_fraction * n))``. Kept kernels stay in their
    original order. ``scores`` (``{producer name: per-kernel array}``) overrides the
    criterion for the layers it names. ``x`` is needed for the data-driven criteria
    ("relevance", "apoz"); for "l1"/"random" it is only shape-checked.
    """
    _check_options(keep, min_kernels, criterion)
    check_ranking(ranking, normalize, min_fraction, cost)
    check_input_shape(model)
    check_model_weights(model, "trim")
    graph = ChannelGraph(model)
    if x is not None:
        x = check_data(model, x)
    all_scores = kernel_scores(model, x, graph, criterion=criterion, batch_size=batch_size,
                               seed=seed, scores=scores)
    masks = KernelPlan(graph, all_scores, ranking=ranking, normalize=normalize, min_kernels=min_kernels,
                       min_fraction=min_fraction, cost=cost).masks(keep)
    new_model = rebuild(model, graph, masks)
    report = {
        "criterion": criterion if not scores else f"{criterion}+given",
        "keep": float(keep),
        "ranking": ranking,
        "normalize": normalize,
        "min_kernels": int(min_kernels),
        "min_fraction": float(min_fraction),
        "cost": cost,
        "layers": layers_report(graph, masks, all_scores),
        "params_before": int(model.count_params()),
        "params_after": int(new_model.count_params()),
        "macs_before": count_macs(model),
        "macs_after": count_macs(new_model),
    }
    return TrimResult(new_model, report)


def trim(model, x=None, keep: float = 0.5, *, batch_size: int = 64, scores=None,
         min_kernels: int = 1, criterion: str = "relevance", seed: int = 0,
         ranking: str = "layer", normalize: str = "mean", min_fraction: float = 0.0,
         cost: str | None = None):
    """A new, physically smaller model; see ``trim_model`` for the options and report."""
    return trim_model(model, x, keep, batch_size=batch_size, scores=scores, min_kernels=min_kernels,
                      criterion=criterion, seed=seed, ranking=ranking, normalize=normalize,
                      min_fraction=min_fraction, cost=cost).model


class KernelPlan:
    """Which kernels survive at any keep ratio, from scores computed once.

    The decision half of ``trim_model``. The normalised group scores and the kernels'
    costs do not depend on the keep ratio, so callers that try many ratios on one set of
    scores (the FPGA fit's screened levels, a schedule's search for a budget) compute
    them once here and rebuild a model only for the ratios they keep.
    """

    def __init__(self, graph: ChannelGraph, all_scores, *, ranking: str = "layer", normalize: str = "mean",
                 min_kernels: int = 1, min_fraction: float = 0.0, cost: str | None = None):
        self.graph = graph
        self.scores = group_scores(graph, all_scores, normalize)
        self.costs = kernel_costs(graph, cost)
        self.options = {"ranking": ranking, "min_kernels": min_kernels, "min_fraction": min_fraction}

    def masks(self, keep: float) -> dict[int, np.ndarray]:
        """Keep-mask per trimmable group."""
        return select(self.scores, keep, costs=self.costs, **self.options)


def mask_widths(graph: ChannelGraph, masks: dict[int, np.ndarray]) -> dict[str, int]:
    """Kernels kept per producer of every trimmable group (``TrimResult.widths``'s shape)."""
    return {p: int(masks[g.id].sum()) for g in graph.groups if g.trimmable for p in g.producers}


def kernel_scores(model, x, graph: ChannelGraph, *, criterion: str = "relevance", batch_size: int = 64,
                  seed: int = 0, scores=None) -> dict[str, np.ndarray]:
    """Raw per-kernel scores of every producer: the criterion's, overridden by ``scores``."""
    trimmable = [g for g in graph.groups if g.trimmable]
    needed = {p for g in trimmable for p in g.producers if not (scores and p in scores)}
    computed = criterion_scores(model, x, criterion, graph, batch_size, seed) if needed else {}
    return {**computed, **{k: np.asarray(v, dtype=np.float64) for k, v in (scores or {}).items()}}


def group_scores(graph: ChannelGraph, all_scores, normalize: str = "mean") -> dict[int, np.ndarray]:
    """Normalised score vector of every trimmable group (mean over its producers)."""
    return {g.id: _group_scores(g, all_scores, normalize=normalize)
            for g in graph.groups if g.trimmable}


def kernel_costs(graph: ChannelGraph, cost: str | None) -> dict[int, float] | None:
    """Parameters or MACs that removing one kernel of each trimmable group saves, or None.

    Marginal cost at the current widths: the kernel's own weights and batch-norm entries
    plus its input slice in every consumer (measured with ``trimmed_size``, so it is exact).
    """
    if cost is None:
        return None
    base = cost.removeprefix("sqrt_")
    power = 0.5 if cost.startswith("sqrt_") else 1.0
    full = trimmed_size(graph, {})[COSTS.index(base)]
    out = {}
    for g in graph.groups:
        if g.trimmable:
            mask = np.ones(g.size, dtype=bool)
            mask[0] = False
            out[g.id] = float(full - trimmed_size(graph, {g.id: mask})[COSTS.index(base)]) ** power
    return out


def layers_report(graph: ChannelGraph, masks: dict[int, np.ndarray], all_scores) -> dict[str, dict]:
    """Per-producer entry of the report; fixed groups keep everything."""
    out = {}
    for group in graph.groups:
        if not group.producers:
            continue
        raw = _group_scores(group, all_scores, strict=group.trimmable, normalize="none")
        mask = masks.get(group.id, np.ones(group.size, dtype=bool))
        for p in group.producers:
            out[p] = _layer_report(group, mask, raw)
    return out


def _check_options(keep, min_kernels, criterion) -> None:
    if isinstance(keep, bool) or not isinstance(keep, (int, float, np.floating, np.integer)) \
            or not (0.0 < float(keep) <= 1.0):
        raise InputError(f"keep must be a fraction in (0, 1], got {keep!r}")
    if isinstance(min_kernels, bool) or not isinstance(min_kernels, (int, np.integer)) or min_kernels < 1:
        raise InputError(f"min_kernels must be a positive integer, got {min_kernels!r}")
    if criterion not in CRITERIA:
        raise InputError(f"unknown trim criterion '{criterion}' (choose from {', '.join(CRITERIA)})")


def _group_scores(group, all_scores, strict: bool = True, normalize: str = "none") -> np.ndarray:
    rows = []
    for p in group.producers:
        s = all_scores.get(p)
        if s is None:
            if strict:
                raise InputError(f"no scores for layer '{p}'")
            continue
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if s.shape != (group.size,):
            raise InputError(f"scores for layer '{p}' have {s.size} entries, the layer has {group.size} kernels")
        rows.append(normalize_scores(s, normalize))
    return np.mean(rows, axis=0) if rows else np.zeros(group.size)


def _layer_report(group, mask: np.ndarray, scores: np.ndarray) -> dict:
    return {
        "kernels_before": int(group.size),
        "kernels_after": int(mask.sum()),
        "kept": [int(i) for i in np.flatnonzero(mask)],
        "group": [str(p) for p in group.producers],
        "fixed": group.fixed or None,
        "score": {"min": float(scores.min()), "max": float(scores.max()), "mean": float(scores.mean())}
        if scores.size else None,
    }
