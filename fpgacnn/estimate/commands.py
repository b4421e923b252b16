"""What ``fpgacnn estimate`` and ``fpgacnn fit`` do, kept out of the CLI module.

A float model is estimated as the design fpgacnn would build from it: quantized
post-training to ``bits`` (no data needed), every layer at one reuse factor and
strategy. A QKeras model is estimated as it is, with the exact per-layer precisions
``generate`` would use; QKeras layers fpgacnn cannot make bit-exact (e.g. fused
Conv2D+BatchNormalization) are estimated with hls4ml's own precision inference instead.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from fpgacnn.errors import InputError, OutputExistsError, UnsupportedLayerError


def is_qkeras(model) -> bool:
    return any(type(ly).__module__.startswith("qkeras") for ly in model.layers)


def estimate_model(model, part="xc7z020clg400-1", clock_mhz: float = 100.0, bits: int = 8, reuse: int = 1,
                   strategy: str = "Latency", backend: str = "Vitis", io_type: str = "io_stream"):
    """``(Estimate, how)`` for a float or QKeras Keras model; ``how`` says which path was taken."""
    from fpgacnn.estimate.design import Design, estimate_design
    from fpgacnn.estimate.estimator import estimate_keras
    from fpgacnn.estimate.parts import get_part

    p = get_part(part)
    if isinstance(reuse, bool) or int(reuse) != reuse or int(reuse) < 1:
        raise InputError(f"reuse factor must be a positive integer, got {reuse!r}")
    design = Design(part=part if isinstance(part, str) else p.name, clock_mhz=float(clock_mhz), io_type=io_type,
                    backend=backend, strategy=strategy, reuse_factor=int(reuse))
    if is_qkeras(model):
        try:
            return estimate_design(model, design, input_bits=int(bits), part=p), "QKeras model as given"
        except UnsupportedLayerError as exc:
            est = estimate_keras(model, io_type=io_type, strategy=strategy, reuse_factor=int(reuse), part=p,
                                 clock_mhz=float(clock_mhz), backend=backend)
            return est, f"QKeras model with hls4ml's precision inference ({exc})"
    from fpgacnn.quantization import quantize

    q = quantize(model, bits=int(bits))
    return estimate_design(q, design, input_bits=int(bits), part=p), f"float model quantized to {int(bits)} bits"


def estimate_json(est, how: str) -> dict:
    from fpgacnn.estimate.summary import block_from_estimate

    return {**block_from_estimate(est), "model": how, "layers": est.to_dict()["layers"]}


def save_fit(result, out_dir, force: bool = False) -> Path:
    """Write the chosen design of a fit: ``float_model.h5``, ``qmodel.h5`` and ``fit.json``
    (design, input grid, estimate, hls4ml config, the table of points tried), all or nothing.
    ``fpgacnn generate OUT/qmodel.h5 --design OUT/fit.json`` builds that design."""
    from fpgacnn.atomic import make_temp_dir, replace_dir

    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise OutputExistsError(out)
    tmp = make_temp_dir(out.absolute().parent, out.name)
    try:
        result.float_model.save(tmp / "float_model.h5")
        result.qmodel.save(tmp / "qmodel.h5")
        (tmp / "fit.json").write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str) + "\n",
                                      encoding="utf-8")
        replace_dir(tmp, out, force=force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


_FIXED = re.compile(r"ap_(u?)fixed<(\d+),(-?\d+)>")


def load_fit_design(path):
    """``(Design, InputSpec)`` of a saved fit: ``path`` is its ``fit.json`` or the directory
    ``save_fit`` wrote. The input grid is the one the QKeras model was trained on, so the
    test vectors are snapped exactly as during the fit."""
    from fpgacnn.estimate.design import Design
    from fpgacnn.hls.fixed import Fixed, InputSpec

    path = Path(path)
    if path.is_dir():
        path = path / "fit.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"design file '{path}' does not exist (give fit.json or the directory fpgacnn fit "
                         "--out wrote)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"design file '{path}' is not readable JSON: {exc}") from None
    if not isinstance(saved, dict) or "design" not in saved or not isinstance(saved.get("input"), dict):
        raise InputError(f"'{path}' is not a fit result: it has no 'design' and 'input'")
    design = Design.from_dict(saved["design"])
    m = _FIXED.fullmatch(str(saved["input"].get("precision", "")).replace(" ", ""))
    if not m or not 2 <= int(m.group(2)) <= 32:
        raise InputError(f"'{path}': input precision {saved['input'].get('precision')!r} is not an ap_[u]fixed<W,I> "
                         "type")
    return design, InputSpec(Fixed(int(m.group(2)), int(m.group(3)), signed=not m.group(1)))
