"""Hardware softmax: lookup tables sized so that the argmax of the logits survives."""
from __future__ import annotations

import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("tensorflow").keras
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


def _pixels(n, shape, seed=0):
    return (np.random.default_rng(seed).integers(0, 256, (n, *shape)) / 256).astype("float32")

def _emulated_softmax(z, st):
    """hls4ml's 'stable' softmax on logits ``z`` with the types of ``st``, in exact arithmetic."""
    f = st.inp_norm.frac
    d = z.max(axis=1, keepdims=True) - z
    idx = np.minimum(np.floor(d * 2.0 ** f), st.exp_table_size - 1).astype(np.int64)  # AP_TRN, AP_SAT
    fe = st.exp_table.frac
    table = np.floor(np.exp(-np.arange(st.exp_table_size) / 2.0 ** f) * 2.0 ** fe + 0.5) / 2.0 ** fe
    e = table[idx]
    s = e.sum(axis=1, keepdims=True)
    shift = int(np.log2(st.inv_table_size)) - st.inv_inp.integer
    x = np.floor(s * 2.0 ** shift) / 2.0 ** shift  # top bits of inv_inp_t
    fi = st.inv_table.frac
    inv = np.minimum(np.floor(2.0 ** fi / x + 0.5) / 2.0 ** fi, st.inv_table.max)
    return np.floor(e * inv * 2.0 ** st.result.frac) / 2.0 ** st.result.frac


def _near_ties(rng, n_rows, n, frac, gap_bits):
    """Logits on a 2^-frac grid; in every other row the top two differ by 2^-gap_bits (either order)."""
    lsb, gap = 2.0 ** -frac, 2.0 ** -gap_bits
    z = np.round(rng.normal(0, 3, (n_rows, n)) / lsb) * lsb
    for r in range(0, n_rows, 2):
        j, k = rng.choice(n, 2, replace=False)
        top = z[r].max()
        z[r, j], z[r, k] = top + gap, top + 2 * gap * (r % 4 == 0)
    return z


@pytest.mark.parametrize("frac,n,gap_bits", [(4, 2, 4), (9, 10, 9), (14, 5, 12), (20, 10, 11)])
def test_softmax_tables_keep_the_argmax(frac, n, gap_bits):
    from fpgacnn.hls.precision import Fixed
    from fpgacnn.hls.softmax import MAX_EXACT_TABLE, softmax_types

    rng = np.random.default_rng(frac)
    z = _near_ties(rng, 400, n, frac, gap_bits)
    logits_t = Fixed(frac + 7, 7, True)
    st = softmax_types(logits_t, n, z[:200])
    assert st.every_input == (2 ** (3 + frac) <= MAX_EXACT_TABLE)
    seen = z if st.every_input else z[:200]  # the guarantee covers the logits it was given
    p = _emulated_softmax(seen, st)
    np.testing.assert_array_equal(p.argmax(axis=1), seen.argmax(axis=1))
    assert np.all(p <= 1) and np.all(np.abs(p.sum(axis=1) - 1) < 0.05)
    if not st.every_input:  # without the test logits the tables are too coarse for these near ties
        blind = softmax_types(logits_t, n)
        assert blind.exp_table_size < st.exp_table_size
        assert np.any(_emulated_softmax(seen, blind).argmax(axis=1) != seen.argmax(axis=1))


def test_softmax_refuses_ties_no_table_can_separate():
    from fpgacnn.errors import InputError
    from fpgacnn.hls.precision import Fixed
    from fpgacnn.hls.softmax import softmax_types

    z = _near_ties(np.random.default_rng(0), 20, 4, 20, 20)  # one-step ties of 2^-20
    with pytest.raises(InputError, match="softmax='host'"):
        softmax_types(Fixed(27, 7, True), 4, z)


def _near_tie_model():
    """Logits z1 = z0 + 2^-7 * max(x[..., 1]): the top two differ by far less than 2^-9."""
    L = keras.layers
    i = keras.Input((4, 4, 2), name="x")
    g = L.GlobalMaxPooling2D(name="gmp")(i)
    m = keras.Model(i, L.Dense(4, activation="softmax", name="d")(g), name="near_tie")
    w = np.array([[0.5, 0.5, 0.25, 0.0], [0.0, 2 ** -7, 0.0, 0.25]], np.float32)
    m.get_layer("d").set_weights([w, np.zeros(4, np.float32)])
    return m


@needs_gxx
def test_hardware_softmax_matches_the_logits_argmax(tmp_path):
    from fpgacnn.hls.csim import csim
    from fpgacnn.hls.generate import generate
    from fpgacnn.hls.testvectors import read_matrix, write_matrix
    from fpgacnn.quantization import quantize

    x = _pixels(24, (4, 4, 2), seed=3)
    x[..., 1] /= 16  # small second channel: gaps of 2^-15 .. 2^-11 between the top two logits
    q = quantize(_near_tie_model(), bits=8, x=x)
    logits = q.predict(x, verbose=0)
    assert np.all(logits.argmax(axis=1) == 1)
    proj = generate(q, tmp_path / "p", x_test=x, softmax="hardware")
    mf = proj.manifest
    assert mf["output"]["softmax"] == "hardware" and mf["testbench"]["compare"] == "argmax"
    sm = mf["precision"]["layers"][-1]
    assert sm["class"] == "Activation" and mf["output"]["precision"] == sm["result"]
    tables = sm["softmax"]
    assert tables["argmax_guarantee"] == "test vectors" and tables["exp_table_size"] > 4096
    assert "ap_ufixed" in tables["exp_table_t"] and "softmax" in (proj.dir / "README.md").read_text().lower()
    result = csim(proj, jobs=1)
    assert result.compare == "argmax" and result.passed and result.mismatches == 0 and not result.bit_exact
    np.testing.assert_array_equal(result.outputs.argmax(axis=1), logits.argmax(axis=1))
    assert result.max_abs_diff < 0.02 and np.all(np.abs(result.outputs.sum(axis=1) - 1) < 0.02)

    # csim honours compare="argmax": a reference whose argmax differs for one sample fails
    expected = read_matrix(proj.dir / "tb_data" / "tb_output_predictions.dat")
    expected[5, 3] = expected[5].max() + 1
    write_matrix(proj.dir / "tb_data" / "tb_output_predictions.dat", expected)
    bad = csim(proj, jobs=1)
    assert bad.cached_build and not bad.passed and bad.mismatches == 1
