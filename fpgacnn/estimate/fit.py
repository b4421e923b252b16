"""Fit a trained CNN to an FPGA part: trim level, bit width and reuse factors.

The search is ordered by cost. Estimates take about a second, fine-tuning takes
minutes, so every (trim level, bit width) point is first *screened*: trimmed (one
relevance pass shared by all levels), quantized post-training, given the cheapest
reuse factors that still meet the frame rate (``fpgacnn.estimate.hardware``) and
estimated. A point whose smaller neighbour (less kept, fewer bits) already misses the
budget is not estimated at all. Only the feasible points that no other feasible
point exceeds in both kept kernels and bits, the ones likely to be most accurate,
are fine-tuned, at most ``max_finetune`` of them in the order of ``points.screening_order``
(distilled from the original model, then quantization-aware training, kept only when
it beats post-training quantization on the validation images) and re-estimated with
the fastest reuse factors that still fit; the most accurate one wins. When no point
fits, ``BudgetError`` names the limit the closest one misses.

How kernels are scored and allocated is the trimmer's choice (``trim_options``): by
default the paper's relevance with the same fraction kept in every layer. With
``rounds`` > 1 a fine-tuned candidate is reached in re-scored cuts (``trim_schedule``)
towards the allocation that was screened: each layer ends with the number of kernels the
one-shot cut of the original model gave it, and every cut re-scores only *which* kernels
go. Re-planning the allocation at every cut drifts (a layer between two wide ones has the
dearest kernels and keeps losing them; see the CIFAR-10 trimming benchmark), and the
screened allocation is the one whose hardware was checked. ``allocation`` lets another
criterion's scores plan the kernels per layer while ``criterion`` still chooses which
kernels stay: with the cost rule, "random" scores spread a deep cut more evenly over the
layers than relevance scores do, which the CIFAR-10 benchmark found better at 5 % of the
parameters and below (``benchmarks/results/trim_cifar10_shared_widths.md``).
``normalize="rank"`` grades the criterion's own plan the same way
(``benchmarks/results/trim_cifar10_rank.md``).

Every trimmed model gets its batch-norm statistics re-estimated on the representative
images (``fpgacnn.trimming.calibrate``) before it is quantized, and again after
fine-tuning: with the untrimmed network's moving statistics even a mildly trimmed VGG
loses most of its accuracy (CIFAR-10, keep 0.75: 23% instead of 54%), and the
screening ranking by post-training accuracy would be noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fpgacnn.errors import BudgetError, InputError
from fpgacnn.estimate import points as P
from fpgacnn.estimate.design import Design, hls_config_for, part_code
from fpgacnn.estimate.estimator import Estimate
from fpgacnn.estimate.hardware import HardwareSearch
from fpgacnn.estimate.parts import Part, get_part

DEFAULT_KEEP_GRID = (1.0, 0.75, 0.5, 0.35, 0.25, 0.18, 0.125)
DEFAULT_BITS_GRID = (8, 6, 4)
# how fit trims: the trimmer's criterion and ranking options, plus ``rounds`` (> 1: each
# fine-tuned candidate is reached in that many re-scored cuts, the epochs spread over them)
# ``allocation``: the criterion whose scores plan kernels per layer (None: ``criterion``'s own)
TRIM_DEFAULTS = {"criterion": "relevance", "ranking": "layer", "normalize": "mean", "cost": None,
                 "min_kernels": 1, "rounds": 1, "allocation": None}


def check_trim_options(options) -> dict:
    """``TRIM_DEFAULTS`` updated with ``options``, every value checked before any work starts."""
    from fpgacnn.trimming.core import _check_options
    from fpgacnn.trimming.select import check_ranking

    if options is None:
        options = {}
    if not isinstance(options, dict) or set(options) - set(TRIM_DEFAULTS):
        raise InputError(f"trim_options must be a dict with keys from {sorted(TRIM_DEFAULTS)}, got {options!r}")
    opts = {**TRIM_DEFAULTS, **options}
    for key in ("min_kernels", "rounds"):
        if isinstance(opts[key], bool) or not isinstance(opts[key], (int, np.integer)) or opts[key] < 1:
            raise InputError(f"trim_options['{key}'] must be an integer >= 1, got {opts[key]!r}")
    _check_options(0.5, opts["min_kernels"], opts["criterion"])
    if opts["allocation"] is not None:
        _check_options(0.5, opts["min_kernels"], opts["allocation"])
    check_ranking(opts["ranking"], opts["normalize"], 0.0, opts["cost"])
    return opts


@dataclass
class FitResult:
    """The chosen design and every point tried.

    ``float_model`` is the trimmed, fine-tuned Keras model, ``qmodel`` its QKeras version,
    ``design`` the hardware configuration (per-layer reuse factors and strategies) and
    ``hls_config`` the hls4ml config that builds it; ``input_type`` is the input grid the
    QKeras model was trained on. ``generate(out_dir, ...)`` writes exactly this design.
    """

    float_model: object
    qmodel: object
    design: Design
    hls_config: dict
    estimate: Estimate
    accuracy: float
    keep: float
    bits: int
    input_type: object
    part: Part
    fps_target: float
    clock_mhz: float
    max_utilization: float
    table: list = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.estimate.throughput_fps

    @property
    def latency_ms(self) -> float:
        return self.estimate.total["latency_cycles"] / (self.clock_mhz * 1e3)

    def to_dict(self) -> dict:
        """Everything but the models, JSON-serialisable."""
        return {"part": self.part.to_dict(), "fps_target": self.fps_target, "clock_mhz": self.clock_mhz,
                "max_utilization": self.max_utilization, "keep": self.keep, "bits": self.bits,
                "accuracy": self.accuracy, "fps": self.fps, "latency_ms": self.latency_ms,
                "params": int(self.float_model.count_params()), "design": self.design.to_dict(),
                "input": self.input_type.manifest(), "estimate": self.estimate.to_dict(),
                "hls_config": self.hls_config, "table": self.table}

    def generate(self, out_dir, x_test=None, **kwargs):
        """The hls4ml project of the chosen design (``fpgacnn.hls.generate.generate`` with this
        fit's QKeras model, input grid, part, clock and per-layer reuse factors and strategies);
        ``kwargs`` go to ``generate`` as they are (``y_test``, ``name``, ``force``, ...)."""
        from fpgacnn.hls.generate import generate

        kwargs.setdefault("float_model", self.float_model)
        return generate(self.qmodel, out_dir, x_test=x_test, input_type=self.input_type, input_bits=self.bits,
                        **self.design.generate_options(), **kwargs)

    def summary(self) -> str:
        t, cap = self.estimate.total, self.part.capacity()
        res = ", ".join(f"{k} {t[k]:,}/{cap[k]:,}" for k in ("DSP", "BRAM_18K", "LUT", "FF"))
        return (f"{self.part.name}: keep {self.keep:g}, {self.bits} bits, validation accuracy {self.accuracy:.4f}, "
                f"{self.fps:,.1f} fps, latency {self.latency_ms:.3f} ms at {self.clock_mhz:g} MHz; {res}")


def _check(model, x, y, x_val, y_val, keep_grid, bits_grid, seed):
    from fpgacnn.data import check_images, check_labels

    in_shape, n_out = model.input_shape[1:], int(model.output_shape[-1])
    x = check_images(x, in_shape, "x")
    y = check_labels(y, len(x), n_out, "y")
    if x_val is None:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(x))
        n_val = max(1, len(x) // 10)
        x_val, y_val, x, y = x[order[:n_val]], y[order[:n_val]], x[order[n_val:]], y[order[n_val:]]
    else:
        x_val = check_images(x_val, in_shape, "x_val")
        y_val = check_labels(y_val, len(x_val), n_out, "y_val")
    keeps = sorted({float(k) for k in keep_grid})
    if not keeps or any(not 0 < k <= 1 for k in keeps):
        raise InputError(f"keep_grid must hold fractions in (0, 1], got {keep_grid!r}")
    bits = sorted({int(b) for b in bits_grid})
    if not bits or any(not 2 <= b <= 16 for b in bits) or any(int(b) != b for b in bits_grid):
        raise InputError(f"bits_grid must hold integers in [2, 16], got {bits_grid!r}")
    return x, y, x_val, y_val, keeps, bits


def fit(model, x, y, part="xc7z020clg400-1", fps: float = 30, clock_mhz: float = 100,
        max_utilization: float = 0.8, *, x_val=None, y_val=None, keep_grid=DEFAULT_KEEP_GRID,
        bits_grid=DEFAULT_BITS_GRID, reuse_grid=None, finetune_epochs: int = 5, qat_epochs: int | None = None,
        max_finetune: int = 3,
        representative: int = 500, batch_size: int = 64, learning_rate: float = 1e-3,
        backend: str = "Vitis", seed: int = 0, finetune_options: dict | None = None,
        trim_options: dict | None = None, log=None) -> FitResult:
    """The most accurate trimmed and quantized version of ``model`` that fits ``part`` at ``fps``.

    ``model`` is a trained float Keras CNN (a chain, as for ``fpgacnn.quantize``), ``x, y``
    training images and integer labels; without ``x_val, y_val`` a seeded tenth of them
    is held out for validation. ``part`` is a catalogue name, an ordering code or a
    ``Part``. Every resource must stay at or below ``max_utilization`` of the part and
    the estimated initiation interval must give at least ``fps`` images per second at
    ``clock_mhz``. ``reuse_grid`` restricts the reuse factors tried (default: every
    factor hls4ml accepts). At most ``max_finetune`` points are fine-tuned, each for
    ``finetune_epochs`` epochs of distillation and ``qat_epochs`` (default: as many) of
    quantization-aware training;
    ``finetune_options`` go to the distillation (``fpgacnn.distill.finetune``) as they are,
    e.g. ``{"augment": "flip_shift", "lr_schedule": "cosine"}``.
    ``trim_options`` (keys of ``TRIM_DEFAULTS``) choose how kernels are scored and
    allocated, as in ``fpgacnn.trimming.trim_model``; the keep grid is then the fraction of
    all trimmable kernels. ``allocation`` names a criterion whose scores decide how many
    kernels each layer keeps (default: ``criterion``'s). With ``rounds`` > 1 a fine-tuned
    candidate is reached by ``trim_schedule`` in that many re-scored cuts, ``finetune_epochs``
    spread over them (rounded up), distilled from ``model`` throughout.
    Raises ``BudgetError`` when no point fits.
    """
    from fpgacnn.distill import check_finetune_options, finetune
    from fpgacnn.hls.precision import input_spec
    from fpgacnn.quantization import quantize
    from fpgacnn.trimming import ChannelGraph, count_macs, trim_schedule
    from fpgacnn.trimming.calibrate import recalibrate_batchnorm
    from fpgacnn.trimming.core import KernelPlan, group_scores, kernel_scores, mask_widths
    from fpgacnn.trimming.select import select_widths
    from fpgacnn.trimming.surgery import rebuild
    from fpgacnn.zoo import accuracy

    log = log or (lambda msg: None)
    p = get_part(part)
    HardwareSearch.check_options(fps, clock_mhz, max_utilization)
    qat_epochs = finetune_epochs if qat_epochs is None else qat_epochs
    if isinstance(max_finetune, bool) or int(max_finetune) < 1 or int(finetune_epochs) < 0 or int(qat_epochs) < 0:
        raise InputError("max_finetune must be >= 1, finetune_epochs and qat_epochs >= 0")
    finetune_options = check_finetune_options(finetune_options)
    trim_opts = check_trim_options(trim_options)
    rounds = trim_opts.pop("rounds")
    planner = trim_opts.pop("allocation") or trim_opts["criterion"]
    x, y, x_val, y_val, keeps, bits_list = _check(model, x, y, x_val, y_val, keep_grid, bits_grid, seed)
    rng = np.random.default_rng(seed)
    x_rep = x[np.sort(rng.permutation(len(x))[: int(representative)])]
    graph = ChannelGraph(model)
    scores = kernel_scores(model, x_rep, graph, criterion=trim_opts["criterion"],
                           batch_size=batch_size, seed=seed)  # once, shared by every screened level
    plan_scores = scores if planner == trim_opts["criterion"] else kernel_scores(
        model, x_rep, graph, criterion=planner, batch_size=batch_size, seed=seed)

    # the screened allocation at every level: keep-mask per trimmable group
    plan = KernelPlan(graph, plan_scores, **{k: v for k, v in trim_opts.items() if k != "criterion"})
    separate = planner != trim_opts["criterion"]
    chosen = group_scores(graph, scores, trim_opts["normalize"]) if separate else None

    def trimmed_at(keep):  # the trimmed model with batch-norm statistics of its own
        masks = plan.masks(keep)
        if separate:  # the planner's widths, the criterion's choice of kernels
            masks = select_widths(chosen, {g: int(m.sum()) for g, m in masks.items()})
        m = rebuild(model, graph, masks)
        if keep < 1.0:  # untrimmed, the training statistics are the network's own and the better estimate
            recalibrate_batchnorm(m, x_rep, batch_size=batch_size)
        return m

    grids = {b: input_spec(x, b) for b in bits_list}
    hw = dict(part=p, clock_mhz=clock_mhz, fps=fps, max_utilization=max_utilization, reuse_grid=reuse_grid,
              backend=backend)

    rows, infeasible = [], []
    for keep in keeps:
        trimmed = None
        for bits in bits_list:
            smaller = P.dominated_by((keep, bits), infeasible)
            if smaller is not None:
                rows.append(P.skipped_row(keep, bits, smaller))
                infeasible.append((keep, bits))
                continue
            if trimmed is None:
                trimmed = trimmed_at(keep)
            q = quantize(trimmed, bits, x=x_rep, input_bits=bits, input_type=grids[bits])
            choice = HardwareSearch(q, input_type=grids[bits], **hw).feasible()
            row = P.make_row(keep, bits, "screen", choice, p, max_utilization,
                             int(trimmed.count_params()), count_macs(trimmed))
            row["accuracy_ptq"] = accuracy(q, grids[bits].snap(x_val), y_val)
            rows.append(row)
            if not row["fits"]:
                infeasible.append((keep, bits))
            log(f"[fit] keep {keep:g}, {bits} bits: {'fits' if row['fits'] else 'does not fit'} "
                f"({row['bottleneck']} at {row['peak']:.0%} of budget), accuracy after PTQ {row['accuracy_ptq']:.4f}")
    feasible = [r for r in rows if r["fits"]]
    if not feasible:
        raise BudgetError(P.budget_message(rows, p, fps, clock_mhz, max_utilization))

    top = set(P.maximal([(r["keep"], r["bits"]) for r in feasible]))
    cands = P.screening_order([r for r in feasible if (r["keep"], r["bits"]) in top],
                              int(model.output_shape[-1]), len(x_val))[: int(max_finetune)]
    best = None
    for cand in cands:
        keep, bits = cand["keep"], cand["bits"]
        log(f"[fit] fine-tuning keep {keep:g}, {bits} bits ...")
        if rounds > 1 and keep < 1.0:
            widths = mask_widths(graph, plan.masks(keep))
            student = trim_schedule(model, x, y, target={"widths": widths}, rounds=rounds,
                                    finetune_epochs=-(-int(finetune_epochs) // rounds), teacher=model,
                                    x_val=x_val, y_val=y_val, representative=int(representative),
                                    batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                                    finetune_options=finetune_options, **trim_opts).model
        elif finetune_epochs > 0 and keep < 1.0:
            student = trimmed_at(keep)
            finetune(student, x, y, teacher=model, epochs=int(finetune_epochs), batch_size=batch_size,
                     learning_rate=learning_rate, seed=seed, x_val=x_val, y_val=y_val, **finetune_options)
            recalibrate_batchnorm(student, x_rep, batch_size=batch_size)
        else:
            student = trimmed_at(keep)
        snapped = grids[bits].snap(x_val)
        q = quantize(student, bits, x=x, input_bits=bits, input_type=grids[bits])
        acc = accuracy(q, snapped, y_val)
        if qat_epochs > 0:  # QAT usually helps; keep the post-training model when it does not
            qat = quantize(student, bits, x=x, y=y, epochs=int(qat_epochs), batch_size=batch_size,
                           seed=seed, learning_rate=learning_rate, input_bits=bits, input_type=grids[bits],
                           teacher=student)
            acc_qat = accuracy(qat, snapped, y_val)
            if acc_qat >= acc:
                q, acc = qat, acc_qat
        search = HardwareSearch(q, input_type=grids[bits], **hw)
        choice = search.fastest()
        row = P.make_row(keep, bits, "finetuned", choice, p, max_utilization,
                         int(student.count_params()), count_macs(student))
        row["accuracy_ptq"] = cand["accuracy_ptq"]
        row["accuracy"] = float(acc)
        rows.append(row)
        log(f"[fit] keep {keep:g}, {bits} bits: validation accuracy {row['accuracy']:.4f}, "
            f"{'fits' if row['fits'] else 'no longer fits'} at {row['fps']:,.1f} fps")
        if row["fits"] and (best is None or row["accuracy"] > best[0]["accuracy"]):
            best = (row, student, q, choice, search)
    P.mark_pareto(rows)
    if best is None:
        raise BudgetError(P.budget_message([r for r in rows if r["stage"] == "finetuned"], p, fps, clock_mhz,
                                           max_utilization))
    row, student, q, choice, search = best
    # the ordering code as given (xc7z020clg400-1), not the catalogue entry (xc7z020): the vendor tools need it
    design = replace(choice.design, part=part_code(part) if isinstance(part, str) else p.name)
    return FitResult(float_model=student, qmodel=q, design=design,
                     hls_config=hls_config_for(search.prepared, design), estimate=choice.estimate,
                     accuracy=float(row["accuracy"]), keep=row["keep"], bits=row["bits"], input_type=grids[row["bits"]],
                     part=p, fps_target=float(fps), clock_mhz=float(clock_mhz),
                     max_utilization=float(max_utilization), table=rows)


def fits_part(part="xc7z020clg400-1", fps: float = 30, clock_mhz: float = 100, max_utilization: float = 0.8,
              bits: int = 8, *, x=None, reuse_grid=None, backend: str = "Vitis", input_type=None):
    """A budget ``budget(model) -> bool`` for the trimmer: True when ``model``, quantized to
    ``bits`` (post-training; ``x`` sets the ReLU ranges and the input grid), has reuse
    factors that meet ``fps`` within ``max_utilization`` of ``part``. The last
    ``HardwareChoice`` is kept on the function as ``budget.last``. ``input_type`` overrides the
    input grid derived from ``x`` (``fit`` passes the one it screens with)."""
    from fpgacnn.hls.precision import input_spec
    from fpgacnn.quantization import quantize

    p = get_part(part)
    grid = input_spec(x, bits) if input_type is None else input_type
    HardwareSearch.check_options(fps, clock_mhz, max_utilization)

    def budget(model) -> bool:
        q = quantize(model, bits, x=x, input_bits=bits, input_type=grid)
        choice = HardwareSearch(q, p, clock_mhz, fps, max_utilization, reuse_grid=reuse_grid, backend=backend,
                                input_type=grid).feasible()
        budget.last = choice
        return bool(choice.fits)

    budget.last = None
    budget.__name__ = f"fits_{p.name}_{fps:g}fps"
    return budget
