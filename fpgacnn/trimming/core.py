"""``trim``: choose the kernels to keep per channel group, then rebuild the model.

Selection is per ``ChannelGroup`` (graph.py): a group tied together by a residual
``Add`` is scored by the mean of its producers' scores and loses the same kernels in
every producer. Groups that reach a model output or are otherwise fixed keep all
their kernels, so the model's output layer never changes width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fpgacnn.errors import InputError
from fpgacnn.trimming.graph import ChannelGraph
from fpgacnn.trimming.relevance import CRITERIA, check_data, criterion_scores
from fpgacnn.trimming.surgery import count_macs, rebuild


@dataclass
class TrimResult:
    """The trimmed model and a JSON-serialisable report of what was removed."""

    model: object
    report: dict


def trim_model(model, x=None, keep: float = 0.5, *, batch_size: int = 64, scores=None,
               min_kernels: int = 1, criterion: str = "relevance", seed: int = 0) -> TrimResult:
    """Remove the lowest-scoring kernels of every trimmable layer.

    Each trimmable group keeps ``max(min_kernels, ceil(keep * n))`` kernels (at most
    ``n``), the highest-scoring ones (ties: lower index first), in their original
    order. ``scores`` (``{producer name: per-kernel array}``) overrides the
    criterion for the layers it names. ``x`` is needed for the data-driven criteria
    ("relevance", "apoz"); for "l1"/"random" it is only shape-checked.
    """
    _check_options(keep, min_kernels, criterion)
    graph = ChannelGraph(model)
    if x is not None:
        x = check_data(model, x)
    trimmable = [g for g in graph.groups if g.trimmable]
    needed = {p for g in trimmable for p in g.producers if not (scores and p in scores)}
    computed = criterion_scores(model, x, criterion, graph, batch_size, seed) if needed else {}
    all_scores = {**computed, **{k: np.asarray(v, dtype=np.float64) for k, v in (scores or {}).items()}}

    keep_masks: dict[int, np.ndarray] = {}
    layers_report: dict[str, dict] = {}
    for group in graph.groups:
        if not group.producers:
            continue
        if group.trimmable:
            group_scores = _group_scores(group, all_scores)
            n_keep = min(group.size, max(int(min_kernels), math.ceil(keep * group.size - 1e-9)))
            order = np.argsort(-group_scores, kind="stable")
            mask = np.zeros(group.size, dtype=bool)
            mask[order[:n_keep]] = True
            keep_masks[group.id] = mask
        else:
            group_scores = _group_scores(group, all_scores, strict=False)
            mask = np.ones(group.size, dtype=bool)
        for p in group.producers:
            layers_report[p] = _layer_report(group, mask, group_scores)

    new_model = rebuild(model, graph, keep_masks)
    report = {
        "criterion": criterion if not scores else f"{criterion}+given",
        "keep": float(keep),
        "min_kernels": int(min_kernels),
        "layers": layers_report,
        "params_before": int(model.count_params()),
        "params_after": int(new_model.count_params()),
        "macs_before": count_macs(model),
        "macs_after": count_macs(new_model),
    }
    return TrimResult(new_model, report)


def trim(model, x=None, keep: float = 0.5, *, batch_size: int = 64, scores=None,
         min_kernels: int = 1, criterion: str = "relevance", seed: int = 0):
    """A new, physically smaller model; see ``trim_model`` for the report."""
    return trim_model(model, x, keep, batch_size=batch_size, scores=scores,
                      min_kernels=min_kernels, criterion=criterion, seed=seed).model


def _check_options(keep, min_kernels, criterion) -> None:
    if isinstance(keep, bool) or not isinstance(keep, (int, float, np.floating, np.integer)) \
            or not (0.0 < float(keep) <= 1.0):
        raise InputError(f"keep must be a fraction in (0, 1], got {keep!r}")
    if isinstance(min_kernels, bool) or not isinstance(min_kernels, (int, np.integer)) or min_kernels < 1:
        raise InputError(f"min_kernels must be a positive integer, got {min_kernels!r}")
    if criterion not in CRITERIA:
        raise InputError(f"unknown trim criterion '{criterion}' (choose from {', '.join(CRITERIA)})")


def _group_scores(group, all_scores, strict: bool = True) -> np.ndarray:
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
        rows.append(s)
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
