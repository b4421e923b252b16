"""Value ranges for the bit-width policy, summarised in bounded memory.

The policy needs two numbers per tensor: the largest magnitude ``M`` (integer bits) and,
for ``bits="range"``, ``ceil(log2 T)`` of the 99th percentile ``T`` of the non-zero
magnitudes. Keeping every ReLU output of the calibration images to compute them does not
scale: a VGG's ReLUs produce about 70k values per 32x32 image, 12 GB for 45,000 images.
``MagnitudeStats`` keeps, per power-of-two bin ``(2^(k-1), 2^k]``, a count and the bin's
smallest and largest value. That is enough for both numbers exactly: the percentile
interpolates between two neighbouring order statistics, and when they fall in different
bins they are the top of one bin and the bottom of the next.
"""
from __future__ import annotations

import numpy as np


def ceil_log2(v: np.ndarray) -> np.ndarray:
    """``ceil(log2(v))`` for positive ``v``, exact (from the binary exponent, no rounding)."""
    m, e = np.frexp(np.asarray(v, dtype=np.float64))  # v = m * 2^e, 0.5 <= m < 1
    return np.where(m == 0.5, e - 1, e).astype(np.int64)


class MagnitudeStats:
    """Streaming summary of ``|x|`` over any number of arrays (see module docstring)."""

    def __init__(self):
        self.max = 0.0
        self.count = 0  # non-zero magnitudes seen
        self._bins: dict[int, list] = {}  # k -> [count, min, max]

    @classmethod
    def of(cls, values) -> "MagnitudeStats":
        return cls().update(values)

    def update(self, values) -> "MagnitudeStats":
        mags = np.abs(np.asarray(values, dtype=np.float64)).reshape(-1)
        mags = mags[mags > 0]
        if mags.size == 0:
            return self
        self.max = max(self.max, float(mags.max()))
        self.count += int(mags.size)
        k = ceil_log2(mags)
        order = np.argsort(k, kind="stable")
        k, mags = k[order], mags[order]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        counts = np.diff(np.r_[starts, k.size])
        mins = np.minimum.reduceat(mags, starts)
        maxs = np.maximum.reduceat(mags, starts)
        for kb, n, lo, hi in zip(k[starts].tolist(), counts.tolist(), mins.tolist(), maxs.tolist()):
            b = self._bins.get(kb)
            if b is None:
                self._bins[kb] = [n, lo, hi]
            else:
                b[0] += n
                b[1] = min(b[1], lo)
                b[2] = max(b[2], hi)
        return self

    def ceil_log2_percentile(self, q: float) -> int:
        """``ceil(log2(np.percentile(nonzero magnitudes, q)))``, exactly (linear interpolation)."""
        if self.count == 0:
            raise ValueError("no non-zero values seen")
        index = q / 100.0 * (self.count - 1)
        i = int(np.floor(index))
        j = min(i + 1, self.count - 1)
        bins = sorted(self._bins.items())
        ends = np.cumsum([b[0] for _, b in bins])  # rank (exclusive) where each bin ends
        bi, bj = int(np.searchsorted(ends, i, side="right")), int(np.searchsorted(ends, j, side="right"))
        if bi == bj:  # both order statistics, and everything between them, lie in one bin
            return int(bins[bi][0])
        a, b = bins[bi][1][2], bins[bj][1][1]  # top of the lower bin, bottom of the upper one
        t = index - i
        value = a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)  # numpy's linear interpolation
        return int(ceil_log2(value))
