"""Fixed-point types as fpgacnn reasons about them, and the design's input grid.

``Fixed`` mirrors ``ap_[u]fixed<W, I, Q, O>`` (``I`` includes the sign bit) with the few
operations the precision policy needs: range, step, snapping values onto the grid, and the
C++ spelling. ``InputSpec`` is the input type plus how an 8-bit camera pixel maps onto it.

Input policy: ``ap_ufixed<B,I>`` for non-negative data (``I = max(0, ceil(log2(max x)))``,
so images scaled to [0, 1) get ``ap_ufixed<8,0>``: pixel ``p`` of an 8-bit camera is
``p / 256`` exactly), ``ap_fixed<B,I+1>`` for signed data. Test inputs are snapped to this
grid (round half to even, saturate) before anything is computed, so both sides see the
same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["Fixed", "signed_for", "InputSpec", "input_spec", "PIXEL_BITS"]

PIXEL_BITS = 8


# --------------------------------------------------------------------------------------
# Fixed-point types
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fixed:
    """``ap_[u]fixed<width, integer[, rounding, saturation]>``; ``integer`` includes the sign bit."""

    width: int
    integer: int
    signed: bool = True
    rounding: str | None = None
    saturation: str | None = None

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac

    @property
    def max(self) -> float:
        top = self.integer - 1 if self.signed else self.integer
        return 2.0 ** top - self.lsb

    @property
    def min(self) -> float:
        return -(2.0 ** (self.integer - 1)) if self.signed else 0.0

    @property
    def max_abs(self) -> float:
        return max(abs(self.min), self.max)

    def cpp(self) -> str:
        base = "ap_fixed" if self.signed else "ap_ufixed"
        args = [str(self.width), str(self.integer)]
        if self.rounding or self.saturation:
            args += [self.rounding or "AP_TRN", self.saturation or "AP_WRAP"]
        return f"{base}<{','.join(args)}>"

    def plain(self) -> "Fixed":
        return Fixed(self.width, self.integer, self.signed)

    def snap(self, x) -> np.ndarray:
        """``x`` rounded (half to even) to the grid and saturated; float32, exactly representable."""
        x = np.asarray(x, dtype=np.float64)
        q = np.round(x * 2.0 ** self.frac) * self.lsb
        return np.clip(q, self.min, self.max).astype(np.float32)


def signed_for(max_abs: float, frac: int) -> Fixed:
    """Smallest signed type with ``frac`` fractional bits that holds [-max_abs, max_abs]."""
    if max_abs <= 0:
        integer = 1
    else:
        integer = math.floor(math.log2(max_abs)) + 2  # 2^(I-1) > max_abs
    integer = max(integer, 1)
    return Fixed(integer + frac, integer, True)


# --------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputSpec:
    """The input type and how an 8-bit camera pixel maps onto it."""

    type: Fixed

    @property
    def precision(self) -> str:
        return self.type.cpp()

    @property
    def scale(self) -> float:
        span = 2.0 ** self.type.integer  # unsigned [0, 2^I) or signed [-2^(I-1), 2^(I-1))
        return span / 2 ** PIXEL_BITS

    @property
    def offset(self) -> float:
        return self.type.min

    def snap(self, x) -> np.ndarray:
        return self.type.snap(x)

    def manifest(self) -> dict:
        return {
            "precision": self.precision,
            "bits": self.type.width,
            "scale": self.scale,
            "offset": self.offset,
            "note": (f"an {PIXEL_BITS}-bit camera pixel p maps to x = p*scale + offset, then x is rounded "
                     f"(half to even) to the {self.precision} grid (step {self.type.lsb!r}) and saturated "
                     f"to [{self.type.min!r}, {self.type.max!r}]"),
        }


def input_spec(x=None, bits: int = 8) -> InputSpec:
    """Input type for data like ``x`` (default: images in [0, 1] -> ``ap_ufixed<bits,0>``)."""
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 32:
        raise InputError(f"input_bits must be an integer in [2, 32], got {bits!r}")
    bits = int(bits)
    if x is None or np.size(x) == 0:
        return InputSpec(Fixed(bits, 0, False))
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise InputError("inputs contain NaN or infinity")
    lo, hi = float(x.min()), float(x.max())
    signed = lo < 0
    # The fewest integer bits whose range holds the data's extremes: [0, 1) fits
    # ap_ufixed<B,0> (camera pixel p as p/256), but data reaching 1.0 needs one more bit.
    for integer in range(0, bits + 1):
        t = Fixed(bits, integer, signed)
        step = 2.0 ** (integer - bits)
        top = 2.0 ** (integer - (1 if signed else 0)) - step
        bottom = -(2.0 ** (integer - 1)) if signed else 0.0
        if hi <= top + step / 2 and lo >= bottom - step / 2:  # rounds into range, no saturation
            return InputSpec(t)
    return InputSpec(Fixed(bits, bits, signed))
