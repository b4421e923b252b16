"""quantize(): layer mapping, exact BatchNorm folding, integer-bit policy, determinism."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("tensorflow").keras


def _bn_model(seed=0):
    keras.utils.set_random_seed(seed)
    L = keras.layers
    m = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(4, 3, name="c1"),
        L.BatchNormalization(name="bn1"),
        L.ReLU(name="r1"),
        L.MaxPooling2D(2, name="p1"),
        L.Conv2D(6, 2, padding="same", activation="relu", name="c2"),
        L.Flatten(name="f"),
        L.Dropout(0.3, name="drop"),
        L.Dense(10, name="d"),
        L.BatchNormalization(name="bn2"),
        L.Activation("softmax", name="sm"),
    ], name="bn_net")
    rng = np.random.default_rng(seed)
    for name in ("bn1", "bn2"):
        ly = m.get_layer(name)
        n = ly.get_weights()[0].shape[0]
        ly.set_weights([rng.uniform(0.5, 2.0, n), rng.normal(0, 0.5, n), rng.normal(0, 0.3, n), rng.uniform(0.2, 3.0, n)])
    return m


def _x(n=64, seed=0):
    return np.random.default_rng(seed).random((n, 8, 8, 1)).astype("float32")


def test_fold_batchnorm_is_exact_before_quantization():
    from fpgacnn.quantization import fold_batchnorm

    m = _bn_model()
    x = _x()
    logits = keras.Model(m.inputs, m.get_layer("bn2").output).predict(x, verbose=0)
    folded = fold_batchnorm(m)
    assert not any(isinstance(ly, keras.layers.BatchNormalization) for ly in folded.layers)
    got = folded.predict(x, verbose=0)
    np.testing.assert_allclose(got, logits, rtol=1e-5, atol=1e-5)


def test_quantize_maps_layers_and_strips_bn_dropout_softmax():
    from qkeras import QActivation, QConv2D, QDense

    from fpgacnn import quantize

    m = _bn_model()
    q = quantize(m, bits=8, x=_x())
    kinds = [type(ly).__name__ for ly in q.layers]
    assert kinds == ["InputLayer", "QConv2D", "QActivation", "MaxPooling2D", "QConv2D", "QActivation", "Flatten",
                     "QDense"]
    for ly in q.layers:
        if isinstance(ly, (QConv2D, QDense)):
            assert ly.kernel_quantizer_internal.bits == 8 and ly.bias_quantizer_internal.bits == 8
            assert ly.kernel_quantizer_internal.alpha == 1
        if isinstance(ly, QActivation):
            assert type(ly.quantizer).__name__ == "quantized_relu" and ly.quantizer.bits == 8
    # logits out, close to the float logits
    x = _x()
    ref = keras.Model(m.inputs, m.get_layer("bn2").output).predict(x, verbose=0)
    got = q.predict(x, verbose=0)
    assert np.mean(np.argmax(got, 1) == np.argmax(ref, 1)) > 0.8


def test_integer_bits_policy():
    from fpgacnn.quantization import quantize

    keras.utils.set_random_seed(0)
    L = keras.layers
    m = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(2, 3, name="c", activation="relu"), L.Flatten(),
                          L.Dense(3, name="d")])
    c = m.get_layer("c")
    k = np.zeros((3, 3, 1, 2), np.float32)
    k[0, 0, 0, 0] = 3.0  # |w| <= 4  -> 2 integer bits
    c.set_weights([k, np.array([0.5, 0.0], np.float32)])
    x = np.ones((4, 8, 8, 1), np.float32)  # relu output max 3.5 -> 2 integer bits
    q = quantize(m, bits=8, x=x)
    qc = q.get_layer("c")
    assert qc.kernel_quantizer_internal.integer == 2
    assert qc.bias_quantizer_internal.integer == 0
    assert q.get_layer("c_relu").quantizer.integer == 2
    q0 = quantize(m, bits=8)  # no data: default activation range
    assert q0.get_layer("c_relu").quantizer.integer == 3
    q1 = quantize(m, bits=6, int_bits=1)
    assert q1.get_layer("c").kernel_quantizer_internal.integer == 1
    assert q1.get_layer("c_relu").quantizer.integer == 1


def test_qat_is_deterministic():
    from fpgacnn.quantization import quantize

    m = _bn_model()
    x = _x(48)
    y = np.random.default_rng(1).integers(0, 10, 48)
    a = quantize(m, bits=6, x=x, y=y, epochs=1, batch_size=16, seed=3)
    b = quantize(m, bits=6, x=x, y=y, epochs=1, batch_size=16, seed=3)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    p = quantize(m, bits=6, x=x)  # post-training: weights are the folded float weights
    assert any(not np.array_equal(wa, wp) for wa, wp in zip(a.get_weights(), p.get_weights()))


def test_unsupported_layers_are_named():
    from fpgacnn.errors import UnsupportedLayerError
    from fpgacnn.quantization import quantize

    L = keras.layers
    m = keras.Sequential([keras.Input((8, 8, 1)), L.UpSampling2D(name="up"), L.Flatten(), L.Dense(2)])
    with pytest.raises(UnsupportedLayerError) as ei:
        quantize(m)
    assert ei.value.layer_name == "up" and "quantize" in str(ei.value)

    i = keras.Input((8, 8, 1))
    a = L.Conv2D(2, 3, padding="same", name="a")(i)
    b = L.Conv2D(2, 3, padding="same", name="b")(i)
    o = L.Dense(2)(L.Flatten()(L.Add(name="add")([a, b])))
    with pytest.raises(UnsupportedLayerError):
        quantize(keras.Model(i, o))

    m = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(2, 3, name="c"), L.ReLU(), L.BatchNormalization(name="bn"),
                          L.Flatten(), L.Dense(2)])
    with pytest.raises(UnsupportedLayerError) as ei:
        quantize(m)
    assert ei.value.layer_name == "bn"


def test_snap_inputs_grid():
    from fpgacnn.hls.precision import input_spec
    from fpgacnn.quantization import snap_inputs

    x = np.array([0.0, 1 / 255, 0.5, 0.99], np.float32)  # camera pixels p/256 stay below 1
    s = snap_inputs(x)
    spec = input_spec(x)
    assert spec.precision == "ap_ufixed<8,0>" and spec.scale == 1 / 256 and spec.offset == 0.0
    np.testing.assert_array_equal(s * 256, np.round(s * 256))
    assert s[0] == 0 and s[-1] == round(0.99 * 256) / 256
    # data reaching 1.0 (e.g. pixel / 255) needs an integer bit, or 1.0 would saturate
    with_one = input_spec(np.array([0.0, 0.5, 1.0]))
    assert with_one.precision == "ap_ufixed<8,1>"
    np.testing.assert_array_equal(with_one.snap([1.0, 1 / 16, 0.3]), np.float32([1.0, 1 / 16, 0.296875]))
    signed = input_spec(np.array([-1.0, 0.7]))
    assert signed.precision == "ap_fixed<8,1>"
    np.testing.assert_array_equal(signed.snap([-2.0, 0.3, 5.0]), np.float32([-1.0, 0.296875, 127 / 128]))
