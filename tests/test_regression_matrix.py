"""Regression matrix: small CNNs x {Vitis, Vivado} x {Latency, Resource}, io_stream, bit-exact csim.

Every cell quantizes a tiny model (8x8x4 inputs), generates the hls4ml project and runs
the g++ C simulation on 16 test vectors through ``fpgacnn.hls.csim.csim``, which must
reproduce the QKeras logits exactly. The 16 cells take about four minutes on two cores,
so by default a diagonal cover runs (every model, backend and strategy at least once,
4 cells); ``FPGACNN_FULL_MATRIX=1`` runs all of them.
"""
from __future__ import annotations

import itertools
import os
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("tensorflow").keras

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")]

MODELS = ("conv_pool", "depthwise", "residual_add", "dense_head")
BACKENDS = ("Vitis", "Vivado")
STRATEGIES = ("Latency", "Resource")
N_VECTORS = 16
N_CLASSES = 5


def _cells():
    if os.environ.get("FPGACNN_FULL_MATRIX") == "1":
        return list(itertools.product(MODELS, BACKENDS, STRATEGIES))
    combos = list(itertools.product(BACKENDS, STRATEGIES))
    return [(m, *combos[i % len(combos)]) for i, m in enumerate(MODELS)]


def _bn(layer, rng):
    n = layer.get_weights()[0].shape[0]
    layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n), rng.normal(0, 0.2, n), rng.uniform(0.3, 2, n)])


def build(kind: str, seed: int = 0):
    keras.utils.set_random_seed(seed)
    L = keras.layers
    i = keras.Input((8, 8, 4), name="image")
    if kind == "conv_pool":
        h = L.Conv2D(4, 3, name="conv")(i)
        h = L.ReLU(name="relu")(h)
        h = L.MaxPooling2D(2, name="pool")(h)
        h = L.Flatten(name="flat")(h)
    elif kind == "depthwise":
        h = L.DepthwiseConv2D(3, padding="same", name="dw")(i)
        h = L.BatchNormalization(name="bn")(h)
        h = L.ReLU(name="relu")(h)
        h = L.Conv2D(6, 1, activation="relu", name="pw")(h)
        h = L.AveragePooling2D(2, name="pool")(h)
        h = L.Flatten(name="flat")(h)
    elif kind == "residual_add":
        h = L.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(i)
        h = L.Conv2D(4, 3, padding="same", name="conv2")(h)
        h = L.Add(name="add")([h, i])
        h = L.ReLU(name="relu")(h)
        h = L.GlobalAveragePooling2D(name="gap")(h)
    elif kind == "dense_head":
        h = L.Conv2D(2, 3, strides=2, activation="relu", name="conv")(i)
        h = L.Flatten(name="flat")(h)
        h = L.Dense(12, activation="relu", name="hidden")(h)
        h = L.Dropout(0.2, name="drop")(h)
    else:
        raise ValueError(kind)
    out = L.Dense(N_CLASSES, activation="softmax", name="logits")(h)
    model = keras.Model(i, out, name=kind)
    if kind == "depthwise":
        _bn(model.get_layer("bn"), np.random.default_rng(seed))
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (N_VECTORS, 8, 8, 4)) / 256).astype("float32")


@pytest.fixture(scope="module")
def quantized(data):
    from fpgacnn.quantization import quantize

    cache = {}

    def get(kind):
        if kind not in cache:
            cache[kind] = quantize(build(kind), bits=8, x=data)
        return cache[kind]

    return get


def test_cover_is_diagonal():
    cells = _cells()
    for axis, values in ((0, MODELS), (1, BACKENDS), (2, STRATEGIES)):
        assert {c[axis] for c in cells} == set(values)


@pytest.mark.parametrize("kind,backend,strategy", _cells())
def test_cell_is_bit_exact(kind, backend, strategy, quantized, data, tmp_path):
    from fpgacnn.hls.csim import csim
    from fpgacnn.hls.generate import generate

    q = quantized(kind)
    proj = generate(q, tmp_path / "p", backend=backend, strategy=strategy, io_type="io_stream", x_test=data)
    assert proj.manifest["project"]["backend"] == backend and proj.manifest["project"]["strategy"] == strategy
    result = csim(proj, jobs=1)
    assert result.samples == N_VECTORS and result.compare == "exact"
    assert result.bit_exact, f"{result.mismatches} values differ (max {result.max_abs_diff})"
    # the reference is the QKeras model itself, not a stale file
    np.testing.assert_array_equal(result.outputs, q.predict(data, verbose=0).astype(np.float64))
