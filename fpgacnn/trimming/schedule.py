"""Trimming schedules: one-shot or iterative trimming to a size target, with fine-tuning.

A target is a fraction of kernels (``{"keep": 0.25}``), a parameter count
(``{"params": 5000}``), a MAC count (``{"macs": 1e6}``), a callable
``budget(model) -> bool`` (True = fits, e.g. an FPGA resource estimate) or an explicit
allocation, kernels per layer (``{"widths": {"block1_conv1": 8, ...}}``; layers not named
keep all theirs). An allocation planned once on the untrimmed network and reached by
re-scored cuts keeps a chain from drifting: with a cost rule, re-planning at every step
starves a layer between two wide ones (its kernels are the dearest), which makes its
neighbours cheaper and wider, and the chain ends in alternating wide and 4-kernel layers. Only
``keep`` maps directly onto what the trimmer does, so every round *bisects* on the
keep ratio: scores are computed once per round, and for each candidate ratio the
selection is re-run and its size counted from weight shapes (``trimmed_size``), no
model built, no fine-tuning. The kept set grows with the ratio, so the size does
too, and bisection finds the largest ratio that meets the round's target. A
callable budget needs the model itself, so its rounds build one per candidate.

Iterative trimming (Ressi et al. remove a fraction per round) re-scores the
fine-tuned model each round: kernels that became relevant after the previous cut
are kept. The per-round targets shrink geometrically from the start to the
final target, so every round removes about the same fraction. Between rounds the
student is fine-tuned, by default distilled from the *untrimmed* model
(``fpgacnn.distill.finetune``): the original network is the best teacher there is.
Before and after fine-tuning the batch-norm statistics are re-estimated
(``calibrate.py``); without that a deep cut can leave a VGG at chance accuracy.
"""
from __future__ import annotations

import math
import time

import numpy as np

from fpgacnn.distill import check_finetune_options
from fpgacnn.errors import InputError
from fpgacnn.trimming.calibrate import recalibrate_batchnorm
from fpgacnn.trimming.core import KernelPlan, TrimResult, _check_options, kernel_scores, layers_report
from fpgacnn.trimming.graph import ChannelGraph
from fpgacnn.trimming.relevance import check_data
from fpgacnn.trimming.select import check_ranking, select_widths
from fpgacnn.trimming.surgery import count_macs, rebuild, trimmed_size
from fpgacnn.validate import check_input_shape, check_model_weights

TARGETS = ("keep", "params", "macs")
_TOL = 1e-4  # bisection stops when the keep-ratio bracket is this narrow


def trim_schedule(model, x, y, *, target, criterion: str = "relevance", rounds: int | None = None,
                  fraction_per_round: float | None = None, finetune_epochs: int = 2, distill: bool = True,
                  temperature: float = 4.0, alpha: float = 0.5, x_val=None, y_val=None,
                  ranking: str = "layer", normalize: str = "mean", min_kernels: int = 1,
                  min_fraction: float = 0.0, representative: int | None = 1000, batch_size: int = 64,
                  learning_rate: float = 1e-3, seed: int = 0, cost: str | None = None, teacher=None,
                  recalibrate: bool = True, callback=None, finetune_options: dict | None = None) -> TrimResult:
    """Trim ``model`` to ``target`` in one or several rounds, fine-tuning after each.

    ``rounds`` (default 1, one-shot) or ``fraction_per_round`` (remove about this
    fraction of the target quantity per round; the number of rounds follows) set the
    schedule; give at most one. ``finetune_epochs`` is per round (0: no fine-tuning);
    ``distill`` makes ``teacher`` (default: the untrimmed ``model``; pass the original when
    chaining schedules) the teacher, else labels alone are used.
    ``ranking``/``normalize``/``min_kernels``/``min_fraction``/``cost`` are ``trim_model``'s.
    Scores come from ``representative`` images of ``x`` (a seeded subset; None: all);
    with ``recalibrate`` the batch-norm statistics are re-estimated on the same images
    after every cut and again after fine-tuning (``calibrate.py``).
    ``finetune_options`` go to ``fpgacnn.distill.finetune`` as they are (e.g.
    ``{"augment": "flip_shift", "lr_schedule": "cosine"}``).
    ``callback(entry, model)`` is called after every round with that round's report
    entry and the fine-tuned model. The report has the final per-layer kernels (indices
    into the *original* layers) and a ``rounds`` list with params, MACs and, when
    ``x_val`` is given, validation accuracy. ``model`` itself is not changed.
    """
    kind, goal = _check_target(target)
    _check_options(0.5, min_kernels, criterion)
    check_ranking(ranking, normalize, min_fraction, cost)
    n_rounds = _check_schedule(rounds, fraction_per_round)
    check_input_shape(model)
    check_model_weights(model, "trim")
    x = check_data(model, x)
    y = np.asarray(y)
    if len(y) != len(x):
        raise InputError(f"{len(x)} images but {len(y)} labels")
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, (int, np.integer)) or finetune_epochs < 0:
        raise InputError(f"finetune_epochs must be a non-negative integer, got {finetune_epochs!r}")
    if x_val is not None and (y_val is None or len(y_val) != len(x_val)):
        raise InputError("x_val needs y_val with one label per image")
    finetune_options = check_finetune_options(finetune_options)
    rng = np.random.default_rng(seed)
    x_rep = x if representative is None or representative >= len(x) else \
        x[np.sort(rng.permutation(len(x))[:int(representative)])]
    opts = dict(criterion=criterion, ranking=ranking, normalize=normalize, min_kernels=min_kernels,
                min_fraction=min_fraction, batch_size=batch_size, seed=seed, cost=cost)

    start_graph = ChannelGraph(model)
    trimmable = [g for g in start_graph.groups if g.trimmable]
    n_trimmable = sum(g.size for g in trimmable)
    origin = {p: np.arange(g.size) for g in start_graph.groups for p in g.producers}
    start = {"params": int(model.count_params()), "macs": count_macs(model), "kernels": n_trimmable}
    if x_val is not None:
        start["val_accuracy"] = _accuracy(model, x_val, y_val)

    if kind == "widths":
        goal = _resolve_widths(start_graph, goal)
    if kind == "budget":  # a scalar to interpolate: the parameters of the largest fitting one-shot model
        first = _Round(model, x_rep, opts)
        final_params = trimmed_size(first.graph, first.masks(first.largest(lambda m: goal(first.build(m)),
                                                                             what="the budget")))[0]
        measure, final = "params", final_params
    elif kind == "widths":  # the kept fraction of kernels, for fraction_per_round
        measure = "keep"
        final = sum(goal.get(g.producers[0], g.size) for g in trimmable) / n_trimmable
    else:
        measure, final = kind, goal
    begin = {"keep": 1.0, "params": start["params"], "macs": start["macs"]}[measure]
    if fraction_per_round is not None:
        ratio = min(final / begin, 1.0)
        n_rounds = max(1, math.ceil(math.log(ratio) / math.log(1.0 - fraction_per_round) - 1e-9)) if ratio < 1 else 1

    current, history = model, []
    for r in range(1, n_rounds + 1):
        t0 = time.perf_counter()
        rnd = first if r == 1 and kind == "budget" else _Round(current, x_rep, opts)
        if kind == "widths":  # each layer's width shrinks geometrically to its goal
            counts = {rnd.graph.group(p).id: round(n * (goal[p] / n) ** (r / n_rounds))
                      for p, n in ((g.producers[0], g.size) for g in trimmable) if p in goal}
            keep = None
        elif kind == "budget" and r == n_rounds:
            keep = rnd.largest(lambda m: goal(rnd.build(m)), what="the budget")
        else:
            goal_r = final if r == n_rounds else begin * (final / begin) ** (r / n_rounds)
            keep = rnd.largest(lambda m, g=goal_r: _size(rnd.graph, m, measure, n_trimmable) <= g,
                               what=f"{measure} <= {goal_r:g}")
        masks = rnd.masks(keep) if keep is not None else select_widths(rnd.scores, counts)
        trimmed = rebuild(current, rnd.graph, masks)
        if recalibrate:
            recalibrate_batchnorm(trimmed, x_rep)
        for group in rnd.graph.groups:
            if group.id in masks:
                for p in group.producers:
                    origin[p] = origin[p][masks[group.id]]
        if finetune_epochs > 0:
            from fpgacnn.distill import finetune

            tutor = (model if teacher is None else teacher) if distill else None
            finetune(trimmed, x, y, teacher=tutor, epochs=int(finetune_epochs), batch_size=batch_size,
                     learning_rate=learning_rate, seed=seed + r, x_val=x_val, y_val=y_val,
                     temperature=temperature, alpha=alpha, **(finetune_options or {}))
            if recalibrate:
                recalibrate_batchnorm(trimmed, x_rep)
        kernels = sum(len(origin[g.producers[0]]) for g in trimmable)
        entry = {"round": r, "keep": float(kernels / n_trimmable if keep is None else keep), "kernels": int(kernels),
                 "params": int(trimmed.count_params()), "macs": count_macs(trimmed)}
        if x_val is not None:
            entry["val_accuracy"] = _accuracy(trimmed, x_val, y_val)
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        history.append(entry)
        if callback is not None:
            callback(entry, trimmed)
        current = trimmed

    report = {
        "criterion": criterion, "ranking": ranking, "normalize": normalize,
        "min_kernels": int(min_kernels), "min_fraction": float(min_fraction), "cost": cost,
        "target": {kind: getattr(goal, "__name__", type(goal).__name__) if kind == "budget"
                   else dict(goal) if kind == "widths" else float(goal)},
        "finetune_epochs": int(finetune_epochs), "distill": bool(distill), "recalibrate": bool(recalibrate),
        "seed": int(seed),
        "start": start, "rounds": history,
        "layers": _final_layers(start_graph, origin),
        "params_before": start["params"], "params_after": int(current.count_params()),
        "macs_before": start["macs"], "macs_after": count_macs(current),
    }
    return TrimResult(current, report)


class _Round:
    """One round's scores on the current model, and the selection for any keep ratio."""

    def __init__(self, model, x_rep, opts):
        self.model = model
        self.opts = opts
        self.graph = ChannelGraph(model)
        raw = kernel_scores(model, x_rep, self.graph, criterion=opts["criterion"],
                            batch_size=opts["batch_size"], seed=opts["seed"])
        self.plan = KernelPlan(self.graph, raw, ranking=opts["ranking"], normalize=opts["normalize"],
                               min_kernels=opts["min_kernels"], min_fraction=opts["min_fraction"],
                               cost=opts["cost"])
        self.scores = self.plan.scores
        self.masks = self.plan.masks

    def build(self, masks):
        return rebuild(self.model, self.graph, masks)

    def largest(self, fits, what: str) -> float:
        """Largest keep ratio whose selection satisfies ``fits(masks)`` (monotone in keep)."""
        if fits(self.masks(1.0)):
            return 1.0
        lo, hi = 1e-9, 1.0
        if not fits(self.masks(lo)):
            params, macs = trimmed_size(self.graph, self.masks(lo))
            raise InputError(f"target {what} is out of reach: the smallest model the floors allow "
                             f"(min_kernels={self.opts['min_kernels']}, min_fraction={self.opts['min_fraction']}) "
                             f"has {params} parameters and {macs} MACs")
        while hi - lo > _TOL:
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if fits(self.masks(mid)) else (lo, mid)
        return lo


def _resolve_widths(graph: ChannelGraph, widths: dict[str, int]) -> dict[str, int]:
    """``{first producer of the group: width}`` for the untrimmed graph; names checked."""
    out = {}
    for name, width in widths.items():
        if name not in graph.producers:
            raise InputError(f"target widths: no layer '{name}' produces kernels in this model")
        group = graph.group(name)
        if not group.trimmable:
            raise InputError(f"target widths: layer '{name}' cannot be trimmed ({group.fixed})")
        if width > group.size:
            raise InputError(f"target widths: layer '{name}' has {group.size} kernels, cannot keep {width}")
        key = group.producers[0]
        if out.get(key, width) != width:
            raise InputError(f"target widths: layers {', '.join(group.producers)} are tied (Add) and must keep "
                             f"the same number of kernels, got {out[key]} and {width}")
        out[key] = width
    return out


def _size(graph, masks, measure: str, n_trimmable: int) -> float:
    if measure == "keep":
        return sum(int(m.sum()) for m in masks.values()) / n_trimmable
    params, macs = trimmed_size(graph, masks)
    return params if measure == "params" else macs


def _final_layers(graph: ChannelGraph, origin: dict[str, np.ndarray]) -> dict[str, dict]:
    masks = {}
    for g in graph.groups:
        if g.trimmable:
            mask = np.zeros(g.size, dtype=bool)
            mask[origin[g.producers[0]]] = True
            masks[g.id] = mask
    out = layers_report(graph, masks, {p: np.zeros(graph.group(p).size) for p in graph.producers})
    for entry in out.values():
        entry.pop("score", None)
    return out


def _accuracy(model, x, y) -> float:
    pred = model.predict(np.asarray(x, dtype=np.float32), batch_size=256, verbose=0)
    return float(np.mean(np.argmax(pred, axis=1) == np.asarray(y)))


def _check_target(target):
    if callable(target):
        return "budget", target
    if isinstance(target, dict) and set(target) == {"widths"}:
        widths = target["widths"]
        if not isinstance(widths, dict) or not widths or any(
                not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                for k, v in widths.items()):
            raise InputError(f"target widths must map layer names to kernel counts >= 1, got {widths!r}")
        return "widths", {k: int(v) for k, v in widths.items()}
    if not isinstance(target, dict) or len(target) != 1:
        raise InputError(f"target must be one of {{'keep': f}}, {{'params': n}}, {{'macs': n}}, "
                         f"{{'widths': {{layer: n}}}} or a callable budget(model) -> bool, got {target!r}")
    (kind, value), = target.items()
    if kind not in TARGETS:
        raise InputError(f"unknown target '{kind}' (choose from {', '.join(TARGETS)} or a callable)")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0 or (kind == "keep" and value > 1):
        bound = "a fraction in (0, 1]" if kind == "keep" else "a positive number"
        raise InputError(f"target {kind} must be {bound}, got {value!r}")
    return kind, float(value)


def _check_schedule(rounds, fraction_per_round) -> int:
    if rounds is not None and fraction_per_round is not None:
        raise InputError("give rounds or fraction_per_round, not both")
    if fraction_per_round is not None:
        if isinstance(fraction_per_round, bool) or not isinstance(fraction_per_round, (int, float)) \
                or not (0.0 < fraction_per_round < 1.0):
            raise InputError(f"fraction_per_round must be a fraction in (0, 1), got {fraction_per_round!r}")
        return 1
    if rounds is None:
        return 1
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise InputError(f"rounds must be a positive integer, got {rounds!r}")
    return int(rounds)
