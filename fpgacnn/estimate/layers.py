"""Per-layer resource and latency models for hls4ml's Vivado/Vitis HLS code.

Each rule follows what the hls4ml templates (``nnet_utils``) ask Vivado HLS to build:

* Latency strategy, reuse factor 1 (``nnet_dense_latency.h``, and the per-pixel kernel
  of ``nnet_conv2d_stream.h``): every product is unrolled with a *constant* weight.
  A zero weight costs nothing (constant-folded), a power of two is a shift; any other
  constant ``c`` is a multiplier whose width is the signed width of ``c``'s odd part
  (trailing zero bits are shifts). It goes to a DSP slice when
  ``input_bits * constant_bits >= DSP_MIN_PRODUCT_BITS``, otherwise to a LUT shift-add
  network costing about ``input_bits * (CSD digits - 1)`` LUTs.
* Reuse factor R > 1 shares multipliers (ALLOCATION limit / Resource block factor):
  ``ceil(n / R)`` full-width multipliers (weights are no longer constants), II = R.
  Resource strategy keeps zeros (block factor ``ceil(n_in*n_out/R)``) and, for R > 1,
  stores weights in a ROM of width ``block_factor * weight_bits`` and depth R
  (``ROM_nP_BRAM``), mapped to BRAM_18K.
* io_stream: one FIFO per channel per layer output with depth = number of pixels
  (``fpga_types.py``: ``depth = prod(shape) // shape[-1]``); FIFOs deeper than
  ``FIFO_SRL_MAX_DEPTH`` use a BRAM_18K, shallower ones shift registers. Conv/pool line
  buffers are ``ap_shift_reg`` (SRL LUTs). A conv/pool layer takes one input pixel per
  cycle (``PIPELINE II=reuse_factor``), so its II is ``in_pixels * R``.

LUT/FF coefficients below were calibrated once against the per-instance rows of the
SVHN reference reports (see ``benchmarks/estimator_validation.py``) and are shared by
all layers; nothing is fitted per case.
"""
from __future__ import annotations

import math

import numpy as np

# ---- calibrated coefficients (see module docstring) -------------------------------
DSP_MIN_PRODUCT_BITS = 96  # input_bits * constant_bits at/above which HLS binds a DSP
FIFO_SRL_MAX_DEPTH = 16  # Vivado HLS: deeper FIFOs go to BRAM_18K
ADD_LUT_PER_BIT = 1.0  # LUTs per bit of each adder in the accumulation tree
SHIFTADD_LUT_PER_BIT = 1.0  # LUTs per bit per extra CSD digit of a LUT multiplier
MUL_FF_PER_BIT = 0.095  # pipeline FFs per product bit (x2 in conv kernels: per-pixel pipeline)
DSP_MULT_LUT = 12  # glue LUTs per DSP-mapped product (truncation into accum_t, sign handling)
LAYER_LUT_OVERHEAD = 30  # control logic per layer (LUT)
LAYER_FF_OVERHEAD = 2  # control logic per layer (FF)
SRL_PER_BITS = 32  # an SRLC32E holds 32 bits of one shift register


def prec_info(precision) -> dict:
    """Width, integer bits, signedness and kind of an hls4ml precision type."""
    cls = type(precision).__name__
    width = int(getattr(precision, "width", 16) or 16)
    signed = bool(getattr(precision, "signed", True))
    if cls == "XnorPrecisionType":
        return {"width": 1, "integer": 1, "signed": False, "kind": "binary"}
    if cls == "ExponentPrecisionType":
        return {"width": width, "integer": 0, "signed": signed, "kind": "po2"}
    if cls == "IntegerPrecisionType":
        return {"width": width, "integer": width, "signed": signed, "kind": "fixed"}
    if cls in ("FloatPrecisionType", "StandardFloatPrecisionType"):
        return {"width": width, "integer": width, "signed": True, "kind": "float"}
    integer = getattr(precision, "integer", None)
    if integer is None:
        integer = width
    rounding = str(getattr(precision, "rounding_mode", "") or "")
    return {"width": width, "integer": int(integer), "signed": signed, "kind": "fixed",
            "rnd": "RND" in rounding.upper(), "sat": "SAT" in str(getattr(precision, "saturation_mode", "") or "").upper()}


def signed_width(info: dict) -> int:
    """Width as a signed multiplier operand (unsigned values need one more bit)."""
    return info["width"] + (0 if info["signed"] else 1)


def quantize_weights(data, info: dict) -> np.ndarray:
    """Integer codes the HLS code holds for ``data`` in the weight type (``ap_fixed``
    truncates unless the type says RND)."""
    w = np.asarray(data, dtype=np.float64).ravel()
    if info["kind"] == "binary":
        return np.where(w >= 0, 1, -1).astype(np.int64)
    if info["kind"] == "po2":
        return np.where(w == 0, 0, 1).astype(np.int64)  # shifts: marked as powers of two
    if info["kind"] == "float":
        return np.round(w * 2**16).astype(np.int64)
    frac = info["width"] - info["integer"]
    scaled = w * (2.0 ** frac)
    q = np.round(scaled) if info.get("rnd") else np.floor(scaled + 1e-9)
    lo = -(2 ** (info["width"] - 1)) if info["signed"] else 0
    hi = 2 ** (info["width"] - 1) - 1 if info["signed"] else 2 ** info["width"] - 1
    return np.clip(q, lo, hi).astype(np.int64)


def odd_part_signed_width(q: np.ndarray) -> np.ndarray:
    """Signed width of each constant's odd part (0 for zero, 1 for a power of two)."""
    a = np.abs(q).astype(np.int64)
    out = np.zeros(a.shape, dtype=np.int64)
    nz = a > 0
    if not nz.any():
        return out
    b = a[nz]
    b = b // (b & -b)  # strip trailing zeros
    w = np.floor(np.log2(b)).astype(np.int64) + 2
    w[b == 1] = 1
    out[nz] = w
    return out


def csd_digits(q: np.ndarray) -> np.ndarray:
    """Non-zero digits in the canonical signed-digit form (adders of a shift-add multiplier + 1)."""
    x = np.abs(q).astype(np.int64).copy()
    n = np.zeros(x.shape, dtype=np.int64)
    while x.any():
        odd = (x & 1) == 1
        n += odd
        up = odd & ((x & 3) == 3)
        x = np.where(up, x + 1, np.where(odd, x - 1, x))
        x >>= 1
    return n


def cast_lut(in_bits: int, out_bits: int) -> float:
    """LUTs of one rounding (RND/RND_CONV) and saturating conversion of an ``in_bits``
    value to ``out_bits``: calibrated inside the quantized ReLU lanes of the SVHN reference,
    and charged the same where a Conv/Dense output cast does it (``fpgacnn.hls.fuse``)."""
    return in_bits + 4 * out_bits


def dsp_per_multiplier(a_bits: int, b_bits: int, dsp_type: str) -> int:
    """DSP slices for one a x b signed multiplication (27x18 DSP48E2, 25x18 DSP48E1)."""
    big, small = max(a_bits, b_bits), min(a_bits, b_bits)
    port_a = 27 if dsp_type == "DSP48E2" else 25
    return max(1, math.ceil(big / port_a), math.ceil(small / 18))


def uses_dsp(a_bits, b_bits):
    return a_bits * b_bits >= DSP_MIN_PRODUCT_BITS and min(a_bits, b_bits) >= 4


def constant_multipliers(q: np.ndarray, a_bits: int, dsp_type: str) -> dict:
    """DSPs and LUTs for products of an ``a_bits`` input with constant weights ``q``."""
    s = odd_part_signed_width(q)
    nz = s > 0
    real = s > 1  # not zero, not a power of two
    dsp_mask = real & (a_bits * s >= DSP_MIN_PRODUCT_BITS) & (s >= 4)
    lut_mask = real & ~dsp_mask
    dsp = 0
    if dsp_mask.any():
        widths, counts = np.unique(s[dsp_mask], return_counts=True)
        dsp = int(sum(dsp_per_multiplier(a_bits, int(w), dsp_type) * int(c) for w, c in zip(widths, counts)))
    lut = 0.0
    if lut_mask.any():
        # each extra CSD digit is one adder about as wide as the input plus half the constant
        lut = float(np.sum((a_bits + s[lut_mask] / 2.0) * (csd_digits(q[lut_mask]) - 1))) * SHIFTADD_LUT_PER_BIT
    lut += DSP_MULT_LUT * int(dsp_mask.sum())
    prod_bits = np.where(nz, a_bits + s, 0)
    return {"n_nonzero": int(nz.sum()), "n_dsp_mult": int(dsp_mask.sum()), "n_lut_mult": int(lut_mask.sum()),
            "n_shift": int((s == 1).sum()), "DSP": dsp, "mult_LUT": lut,
            "product_bits_sum": float(prod_bits.sum())}


def bram18_for(width_bits: int, depth: int) -> int:
    """BRAM_18K blocks for a width x depth memory (18 Kb aspect ratios up to 512x36)."""
    if width_bits <= 0 or depth <= 0:
        return 0
    for max_depth, port in ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)):
        if depth <= max_depth:
            return math.ceil(width_bits / port)
    return math.ceil(width_bits / 1) * math.ceil(depth / 16384)


def adder_tree_depth(n_terms: int, clock_ns: float) -> int:
    """Pipeline stages of a multiply + balanced adder tree at this clock (mult: 1 stage;
    about ``0.6 * clock_ns`` 16-bit adds chain in one cycle)."""
    adds_per_cycle = max(1, round(0.6 * clock_ns))
    return 1 + math.ceil(math.log2(max(2, n_terms)) / adds_per_cycle)


def fifo_cost(depth: int, width: int, n_fifos: int) -> dict:
    """One io_stream FIFO per channel (``hls::stream`` of ``nnet::array``, data-packed
    per element in the reports)."""
    depth = max(1, int(depth))
    abits = max(1, math.ceil(math.log2(depth + 1)))
    if depth > FIFO_SRL_MAX_DEPTH:
        bram = bram18_for(width, depth)
        ff = width + 4 * abits - 8
        lut = 100
    else:
        bram = 0
        ff = 4 + abits
        lut = 13 + width * math.ceil(depth / SRL_PER_BITS) // 2
    return {"BRAM_18K": bram * n_fifos, "FF": ff * n_fifos, "LUT": lut * n_fifos}
