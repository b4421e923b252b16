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
    o = L.Dense(2)(L.Flatten()(L.Subtract(name="sub")([a, b])))
    with pytest.raises(UnsupportedLayerError) as ei:
        quantize(keras.Model(i, o))
    assert ei.value.layer_name == "sub" and ei.value.layer_type == "Subtract"

    shared = L.Conv2D(1, 3, padding="same", name="shared")  # one layer called twice
    o = L.Dense(2)(L.Flatten()(L.Add()([shared(i), shared(L.ReLU()(i))])))
    with pytest.raises(UnsupportedLayerError) as ei:
        quantize(keras.Model(i, o))
    assert ei.value.layer_name == "shared"

    # a mean over 6*6 values is not exact in fixed point; over 8*8 it is
    m = keras.Sequential([keras.Input((6, 6, 4)), L.GlobalAveragePooling2D(name="gap"), L.Dense(2)])
    with pytest.raises(UnsupportedLayerError, match="power-of-two") as ei:
        quantize(m)
    assert ei.value.layer_name == "gap"
    quantize(keras.Sequential([keras.Input((8, 8, 4)), L.GlobalAveragePooling2D(name="gap"), L.Dense(2)]))

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


# ------------------------------------------------------------------ graphs (residual, concat)
def _graph_model(seed=0):
    """Residual Add with a BN folded inside the branch, a Concatenate, separable conv, padding, GAP."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    i = keras.Input((8, 8, 4), name="img")
    a = L.Conv2D(4, 3, padding="same", name="c1")(i)
    a = L.BatchNormalization(name="bn")(a)
    a = L.ReLU(name="r1")(a)
    h = L.Add(name="add")([a, i])
    b = L.SeparableConv2D(3, 3, padding="same", activation="relu", name="sep")(h)
    h = L.Concatenate(name="cat")([h, b])
    h = L.ZeroPadding2D(1, name="zp")(h)
    h = L.Conv2D(4, 3, activation="relu", name="c2")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    o = L.Dense(5, activation="softmax", name="d")(h)
    m = keras.Model(i, o, name="graph")
    rng = np.random.default_rng(seed)
    m.get_layer("bn").set_weights([rng.uniform(0.5, 2, 4), rng.normal(0, 0.5, 4), rng.normal(0, 0.3, 4),
                                   rng.uniform(0.2, 3, 4)])
    return m


def _x4(n=32, seed=0):
    return (np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 4)) / 256).astype("float32")


@pytest.fixture(scope="module")
def graph_model():
    return _graph_model()


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_graph_is_folded_and_quantized_with_merges_kept(graph_model):
    from qkeras import QActivation, QConv2D, QSeparableConv2D

    from fpgacnn.quantization import fold_batchnorm, quantize

    x = _x4()
    folded = fold_batchnorm(graph_model)
    probs = graph_model.predict(x, verbose=0)
    np.testing.assert_allclose(_softmax(folded.predict(x, verbose=0)), probs, rtol=1e-5, atol=1e-6)
    q = quantize(graph_model, bits=8, x=x)
    kinds = {ly.name: type(ly).__name__ for ly in q.layers}
    assert kinds["c1"] == "QConv2D" and kinds["sep"] == "QSeparableConv2D" and kinds["sep_relu"] == "QActivation"
    assert kinds["add"] == "Add" and kinds["cat"] == "Concatenate" and kinds["zp"] == "ZeroPadding2D"
    assert kinds["gap"] == "GlobalAveragePooling2D" and "bn" not in kinds
    # wiring: the Add reads the ReLU of the folded conv and the input; the concat reads add and sep_relu
    add = q.get_layer("add")
    assert [t._keras_history.layer.name for t in add.input] == ["r1", "img"]
    assert [t._keras_history.layer.name for t in q.get_layer("cat").input] == ["add", "sep_relu"]
    sep = q.get_layer("sep")
    assert sep.depthwise_quantizer_internal.bits == sep.pointwise_quantizer_internal.bits == 8
    assert isinstance(q.get_layer("c1"), QConv2D) and isinstance(sep, QSeparableConv2D)
    assert isinstance(q.get_layer("r1"), QActivation) and type(q.get_layer("d")).__name__ == "QDense"
    assert np.mean(q.predict(x, verbose=0).argmax(1) == probs.argmax(1)) >= 0.75


def test_batchnorm_after_a_shared_output_is_refused():
    from fpgacnn.errors import UnsupportedLayerError
    from fpgacnn.quantization import quantize

    L = keras.layers
    i = keras.Input((8, 8, 2))
    c = L.Conv2D(2, 3, padding="same", name="c")(i)
    h = L.Add()([L.BatchNormalization(name="bn")(c), c])  # folding would change the other use of c
    with pytest.raises(UnsupportedLayerError) as ei:
        quantize(keras.Model(i, L.Dense(2)(L.Flatten()(h))))
    assert ei.value.layer_name == "bn"


# ------------------------------------------------------------------ bit-width policies
def _widths(q) -> dict:
    out = {}
    for ly in q.layers:
        for attr in ("kernel_quantizer_internal", "depthwise_quantizer_internal", "pointwise_quantizer_internal",
                     "bias_quantizer_internal", "quantizer"):
            qq = getattr(ly, attr, None)
            if qq is not None and hasattr(qq, "bits"):
                out[f"{ly.name}.{attr.split('_')[0]}"] = (int(qq.bits), int(qq.integer))
    return out


def test_per_layer_bits_and_bias_bits(graph_model):
    from fpgacnn.errors import InputError
    from fpgacnn.quantization import quantize

    x = _x4()
    w = _widths(quantize(graph_model, bits={"c1": 4, "sep": 6, "d": 5}, bias_bits=12, x=x))
    assert w["c1.kernel"][0] == 4 and w["r1.quantizer"][0] == 8  # the standalone ReLU is its own layer
    assert w["sep.depthwise"][0] == w["sep.pointwise"][0] == 6 and w["sep_relu.quantizer"][0] == 6
    assert w["d.kernel"][0] == 5 and w["c2.kernel"][0] == 8 == w["c2_relu.quantizer"][0]
    assert {v[0] for k, v in w.items() if k.endswith(".bias")} == {12}
    w = _widths(quantize(graph_model, bits={"r1": 3}, x=x))
    assert w["r1.quantizer"][0] == 3 and w["c1.kernel"][0] == 8
    with pytest.raises(InputError, match="'gap'"):  # no weights to quantize: a typo guard
        quantize(graph_model, bits={"gap": 4})
    with pytest.raises(InputError):
        quantize(graph_model, bits={"c1": 1})
    with pytest.raises(InputError):
        quantize(graph_model, bits="ranges")


def test_range_policy_widens_outlier_and_small_tensors():
    from fpgacnn.errors import InputError
    from fpgacnn.quantization import quantize

    keras.utils.set_random_seed(0)
    L = keras.layers
    m = keras.Sequential([keras.Input((4, 4, 1)), L.Conv2D(8, 3, name="c", activation="relu"), L.Flatten(),
                          L.Dense(16, name="d")])
    rng = np.random.default_rng(0)
    k = rng.uniform(-0.9, 0.9, (3, 3, 1, 8)).astype("float32")  # typical ~0.9: 8 bits, 0 integer
    m.get_layer("c").set_weights([k, np.zeros(8, "float32")])
    d = rng.uniform(-0.1, 0.1, (32, 16)).astype("float32")
    d[0, 0] = 3.0  # one outlier: the integer bits must reach 4, the step stays fine
    bias = np.zeros(16, "float32")
    bias[1] = 20.0
    m.get_layer("d").set_weights([d, bias])
    x = rng.random((16, 4, 4, 1)).astype("float32")
    w = _widths(quantize(m, bits="range", x=x))
    assert w["c.kernel"] == (8, 0)
    # d: typical |w| ~ 0.1 -> step 2^(ceil(log2 0.1) - 7) = 2^-10; max 3 -> 2 integer bits: 1 + 2 + 10
    assert w["d.kernel"] == (13, 2)
    assert w["d.bias"][1] == 5  # |b| up to 20 -> 5 integer bits, its own quantizer
    relu_max = float(np.max(keras.Model(m.inputs, m.get_layer("c").output).predict(x, verbose=0)))
    assert w["c_relu.quantizer"][1] == max(0, int(np.ceil(np.log2(relu_max))))
    assert _widths(quantize(m, bits="range:6", x=x))["c.kernel"] == (6, 0)
    with pytest.raises(InputError, match="representative"):
        quantize(m, bits="range")
    with pytest.raises(InputError):
        quantize(m, bits="range", x=x, int_bits=2)
    with pytest.raises(InputError):
        quantize(m, bits="range", x=x, bias_bits=12)


def test_post_training_without_labels_only_calibrates(graph_model):
    """quantize(model, bits, x=x): no labels, no training; activations calibrated on x."""
    from fpgacnn.quantization import fold_batchnorm, quantize

    x = _x4()
    folded = fold_batchnorm(graph_model)
    a = quantize(graph_model, bits=6, x=x, epochs=5, seed=1)
    b = quantize(graph_model, bits=6, x=x, epochs=5, seed=2)
    for ly in folded.layers:  # the stored float weights are the folded ones, untouched by any training
        for wa, wb, wf in zip(a.get_layer(ly.name).get_weights(), b.get_layer(ly.name).get_weights(),
                              ly.get_weights()):
            np.testing.assert_array_equal(wa, wf)
            np.testing.assert_array_equal(wb, wf)
    # ReLU integer bits follow the data: scaled-down inputs give smaller activations
    acts = keras.Model(folded.inputs, folded.get_layer("r1").output).predict(x, verbose=0)
    assert a.get_layer("r1").quantizer.integer == max(0, int(np.ceil(np.log2(acts.max()))))
    small = quantize(graph_model, bits=6, x=x / 16)
    assert small.get_layer("r1").quantizer.integer < a.get_layer("r1").quantizer.integer
