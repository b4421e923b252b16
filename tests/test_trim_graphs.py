"""Trimmer, issue-3 scope: functional graphs with Add/Concatenate, depthwise and
separable convolutions, padding, global pooling, LeakyReLU, and QKeras models."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import tensorflow as tf
from tensorflow import keras

from fpgacnn.errors import UnsupportedLayerError
from fpgacnn.trimming import ChannelGraph, masked_copy, trim, trim_model
from test_trim import data, keep_masks, run

L = keras.layers
ATOL = 1e-5


def check_equivalent(model, x, **kw):
    res = trim_model(model, x, **kw)
    graph, masks = keep_masks(model, res.report)
    np.testing.assert_allclose(run(res.model, x), run(masked_copy(model, graph, masks), x),
                               atol=ATOL, rtol=1e-5)
    return res


def resnet_like(seed=0):
    keras.utils.set_random_seed(seed)
    i = keras.Input((8, 8, 3), name="img")
    h = L.ZeroPadding2D(1, name="pad")(i)
    h = L.Conv2D(4, 3, name="stem")(h)
    h = L.LeakyReLU(0.1, name="lrelu")(h)
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="res_a")(h)
    a = L.Conv2D(4, 3, padding="same", name="res_b")(a)
    h = L.Add(name="add")([h, a])
    b1 = L.Conv2D(3, 1, name="br1")(h)
    b2 = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(h)
    b2 = L.BatchNormalization(name="dw_bn")(b2)
    h = L.Concatenate(name="cat")([b1, b2])
    h = L.SeparableConv2D(5, 3, depth_multiplier=2, activation="relu", name="sep")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    o = L.Dense(3, name="out")(h)
    return keras.Model(i, o)


def test_groups_of_a_residual_graph():
    m = resnet_like()
    g = ChannelGraph(m)
    assert g.group("stem").id == g.group("res_b").id  # tied by the Add
    assert set(g.group("stem").producers) == {"stem", "res_b"}
    assert g.group("out").fixed
    assert g.group("sep").trimmable and g.group("br1").trimmable


@pytest.mark.parametrize("criterion", ["relevance", "l1", "random"])
def test_residual_concat_depthwise_separable_equivalence(criterion):
    m = resnet_like()
    x = data(m)
    res = check_equivalent(m, x, keep=0.5, criterion=criterion, seed=1)
    t = res.model
    assert res.report["layers"]["stem"]["kept"] == res.report["layers"]["res_b"]["kept"]
    assert t.get_layer("stem").kernel.shape == (3, 3, 3, 2)
    assert t.get_layer("res_a").kernel.shape == (3, 3, 2, 2)
    assert t.get_layer("dw").depthwise_kernel.shape == (3, 3, 2, 2)
    assert all(w.shape == (4,) for w in t.get_layer("dw_bn").get_weights())
    assert t.get_layer("sep").depthwise_kernel.shape == (3, 3, 2 + 4, 2)
    assert t.get_layer("sep").pointwise_kernel.shape == (1, 1, 12, 3)
    assert t.get_layer("out").kernel.shape == (3, 3)


def test_residual_on_the_input_keeps_that_group():
    keras.utils.set_random_seed(0)
    i = keras.Input((6, 6, 2))
    c = L.Conv2D(2, 3, padding="same", name="c")(i)
    h = L.Add(name="add")([i, c])
    h = L.Conv2D(4, 3, activation="relu", name="c2")(h)
    o = L.Dense(2, name="out")(L.GlobalMaxPooling2D()(h))
    m = keras.Model(i, o)
    res = check_equivalent(m, data(m), keep=0.5)
    assert res.report["layers"]["c"]["kernels_after"] == 2 and res.report["layers"]["c"]["fixed"]
    assert res.report["layers"]["c2"]["kernels_after"] == 2


def test_add_of_misaligned_concatenation_keeps_those_channels():
    keras.utils.set_random_seed(0)
    i = keras.Input((6, 6, 1))
    a = L.Conv2D(2, 1, name="a")(i)
    b = L.Conv2D(2, 1, name="b")(i)
    c = L.Conv2D(4, 1, name="c")(i)
    h = L.Add(name="bad_add")([L.Concatenate()([a, b]), c])
    h = L.Conv2D(4, 1, activation="relu", name="after")(h)
    m = keras.Model(i, L.Dense(1)(L.Flatten()(h)))
    res = check_equivalent(m, data(m), keep=0.5, criterion="l1")
    for name in "abc":
        assert res.report["layers"][name]["kernels_after"] == res.report["layers"][name]["kernels_before"]
        assert "bad_add" in res.report["layers"][name]["fixed"]
    assert res.report["layers"]["after"]["kernels_after"] == 2


def test_unknown_layer_inside_a_graph_is_named():
    i = keras.Input((6, 6, 1))
    h = L.Conv2D(2, 1, name="a")(i)
    h = L.Permute((2, 1, 3), name="perm")(h)
    m = keras.Model(i, L.Dense(1)(L.Flatten()(h)))
    with pytest.raises(UnsupportedLayerError) as exc:
        trim(m, None, keep=0.5, criterion="l1")
    assert exc.value.layer_name == "perm" and exc.value.layer_type == "Permute"


def test_add_of_aligned_concatenations_ties_pairwise():
    keras.utils.set_random_seed(0)
    i = keras.Input((6, 6, 1))
    convs = [L.Conv2D(2, 1, name=f"k{j}")(i) for j in range(4)]
    h = L.Add()([L.Concatenate()(convs[:2]), L.Concatenate()(convs[2:])])
    m = keras.Model(i, L.Dense(2, name="out")(L.Flatten()(L.ReLU()(h))))
    g = ChannelGraph(m)
    assert g.group("k0").id == g.group("k2").id and g.group("k1").id == g.group("k3").id
    check_equivalent(m, data(m), keep=0.5, criterion="random", seed=4)


# ---- generated graphs --------------------------------------------------------------

BLOCKS = ["conv", "conv_bn", "residual", "concat", "depthwise", "separable", "pad", "pool", "concat_add"]


@st.composite
def graphs(draw):
    keras.backend.clear_session()
    tf.random.set_seed(draw(st.integers(0, 1000)))
    i = keras.Input((8, 8, 2))
    h, width, side = i, 2, 8
    for _ in range(draw(st.integers(1, 4))):
        block = draw(st.sampled_from(BLOCKS))
        n = draw(st.integers(2, 5))
        if block in ("conv", "conv_bn"):
            h = L.Conv2D(n, 3, padding="same")(h)
            if block == "conv_bn":
                h = L.BatchNormalization(beta_initializer="random_normal",
                                         moving_mean_initializer="random_normal")(h)
            h = draw(st.sampled_from([L.ReLU, lambda: L.LeakyReLU(0.2), lambda: L.Activation("tanh")]))()(h)
            width = n
        elif block == "residual":
            r = L.Conv2D(width, 3, padding="same", activation="relu")(h)
            h = L.Add()([h, L.Conv2D(width, 1)(r)])
        elif block == "concat":
            parts = [L.Conv2D(n, 1, activation="relu")(h), L.DepthwiseConv2D(3, padding="same")(h)]
            h = L.Concatenate()(parts)
            width = n + width
        elif block == "concat_add":
            a = L.Concatenate()([L.Conv2D(n, 1)(h), L.Conv2D(2, 1)(h)])
            b = L.Concatenate()([L.Conv2D(n, 3, padding="same")(h), L.Conv2D(2, 1)(h)])
            h = L.ReLU()(L.Add()([a, b]))
            width = n + 2
        elif block == "depthwise":
            m = draw(st.integers(1, 2))
            h = L.DepthwiseConv2D(3, padding="same", depth_multiplier=m, activation="relu")(h)
            width *= m
        elif block == "separable":
            h = L.SeparableConv2D(n, 3, padding="same", depth_multiplier=draw(st.integers(1, 2)))(h)
            width = n
        elif block == "pad":
            h = L.ZeroPadding2D(1)(h)
            side += 2
        elif block == "pool" and side >= 4:
            h = draw(st.sampled_from([L.MaxPooling2D, L.AveragePooling2D]))()(h)
            side //= 2
    if draw(st.booleans()):
        h = draw(st.sampled_from([L.GlobalAveragePooling2D, L.GlobalMaxPooling2D]))()(h)
    else:
        h = L.Dense(draw(st.integers(2, 4)), activation="relu")(L.Dropout(0.1)(L.Flatten()(h)))
    return keras.Model(i, L.Dense(3)(h))


@settings(max_examples=int(os.environ.get("TRIM_EXAMPLES", "15")), deadline=None, suppress_health_check=list(HealthCheck))
@given(model=graphs(), keep=st.floats(0.2, 0.9), criterion=st.sampled_from(["random", "l1", "relevance"]),
       seed=st.integers(0, 99))
def test_generated_graphs_trim_equals_mask(model, keep, criterion, seed):
    x = data(model, n=4)
    res = check_equivalent(model, x, keep=keep, criterion=criterion, seed=seed)
    assert res.model.output_shape == model.output_shape
    assert res.report["params_after"] <= res.report["params_before"]
    for name, entry in res.report["layers"].items():
        n = entry["kernels_before"]
        if entry["fixed"]:
            assert entry["kernels_after"] == n
        else:
            assert entry["kernels_after"] == min(n, max(1, int(np.ceil(keep * n - 1e-9))))


# ---- QKeras ------------------------------------------------------------------

def qkeras_model(seed=0):
    from qkeras import QActivation, QBatchNormalization, QConv2D, QDense, QDepthwiseConv2D

    keras.utils.set_random_seed(seed)
    q = "quantized_bits(8,2,alpha=1)"
    return keras.Sequential([
        QConv2D(4, 3, kernel_quantizer=q, bias_quantizer=q, input_shape=(8, 8, 1), name="qc1"),
        QBatchNormalization(name="qbn", beta_initializer="random_normal"),
        QActivation("quantized_relu(6,2)", name="qa"),
        QDepthwiseConv2D(3, depthwise_quantizer=q, bias_quantizer=q, name="qdw"),
        QConv2D(3, 1, kernel_quantizer=q, bias_quantizer=q, name="qc2"),
        QActivation("quantized_relu(6,2)", name="qa2"),
        L.Flatten(name="f"),
        QDense(2, kernel_quantizer=q, bias_quantizer=q, name="qout"),
    ])


def test_qkeras_model_stays_qkeras(tmp_path):
    from fpgacnn.trimming.surgery import custom_objects

    m = qkeras_model()
    x = data(m)
    res = check_equivalent(m, x, keep=0.5)
    t = res.model
    for name in ("qc1", "qbn", "qa", "qdw", "qc2", "qout"):
        assert type(t.get_layer(name)) is type(m.get_layer(name))
        old_cfg, new_cfg = m.get_layer(name).get_config(), t.get_layer(name).get_config()
        for key in ("kernel_quantizer", "bias_quantizer", "depthwise_quantizer", "activation"):
            assert str(old_cfg.get(key)) == str(new_cfg.get(key))
    assert t.get_layer("qc1").kernel.shape[-1] == 2
    assert t.get_layer("qdw").depthwise_kernel.shape == (3, 3, 2, 1)
    for ext in (".h5", ".keras"):
        path = tmp_path / f"q{ext}"
        t.save(path)
        back = keras.models.load_model(path, custom_objects=custom_objects())
        np.testing.assert_allclose(run(back, x), run(t, x), atol=1e-6)
