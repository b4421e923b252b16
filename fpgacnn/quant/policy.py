"""Bit-width policy: how many bits, and how many of them integer bits, each tensor gets.

Every quantized tensor gets ``(width, integer)`` for QKeras ``quantized_bits(width, integer)``
(weights and biases, sign bit not counted in ``integer``) or ``quantized_relu(width,
integer)`` (ReLU outputs, unsigned). Kernel, pointwise kernel, bias and activation are
separate quantizers: folded biases are often far larger than the weights, and a wider bias
costs almost nothing (one value per output channel, added once to the accumulator).

``bits`` selects the widths:

* an int ``b``: every weight, bias and ReLU output is ``b`` bits wide (biases
  ``bias_bits`` when given);
* a dict ``{layer_name: b}``: per-layer widths for the layer's weights, bias and (fused or
  standalone) ReLU; unnamed layers get ``DEFAULT_BITS``. Names are the Keras layer names;
  a fused activation can also be named by its op name (``<layer>_relu``);
* ``"range"`` (or ``"range:N"``, default ``N = RANGE_RESOLUTION_BITS``): widths from the
  values themselves. For a tensor with largest magnitude ``M`` and typical magnitude
  ``T`` (the 99th percentile of its non-zero magnitudes: kernel entries, biases, or
  ReLU outputs on the representative data), the step is ``2^(ceil(log2 T) - (N - 1))``
  for signed tensors and ``2^(ceil(log2 T) - N)`` for ReLU outputs, i.e. a fixed
  resolution of ``N`` bits relative to the typical range, and the integer bits cover
  ``M``. Tensors with outliers (``M >> T``) get wider types, and so do tensors well below 1
  (QKeras integer bits stop at 0, so their resolution costs fractional bits); compact ones
  near 1 stay at ``N`` bits. Widths are clipped to ``[2, 2N]``.

Integer bits (every policy): ``I = ceil(log2 M)`` clipped to ``[0, width - 1]``, so the data
seen never saturates; ReLU outputs without data use ``I = min(3, width - 1)`` (range
[0, 8)). ``int_bits`` overrides ``I`` for every tensor (int and dict policies only).
"""
from __future__ import annotations

import math
import re

import numpy as np

from ..errors import InputError
from .ops import LINEAR, Op
from .ranges import MagnitudeStats, ceil_log2

__all__ = ["choose_widths", "parse_bits", "DEFAULT_BITS", "DEFAULT_RELU_INT_BITS", "RANGE_RESOLUTION_BITS"]

DEFAULT_BITS = 8
DEFAULT_RELU_INT_BITS = 3
RANGE_RESOLUTION_BITS = 8
MAX_BITS = 32


def _check_width(b, what: str) -> int:
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 2 <= b <= MAX_BITS:
        raise InputError(f"{what} must be an integer in [2, {MAX_BITS}], got {b!r}")
    return int(b)


def parse_bits(bits):
    """Validated policy: ``("uniform", b)``, ``("per_layer", {name: b})`` or ``("range", N)``."""
    if isinstance(bits, str):
        m = re.fullmatch(r"range(?::(\d+))?", bits.strip())
        if not m:
            raise InputError(f"bits must be an integer, a {{layer: bits}} dict or 'range[:N]', got {bits!r}")
        return "range", _check_width(int(m.group(1)) if m.group(1) else RANGE_RESOLUTION_BITS, "range resolution")
    if isinstance(bits, dict):
        if not bits:
            raise InputError("the per-layer bits dict is empty")
        return "per_layer", {str(k): _check_width(v, f"bits for layer '{k}'") for k, v in bits.items()}
    return "uniform", _check_width(bits, "bits")


def _int_bits_for(max_abs: float, width: int) -> int:
    if not np.isfinite(max_abs) or max_abs <= 0:
        return 0
    return int(min(max(0, math.ceil(math.log2(max_abs))), width - 1))


def _range_width(stats: MagnitudeStats, resolution: int, signed: bool) -> tuple[int, int]:
    """``(width, integer)`` for the ``range`` policy (see the module docstring)."""
    if stats.count == 0:
        return resolution, 0
    integer = max(0, int(ceil_log2(stats.max)))
    frac = resolution - (1 if signed else 0) - stats.ceil_log2_percentile(99)
    width = integer + (1 if signed else 0) + frac
    width = int(min(max(width, 2, integer + 1), 2 * resolution, MAX_BITS))
    return width, min(integer, width - 1)


def _per_op_bits(policy, table, ops: list[Op]) -> dict[str, int]:
    if policy != "per_layer":
        return {op.name: table for op in ops} if policy == "uniform" else {}
    quantized = [op for op in ops if op.kind in LINEAR or op.kind == "relu"]
    known = {op.name for op in quantized} | {op.source for op in quantized}
    unknown = sorted(set(table) - known)
    if unknown:
        raise InputError(f"bits names layers without weights or ReLU: {', '.join(map(repr, unknown))}")
    out = {}
    for op in quantized:
        out[op.name] = table.get(op.name, table.get(op.source, DEFAULT_BITS))
    return out


def choose_widths(ops: list[Op], bits, act_values: dict | None = None, int_bits: int | None = None,
                  bias_bits: int | None = None) -> dict:
    """``{op name: {"kernel" | "pointwise" | "bias" | "act": (width, integer)}}`` for the quantized ops.

    ``act_values`` maps relu op names to the ``MagnitudeStats`` of their float outputs on the
    representative data (``fpgacnn.quant.convert.calibrate``).
    """
    policy, table = parse_bits(bits)
    if bias_bits is not None:
        if policy == "range":
            raise InputError("bias_bits cannot be combined with bits='range' (the range policy picks them)")
        bias_bits = _check_width(bias_bits, "bias_bits")
    if int_bits is not None:
        if policy == "range":
            raise InputError("int_bits cannot be combined with bits='range' (the range policy picks them)")
        if isinstance(int_bits, bool) or not isinstance(int_bits, (int, np.integer)) or int_bits < 0:
            raise InputError(f"int_bits must be a non-negative integer, got {int_bits!r}")
    act_values = act_values or {}
    if policy == "range" and any(op.kind == "relu" and op.name not in act_values for op in ops):
        raise InputError("bits='range' needs representative inputs x to see activation ranges")
    widths_of = _per_op_bits(policy, table, ops)
    out: dict = {}

    def fixed(width: int, max_abs: float) -> tuple[int, int]:
        if int_bits is not None:
            if int_bits >= width:
                raise InputError(f"int_bits={int_bits} leaves no room in a {width}-bit type")
            return width, int(int_bits)
        return width, _int_bits_for(max_abs, width)

    for op in ops:
        if op.kind in LINEAR:
            tensors = {"kernel": op.kernel, "bias": op.bias}
            if op.kind == "SeparableConv2D":
                tensors["pointwise"] = op.pointwise
            if policy == "range":
                out[op.name] = {k: _range_width(MagnitudeStats.of(v), table, True) for k, v in tensors.items()}
                continue
            w = widths_of[op.name]
            out[op.name] = {k: fixed((bias_bits or w) if k == "bias" else w, float(np.max(np.abs(v), initial=0.0)))
                            for k, v in tensors.items()}
        elif op.kind == "relu":
            vals = act_values.get(op.name)
            if policy == "range":
                out[op.name] = {"act": _range_width(vals, table, False)}
                continue
            w = widths_of[op.name]
            if int_bits is None and vals is None:
                out[op.name] = {"act": (w, min(DEFAULT_RELU_INT_BITS, w - 1))}
            else:
                out[op.name] = {"act": fixed(w, vals.max if vals is not None else 0.0)}
    return out
