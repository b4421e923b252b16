"""Bounded-memory value ranges: the same numbers as computing on every value at once."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fpgacnn.quant.ranges import MagnitudeStats, ceil_log2

# magnitudes that stress the bins: exact powers of two, ties, zeros, wide dynamic range
values = st.lists(st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.0, -4.0, 0.75, -0.125]),
                            st.floats(-1e6, 1e6, allow_nan=False, width=32)), min_size=1, max_size=300)


@settings(max_examples=300, deadline=None)
@given(values, st.integers(1, 5), st.sampled_from([50.0, 90.0, 99.0, 100.0]))
def test_streamed_percentile_bin_and_max_match_numpy(vals, parts, q):
    v = np.asarray(vals, dtype=np.float32)
    mags = np.abs(v.astype(np.float64))
    mags = mags[mags > 0]
    stats = MagnitudeStats()
    for chunk in np.array_split(v, parts):
        stats.update(chunk)
    assert stats.count == mags.size
    if mags.size == 0:
        assert stats.max == 0.0
        with pytest.raises(ValueError):
            stats.ceil_log2_percentile(q)
        return
    assert stats.max == mags.max()
    assert stats.ceil_log2_percentile(q) == math.ceil(math.log2(float(np.percentile(mags, q))))


def test_ceil_log2_is_exact_at_powers_of_two():
    x = np.array([2.0**-30, 0.5, 1.0, 1.0 + 2**-52, 2.0, 3.0, 4.0, 2.0**40])
    assert ceil_log2(x).tolist() == [-30, -1, 0, 1, 1, 2, 2, 40]


def test_calibration_does_not_depend_on_the_batch_split():
    pytest.importorskip("tensorflow")
    from fpgacnn.quant.convert import calibrate
    from fpgacnn.quant.ops import model_ops
    from fpgacnn.zoo import small_vgg

    m = small_vgg()
    x = np.random.default_rng(0).random((70, 8, 8, 1)).astype("float32")
    in_name, ops, output = model_ops(m, True)
    a = calibrate(m, in_name, ops, output, x, batch_size=256)
    b = calibrate(m, in_name, ops, output, x, batch_size=9)
    assert set(a) == set(b) and a
    for name in a:
        assert a[name].count == b[name].count and a[name].max == pytest.approx(b[name].max, rel=1e-6)
        assert a[name].ceil_log2_percentile(99) == b[name].ceil_log2_percentile(99)
