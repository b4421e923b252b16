"""The whole chain on one model: trim → fine-tune → quantize (QAT) → generate → csim → report.

Each stage is the public API function of its module; this file only sequences them,
times them and collects the numbers a user needs into ``report.json``.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import deferred_signals, make_temp_dir, replace_dir
from .data import Split
from .errors import InputError, OutputExistsError
from .validate import check_options, check_pipeline_model, check_split


@dataclass
class PipelineOptions:
    keep: float = 0.5
    bits: int = 8
    part: str = "xc7z020clg400-1"
    backend: str = "Vitis"
    io_type: str = "io_stream"
    clock_period_ns: float = 10.0
    finetune_epochs: int = 10
    qat_epochs: int = 10
    representative: int = 500
    csim_samples: int | None = None
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    distill: bool = True          # fine-tune and QAT distilled from the previous stage's model
    criterion: str = "relevance"  # relevance | relevance_weighted | l1 | apoz | random
    augment: str | None = None    # fine-tuning after trimming: None | "shift" | "flip_shift"
    lr_schedule: str = "constant"  # fine-tuning after trimming: "constant" | "cosine"
    fps: float = 30.0             # frame-rate target for choosing the reuse factor
    max_utilization: float = 0.8  # of every resource of the part
    strategy: str | None = None   # None: the fastest design that fits the part; else fixed
    reuse_factor: int = 1         # with a fixed strategy
    fifo_depth: str | int = "auto"  # io_stream FIFOs: "auto" | "full" | a depth (fpgacnn.hls.fifo)
    preprocessing: dict | None = None  # image-folder recipe, recorded in the project manifest
    name: str = "myproject"
    force: bool = False


@dataclass
class StageTimer:
    seconds: dict = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, log=None):
        if log:
            log(f"[{name}] ...")
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - t0, 3)
        if log:
            log(f"[{name}] done in {self.seconds[name]:.1f} s")


def check_output_dir(out_dir, force: bool) -> Path:
    """Refuse before any work is done, not after minutes of training."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output path '{out}' exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(out)
    return out


def run_pipeline(model, split: Split, out_dir, opts: PipelineOptions | None = None,
                 timer: StageTimer | None = None, log=None, source_sha256: str | None = None) -> dict:
    """Trim, quantize, generate and simulate ``model``; returns (and writes) the report."""
    from .zoo import accuracy

    opts = opts or PipelineOptions()
    timer = timer or StageTimer()
    # Everything that can be checked without training is checked first (fpgacnn.validate).
    check_options(opts)
    out = check_output_dir(out_dir, opts.force)
    check_pipeline_model(model, opts.io_type)
    x_train, y_train, x_val, y_val, x_test, y_test = check_split(split, model)
    n_out = int(model.output_shape[-1])

    report: dict = {"model": {"params_before": int(model.count_params())}, "accuracy": {}}
    report["accuracy"]["float"] = accuracy(model, x_test, y_test)

    with timer.stage("trim", log):
        trimmed, report["trim"] = _trim_stage(model, x_train, y_train, x_val, y_val, opts)
    report["model"]["params_after"] = int(trimmed.count_params())
    report["accuracy"]["trimmed"] = accuracy(trimmed, x_test, y_test)

    from .hls.precision import input_spec

    # One input grid for QAT, the testbench and the hardware, chosen from the training data.
    grid = input_spec(x_train, opts.bits)
    with timer.stage("quantize", log):
        from . import quantize

        qmodel = quantize(trimmed, bits=opts.bits, x=x_train, y=y_train, epochs=opts.qat_epochs,
                          batch_size=opts.batch_size, seed=opts.seed, input_bits=opts.bits, input_type=grid,
                          teacher=trimmed if opts.distill else None)
    report["accuracy"]["quantized"] = accuracy(qmodel, grid.snap(x_test), y_test)

    n_csim = len(x_test) if opts.csim_samples is None else min(opts.csim_samples, len(x_test))
    # The project, its csim build and report.json are put together in a staging directory
    # next to ``out`` and renamed into place at the end: an interrupted or failed run leaves
    # the previous project (or nothing), never a project without its report.
    staging = make_temp_dir(out.absolute().parent, out.name)
    try:
        work = staging / "project"
        with timer.stage("generate", log):
            from . import generate

            strategy, reuse, report["hardware"] = _choose_hardware(qmodel, grid, opts)
            project = generate(qmodel, work, part=opts.part, backend=opts.backend, io_type=opts.io_type,
                               strategy=strategy, reuse_factor=reuse,
                               x_test=x_test[:n_csim], y_test=y_test[:n_csim], float_model=trimmed,
                               name=opts.name, clock_period_ns=opts.clock_period_ns,
                               classes=split.classes, source_model_sha256=source_sha256,
                               input_bits=opts.bits, input_type=grid, preprocessing=opts.preprocessing,
                               fifo_depth=opts.fifo_depth)
        with timer.stage("csim", log):
            from . import csim

            result = csim(project)
        _finish_report(report, result, project, out, y_test[:n_csim], n_out, opts, timer)
        (work / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        replace_dir(work, out, force=opts.force)
    finally:
        with deferred_signals():
            shutil.rmtree(staging, ignore_errors=True)
    return report


def _finish_report(report: dict, result, project, out: Path, y_csim, n_out: int, opts: PipelineOptions,
                   timer: StageTimer) -> None:
    report["accuracy"]["csim"] = result.accuracy
    report["csim"] = {
        "bit_exact": bool(result.bit_exact),
        "passed": bool(result.passed),
        "argmax_agreement": float(result.argmax_agreement),
        "samples": int(result.samples),
        "max_abs_diff": float(result.max_abs_diff),
        "img_per_s": float(result.img_per_s),
        "confusion": _confusion(result.outputs, y_csim, n_out),
    }
    if project.manifest.get("estimate"):
        report["estimate"] = project.manifest["estimate"]
    report["project"] = {"dir": _relative(out), "name": project.name, "part": opts.part,
                         "backend": opts.backend, "io_type": opts.io_type}
    report["options"] = {k: v for k, v in vars(opts).items() if k not in ("force", "preprocessing")}
    if opts.preprocessing:
        report["preprocessing"] = opts.preprocessing
    report["timing_s"] = {"train": 0.0, **timer.seconds}  # train stays 0 for a model trained elsewhere


def _choose_hardware(qmodel, grid, opts: PipelineOptions):
    """The fastest (strategy, reuse factor) whose estimate fits the part at the frame rate.

    Fully parallel (Latency, reuse 1) is tried first; then multipliers are shared more and
    more (Resource strategy) until the design fits under ``max_utilization`` of every
    resource while still meeting ``fps``. Estimates take seconds, so this costs little; a
    design that cannot fit is still generated, and the report says what is short.
    """
    from .errors import FpgacnnError
    from .estimate.design import Design, estimate_design, prepare
    from .estimate.parts import get_part

    if opts.strategy is not None:
        return opts.strategy, opts.reuse_factor, {"chosen": {"strategy": opts.strategy, "reuse_factor": opts.reuse_factor},
                                                  "search": "fixed by the user"}
    clock_mhz = 1000.0 / opts.clock_period_ns
    try:
        part = get_part(opts.part)
        prepared = prepare(qmodel, input_type=grid, input_bits=opts.bits)
    except FpgacnnError as exc:  # a custom part, or a model the estimator cannot read
        return "Latency", 1, {"chosen": {"strategy": "Latency", "reuse_factor": 1}, "search": f"skipped: {exc}"}
    tried = []
    for strategy, reuse in [("Latency", 1)] + [("Resource", r) for r in (2, 4, 8, 16, 32, 64, 128, 256)]:
        design = Design(part=opts.part, clock_mhz=clock_mhz, io_type=opts.io_type, backend=opts.backend,
                        strategy=strategy, reuse_factor=reuse, fifo_depth=opts.fifo_depth)
        try:
            est = estimate_design(prepared, design, part=part)
        except FpgacnnError:
            continue
        fits, fast = est.fits(part, opts.max_utilization), est.throughput_fps >= opts.fps
        tried.append({"strategy": strategy, "reuse_factor": reuse, "fits": fits, "fps": round(est.throughput_fps, 1),
                      **{k: int(v) for k, v in est.total.items()}})
        if fits and fast:
            break
        if not fast:
            break  # sharing more only gets slower
    ok = [t for t in tried if t["fits"] and t["fps"] >= opts.fps]
    pick = ok[0] if ok else min(tried, key=lambda t: t["LUT"], default={"strategy": "Latency", "reuse_factor": 1})
    info = {"chosen": {"strategy": pick["strategy"], "reuse_factor": pick["reuse_factor"]}, "fits": bool(ok),
            "max_utilization": opts.max_utilization, "fps_target": opts.fps, "tried": tried}
    return pick["strategy"], pick["reuse_factor"], info


def _trim_stage(model, x_train, y_train, x_val, y_val, opts: PipelineOptions):
    """Trim by the chosen criterion, then recover accuracy by (distilled) fine-tuning.

    For the relevance criterion the scores are computed once here and handed to the
    trimmer, so the report can carry their distribution without a second pass.
    """
    from .distill import finetune
    from .trimming import relevance_scores, trim_model

    rng = np.random.default_rng(opts.seed)
    rep = x_train[rng.permutation(len(x_train))[: opts.representative]]
    scores = relevance_scores(model, rep, batch_size=opts.batch_size) if opts.criterion == "relevance" else None
    result = trim_model(model, rep, keep=opts.keep, batch_size=opts.batch_size, scores=scores,
                        criterion=opts.criterion, seed=opts.seed)
    trimmed = result.model
    if opts.finetune_epochs > 0:
        finetune(trimmed, x_train, y_train, teacher=model if opts.distill else None,
                 epochs=opts.finetune_epochs, batch_size=opts.batch_size,
                 learning_rate=opts.learning_rate, seed=opts.seed, x_val=x_val, y_val=y_val,
                 augment=opts.augment, lr_schedule=opts.lr_schedule)
    layers = result.report.get("layers", {})
    summary = {
        "criterion": opts.criterion,
        "keep": opts.keep,
        "layers": [{"name": name, "kernels_before": int(v["kernels_before"]), "kernels_after": int(v["kernels_after"])}
                   for name, v in layers.items()],
        "params_before": result.report.get("params_before"),
        "params_after": result.report.get("params_after"),
        "macs_before": result.report.get("macs_before"),
        "macs_after": result.report.get("macs_after"),
    }
    if scores:
        summary["scores"] = {k: [round(float(v), 6) for v in np.asarray(arr).ravel()] for k, arr in scores.items()}
    return trimmed, summary


def _confusion(outputs, labels, n_classes: int) -> list[list[int]]:
    """Rows: true class; columns: class the C simulation predicted."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    pred = np.asarray(outputs).reshape(len(labels), -1).argmax(axis=1)
    np.add.at(m, (np.asarray(labels), pred), 1)
    return m.tolist()


def _relative(path: Path) -> str:
    """Relative to the working directory, so a report never carries a machine's absolute path."""
    return os.path.relpath(path.resolve(), Path.cwd().resolve())


def summary_table(report: dict) -> str:
    """A short fixed-width summary for the terminal."""
    acc = report["accuracy"]
    cs = report["csim"]
    t = report.get("timing_s", {})
    rows = [
        ("parameters", f"{report['model']['params_before']:,} -> {report['model']['params_after']:,}"),
        ("accuracy float", f"{acc['float']:.4f}"),
        ("accuracy trimmed", f"{acc['trimmed']:.4f}"),
        ("accuracy quantized", f"{acc['quantized']:.4f}"),
        ("accuracy csim", f"{acc['csim']:.4f}" if acc.get("csim") is not None else "n/a"),
        ("csim bit-exact", f"{cs['bit_exact']} ({cs['samples']} samples)"),
        ("csim argmax agreement", f"{cs['argmax_agreement']:.4f}"),
        ("project", report["project"]["dir"]),
        ("time (s)", ", ".join(f"{k} {v:.1f}" for k, v in t.items())),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
