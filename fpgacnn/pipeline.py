"""The whole chain on one model: trim → fine-tune → quantize (QAT) → generate → csim → report.

Each stage is the public API function of its module; this file only sequences them,
times them and collects the numbers a user needs into ``report.json``.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Split, check_images, check_labels
from .errors import InputError, OutputExistsError


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
    criterion: str = "relevance"  # relevance | l1 | apoz | random
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
    out = check_output_dir(out_dir, opts.force)
    in_shape = model.input_shape[1:]
    n_out = int(model.output_shape[-1])
    x_train = check_images(split.x_train, in_shape, "training images")
    x_test = check_images(split.x_test, in_shape, "test images")
    y_train = check_labels(split.y_train, len(x_train), n_out, "training labels")
    y_test = check_labels(split.y_test, len(x_test), n_out, "test labels")
    x_val, y_val = split.x_val, split.y_val

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
    with timer.stage("generate", log):
        from . import generate

        project = generate(qmodel, out, part=opts.part, backend=opts.backend, io_type=opts.io_type,
                           x_test=x_test[:n_csim], y_test=y_test[:n_csim], float_model=trimmed,
                           name=opts.name, force=opts.force, clock_period_ns=opts.clock_period_ns,
                           classes=split.classes, source_model_sha256=source_sha256,
                           input_bits=opts.bits, input_type=grid, preprocessing=opts.preprocessing)
    with timer.stage("csim", log):
        from . import csim

        result = csim(project)

    report["accuracy"]["csim"] = result.accuracy
    report["csim"] = {
        "bit_exact": bool(result.bit_exact),
        "argmax_agreement": float(result.argmax_agreement),
        "samples": int(result.samples),
        "max_abs_diff": float(result.max_abs_diff),
        "img_per_s": float(result.img_per_s),
        "confusion": _confusion(result.outputs, y_test[:n_csim], n_out),
    }
    if project.manifest.get("estimate"):
        report["estimate"] = project.manifest["estimate"]
    report["project"] = {"dir": _relative(out), "name": project.name, "part": opts.part,
                         "backend": opts.backend, "io_type": opts.io_type}
    report["options"] = {k: v for k, v in vars(opts).items() if k not in ("force", "preprocessing")}
    if opts.preprocessing:
        report["preprocessing"] = opts.preprocessing
    report["timing_s"] = {"train": 0.0, **timer.seconds}  # train stays 0 for a model trained elsewhere
    (Path(project.dir) / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


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
                 learning_rate=opts.learning_rate, seed=opts.seed, x_val=x_val, y_val=y_val)
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
