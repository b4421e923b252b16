"""The AXI4-Stream top level for camera pipelines: wire format and template context.

With ``project.axi_stream`` in the manifest, ``render_project_files`` adds a wrapper
``firmware/<top>_axis.cpp`` whose ports a video pipeline (VDMA, a sensor's AXI4-Stream
video output, a DMA) connects to directly. The wire format is fixed here, once, and the
C++ templates, the README and the tests all follow it:

* ``pixels`` (in): ``ap_axiu<8*C, 0, 0, 0>``. One pixel per beat, raster order (row by
  row, left to right), TLAST on the frame's last pixel (H*W beats a frame). Channel ``c``
  is the unsigned byte ``TDATA[8c+7:8c]`` (channel 0 in the least significant byte, the
  channel order of the model's input). TKEEP/TSTRB are ignored.
* Each byte ``p`` becomes ``x = p * scale + offset`` (the manifest's ``input`` section),
  computed exactly, then rounded half to even onto the input type and saturated: the same
  mapping the test vectors went through, so a camera frame gives the logits QKeras gives.
* ``result`` (out): ``ap_axiu<32 + 32*ceil(S/32), 0, 0, 0>``, one beat a frame, TLAST=1.
  ``TDATA[15:0]`` class index (argmax, lowest index on ties), ``TDATA[16]`` frame error
  (TLAST was not on the frame's last pixel), ``TDATA[31:17]`` zero, ``TDATA[32+S-1:32]``
  the score: the largest output value as the raw bits of the ``S``-bit output type.
* Framing: an early TLAST ends the frame (missing pixels read as 0); a frame without TLAST
  on its last pixel has its extra beats dropped up to the next TLAST. Both set the error
  bit, and the next frame starts aligned.
* Control: ``ap_ctrl_none`` (a free-running dataflow pipeline; no driver needed).

``axis_context`` validates everything that goes into the generated C++ (shape, input
mapping, output type) and returns numbers only, so no manifest text reaches the code.
``summarize_results`` reads the wrapper testbench's result beats back and checks them
against the QKeras outputs.
"""
from __future__ import annotations

import math
import re

import numpy as np

from ..errors import InputError, ToolError
from .identifiers import safe_text

PIXEL_BITS = 8
HEADER_CSIM = "firmware/ap_axi_sdata_csim.h"
_RE_FIXED = re.compile(r"ap_(u?)fixed<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,[^<>]*)?>")
_MAX_FRAC_BITS = 32  # scale and offset as ap_fixed constants of at most 56 bits
_MAX_DIM = 1 << 16


def wrapper_files(name: str) -> dict[str, str]:
    """Project-relative path -> template name of the files the wrapper adds."""
    return {
        f"firmware/{name}_axis.h": "axis.h.j2",
        f"firmware/{name}_axis.cpp": "axis.cpp.j2",
        f"{name}_axis_tb.cpp": "axis_tb.cpp.j2",
        HEADER_CSIM: "ap_axi_sdata_csim.h.j2",
    }


def parse_fixed(text, what: str) -> tuple[bool, int, int]:
    """``(signed, width, integer)`` of an ``ap_[u]fixed<W,I[,...]>`` type name."""
    m = _RE_FIXED.fullmatch(str(text).strip())
    if not m:
        raise InputError(f"manifest: {what} {safe_text(str(text), 60)!r} is not an ap_fixed/ap_ufixed type")
    signed, width, integer = m.group(1) != "u", int(m.group(2)), int(m.group(3))
    if not 1 <= width <= 1024 or abs(integer) > 1024:
        raise InputError(f"manifest: {what} has an out-of-range width or integer part")
    return signed, width, integer


def _dyadic(value, what: str) -> float:
    """A finite number with at most 32 fractional bits (exact in the wrapper's arithmetic)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"manifest: {what} must be a number, got {safe_text(str(value), 40)!r}") from None
    if not math.isfinite(v) or abs(v) >= 2.0 ** 23 or v * 2.0 ** _MAX_FRAC_BITS != int(v * 2.0 ** _MAX_FRAC_BITS):
        raise InputError(f"manifest: {what}={v!r} is not a multiple of 2^-{_MAX_FRAC_BITS} below 2^23, "
                         "so the AXI wrapper cannot map pixels onto the input exactly")
    return v


def exact_type(v: float) -> tuple[int, int]:
    """``(width, integer)`` of the narrowest ``ap_fixed`` that holds the dyadic ``v`` exactly."""
    frac = 0
    while v * 2.0 ** frac != int(v * 2.0 ** frac):
        frac += 1
    integer = 1 if v == 0 else max(1, math.floor(math.log2(abs(v))) + 2)
    return integer + frac, integer


def axis_context(manifest: dict, tbinfo: dict, name: str) -> dict:
    """Numbers the wrapper templates need, all checked; raises ``InputError`` otherwise."""
    model = manifest.get("model") or {}
    shape = model.get("input_shape")
    if not isinstance(shape, (list, tuple)) or len(shape) != 3 or \
            not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d < _MAX_DIM for d in shape):
        raise InputError(f"manifest: axi_stream needs an image input (H, W, C), got model.input_shape "
                         f"{safe_text(str(shape), 60)!r}")
    height, width, channels = (int(d) for d in shape)
    if channels > 512:
        raise InputError(f"manifest: {channels} input channels do not fit one AXI4-Stream beat (at most 512)")
    if len(tbinfo["inputs"]) != 1 or len(tbinfo["outputs"]) != 1:
        raise InputError("axi_stream needs a model with exactly one input and one output")
    inp, out = tbinfo["inputs"][0], tbinfo["outputs"][0]
    if inp["kind"] != out["kind"]:
        raise InputError("axi_stream: the hls4ml input and output interfaces differ (stream vs array)")
    if tbinfo["brams"] or sorted(tbinfo["args"]) != sorted([inp["var"], out["var"]]):
        raise InputError("axi_stream: the hls4ml top level takes more than one input and one output "
                         "(weights as ports are not supported)")
    # the wrapper's own names for the core's ports, so no layer name can clash with them
    call_args = ["core_in" if a == inp["var"] else "core_out" for a in tbinfo["args"]]

    section = manifest.get("input") or {}
    in_signed, in_width, in_int = parse_fixed(section.get("precision"), "input.precision")
    scale = _dyadic(section.get("scale"), "input.scale")
    offset = _dyadic(section.get("offset"), "input.offset")
    if scale <= 0:
        raise InputError(f"manifest: input.scale must be positive, got {scale!r}")
    if abs(255 * scale) + abs(offset) >= 2.0 ** 31:
        raise InputError("manifest: input.scale/offset map pixels outside the wrapper's exact range (2^31)")
    out_signed, score_width, score_int = parse_fixed((manifest.get("output") or {}).get("precision"),
                                                     "output.precision")
    if score_width > 992:
        raise InputError(f"manifest: output.precision is {score_width} bits wide, at most 992 fit a result beat")
    result_bits = 32 + 32 * math.ceil(score_width / 32)
    n_outputs = model.get("n_outputs")
    if not isinstance(n_outputs, int) or isinstance(n_outputs, bool) or not 1 <= n_outputs < (1 << 16):
        raise InputError(f"manifest: model.n_outputs must be an integer in [1, 65535] for axi_stream, "
                         f"got {safe_text(str(n_outputs), 40)!r}")
    return {
        "top": f"{name}_axis",
        "stream": inp["kind"] == "stream",
        "height": height,
        "width": width,
        "channels": channels,
        "pixels": height * width,
        "pixel_bits": PIXEL_BITS * channels,
        "result_bits": result_bits,
        "n_outputs": int(n_outputs),
        "in_signed": in_signed,
        "in_width": in_width,
        "in_int": in_int,
        "scale": repr(scale),
        "offset": repr(offset),
        "scale_type": exact_type(scale),
        "offset_type": exact_type(offset),
        "score_signed": out_signed,
        "score_width": score_width,
        "score_int": score_int,
        "call_args": call_args,
        "in_type": inp["type"],
        "in_size": inp["size"],
        "out_type": out["type"],
        "out_size": out["size"],
        "header_csim": HEADER_CSIM.split("/", 1)[1],
    }


def summarize_results(rows: np.ndarray, expected: np.ndarray, compare: str) -> dict:
    """The wrapper testbench's rows ("CLASS SCORE ERROR" per frame, class -1 = skipped) against QKeras.

    ``passed``: at least one frame went through, every class index is the argmax of the
    expected outputs, no frame error, and (``compare="exact"``) every score is exactly the
    largest expected output.
    """
    if rows.ndim != 2 or rows.shape[1] != 3 or len(rows) != len(expected):
        raise ToolError(f"the AXI4-Stream testbench wrote {rows.shape} values, expected {len(expected)} rows of 3")
    classes, scores, errors = rows[:, 0].astype(np.int64), rows[:, 1], rows[:, 2] != 0
    streamed = classes >= 0
    want = expected.argmax(axis=1)
    agree = classes[streamed] == want[streamed]
    exact = None
    if compare == "exact":
        exact = bool(np.all(scores[streamed] == expected.max(axis=1)[streamed]))
    frame_errors = int(np.count_nonzero(errors[streamed]))
    n = int(np.count_nonzero(streamed))
    return {
        "frames": int(len(rows)),
        "streamed": n,
        "skipped": int(len(rows) - n),
        "class_agreement": float(agree.mean()) if n else None,
        "class_mismatches": int(np.count_nonzero(~agree)),
        "score_exact": exact,
        "frame_errors": frame_errors,
        "classes": classes.tolist(),
        "passed": bool(n > 0 and agree.all() and frame_errors == 0 and exact is not False),
    }
