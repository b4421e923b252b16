"""Trimmer, issue-2 scope: Conv2D, BatchNormalization, Activation/ReLU, pooling,
Flatten, Dropout, Dense in Sequential and functional models."""
from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from tensorflow import keras

from fpgacnn.errors import DataError, InputError, UnsupportedLayerError
from fpgacnn.trimming import (ChannelGraph, count_macs, masked_copy, relevance_scores, trim,
                          trim_model)

L = keras.layers
ATOL = 1e-5


def _randomize_bn(model, seed=0):
    """Non-trivial BN statistics so that slicing them wrongly shows up in the outputs."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if i in (0, 3) else rng.normal(0, 0.3, w.shape)
                               for i, w in enumerate(layer.get_weights())])


def seq_model(seed=0):
    keras.utils.set_random_seed(seed)
    m = keras.Sequential([
        L.Conv2D(4, 3, input_shape=(8, 8, 1), name="c1"),
        L.BatchNormalization(name="bn1"),
        L.Activation("relu", name="a1"),
        L.MaxPooling2D(name="p1"),
        L.Conv2D(6, 2, activation="relu", name="c2"),
        L.AveragePooling2D(name="p2"),
        L.Dropout(0.2, name="d1"),
        L.Flatten(name="f"),
        L.Dense(5, name="fc1"),
        L.ReLU(name="r1"),
        L.Dense(3, activation="softmax", name="out"),
    ])
    _randomize_bn(m, seed)
    return m


def func_model(seed=0):
    keras.utils.set_random_seed(seed)
    i = keras.Input((8, 8, 2), name="img")
    h = L.Conv2D(5, 3, padding="same", name="c1")(i)
    h = L.BatchNormalization(name="bn1")(h)
    h = L.ReLU(name="r1")(h)
    h = L.AveragePooling2D(name="p1")(h)
    h = L.Conv2D(4, 3, activation="relu", name="c2")(h)
    h = L.Flatten(name="f")(h)
    h = L.Dropout(0.1, name="d")(h)
    h = L.Dense(6, activation="relu", name="fc1")(h)
    o = L.Dense(2, name="out")(h)
    m = keras.Model(i, o)
    _randomize_bn(m, seed)
    return m


def data(model, n=12, seed=1):
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype("float32")


def run(model, x):
    return model(x, training=False).numpy()


def keep_masks(model, report):
    graph = ChannelGraph(model)
    masks = {}
    for name, entry in report["layers"].items():
        mask = np.zeros(entry["kernels_before"], dtype=bool)
        mask[entry["kept"]] = True
        masks[graph.group(name).id] = mask
    return graph, masks


# ---- relevance -------------------------------------------------------------------

def test_dead_kernel_is_removed_first_and_outputs_are_unchanged():
    m = seq_model()
    c1 = m.get_layer("c1")
    k, b = c1.get_weights()
    k[..., 2] = 0.0
    b[2] = 0.0
    c1.set_weights([k, b])
    bn = m.get_layer("bn1")
    gamma, beta, mean, var = bn.get_weights()
    gamma[2], beta[2], mean[2], var[2] = 1.0, -5.0, 0.0, 1.0  # BN output -5 -> ReLU 0
    bn.set_weights([gamma, beta, mean, var])
    x = data(m)
    scores = relevance_scores(m, x)
    assert scores["c1"][2] == 0.0
    assert np.argmin(scores["c1"]) == 2
    res = trim_model(m, x, keep=0.75, scores={"c1": scores["c1"]})  # only c1 loses a kernel
    assert res.report["layers"]["c1"]["kept"] == [0, 1, 3]
    np.testing.assert_allclose(run(res.model, x), run(m, x), atol=ATOL)
    # with the default criterion it is still the first kernel to go in c1
    res = trim_model(m, x, keep=0.75)
    assert 2 not in res.report["layers"]["c1"]["kept"]


def test_relevance_reads_the_post_activation_tensor():
    m = seq_model()
    x = data(m)
    graph = ChannelGraph(m)
    from fpgacnn.trimming.relevance import post_activation_layer
    assert post_activation_layer(graph, "c1") == "a1"   # through BN to the Activation
    assert post_activation_layer(graph, "c2") == "c2"   # own activation
    assert post_activation_layer(graph, "fc1") == "r1"  # ReLU layer after Dense
    tap = keras.Model(m.inputs, m.get_layer("a1").output)
    expected = run(tap, x).reshape(-1, 4).mean(axis=0)
    np.testing.assert_allclose(relevance_scores(m, x)["c1"], expected, rtol=1e-5, atol=1e-7)
    assert set(relevance_scores(m, x)) == {"c1", "c2", "fc1", "out"}


def test_consumer_weight_norms_follow_pooling_and_flatten_rows():
    from fpgacnn.trimming.relevance import consumer_weight_norms
    m = seq_model()
    norms = consumer_weight_norms(ChannelGraph(m))
    k2 = m.get_layer("c2").get_weights()[0]  # (2, 2, 4, 6): c1's channels behind BN, ReLU, pooling
    np.testing.assert_allclose(norms["c1"], np.sqrt((k2 ** 2).sum(axis=(0, 1, 3))))
    w = m.get_layer("fc1").get_weights()[0]  # Flatten of a (1, 1, 6) map: row f carries channel f % 6
    rows = w.reshape(-1, 6, w.shape[1])
    np.testing.assert_allclose(norms["c2"], np.sqrt((rows ** 2).sum(axis=(0, 2))))
    assert np.all(norms["out"] == 1.0)  # read by no weighted layer: no information


def test_relevance_weighted_prefers_the_kernel_the_next_layer_reads():
    m = seq_model()
    x = data(m)
    c2 = m.get_layer("c2")
    k, b = c2.get_weights()
    k[:, :, 1, :] *= 1e-3  # the next layer barely reads c1's kernel 1
    c2.set_weights([k, b])
    from fpgacnn.trimming.relevance import criterion_scores
    scores = criterion_scores(m, x, "relevance_weighted", ChannelGraph(m))
    assert np.argmin(scores["c1"]) == 1
    res = trim_model(m, x, keep=0.75, criterion="relevance_weighted",
                     scores={p: np.ones(n) for p, n in (("c2", 6), ("fc1", 5))})
    assert 1 not in res.report["layers"]["c1"]["kept"]


@pytest.mark.parametrize("statistic", ["mean", "mean_abs", "apoz"])
def test_relevance_streams_batch_size_does_not_matter(statistic):
    m = func_model()
    x = data(m, n=9)
    one = relevance_scores(m, x, batch_size=1, statistic=statistic)
    big = relevance_scores(m, x, batch_size=1000, statistic=statistic)
    odd = relevance_scores(m, x, batch_size=4, statistic=statistic)
    for name in one:
        np.testing.assert_allclose(one[name], big[name], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(odd[name], big[name], rtol=1e-9, atol=1e-12)
    if statistic == "apoz":  # 1 - APoZ: fraction of non-zeros, higher = more relevant
        for s in big.values():
            assert np.all((s >= 0) & (s <= 1))
        tap = run(keras.Model(m.inputs, m.get_layer("r1").output), x)
        np.testing.assert_allclose(big["c1"], (tap != 0).reshape(-1, 5).mean(axis=0))


# ---- equivalence -------------------------------------------------------------------

@pytest.mark.parametrize("builder", [seq_model, func_model])
@pytest.mark.parametrize("criterion", ["relevance", "relevance_weighted", "l1", "apoz", "random"])
def test_trimmed_equals_masked_original(builder, criterion):
    m = builder()
    x = data(m)
    res = trim_model(m, x, keep=0.5, criterion=criterion, seed=3)
    graph, masks = keep_masks(m, res.report)
    np.testing.assert_allclose(run(res.model, x), run(masked_copy(m, graph, masks), x), atol=ATOL)
    assert res.report["params_after"] < res.report["params_before"]
    assert res.report["macs_after"] < res.report["macs_before"]


def test_trimmed_equals_hand_masked_sequential():
    """Independent of masked_copy: zero the consumers' input weights by hand."""
    m = seq_model(seed=5)
    x = data(m)
    res = trim_model(m, x, keep=0.5)
    kept = {n: e["kept"] for n, e in res.report["layers"].items()}
    ref = keras.models.clone_model(m)
    ref.set_weights(m.get_weights())
    drop1 = sorted(set(range(4)) - set(kept["c1"]))
    drop2 = sorted(set(range(6)) - set(kept["c2"]))
    drop3 = sorted(set(range(5)) - set(kept["fc1"]))
    k, b = ref.get_layer("c2").get_weights()
    k[:, :, drop1, :] = 0
    ref.get_layer("c2").set_weights([k, b])
    k, b = ref.get_layer("fc1").get_weights()  # flat index (h*W + w)*C + c
    rows = [f for f in range(k.shape[0]) if f % 6 in drop2]
    k[rows, :] = 0
    ref.get_layer("fc1").set_weights([k, b])
    k, b = ref.get_layer("out").get_weights()
    k[drop3, :] = 0
    ref.get_layer("out").set_weights([k, b])
    np.testing.assert_allclose(run(res.model, x), run(ref, x), atol=ATOL)


# ---- shapes, report, persistence -------------------------------------------------

def test_shapes_shrink_consistently_and_output_is_kept():
    m = seq_model()
    x = data(m)
    t = trim(m, x, keep=0.5)
    assert t.get_layer("c1").kernel.shape == (3, 3, 1, 2)
    assert all(w.shape == (2,) for w in t.get_layer("bn1").get_weights())
    assert t.get_layer("c2").kernel.shape == (2, 2, 2, 3)
    assert t.get_layer("fc1").kernel.shape == (3, 3)   # 1x1 spatial * 3 channels rows
    assert t.get_layer("out").kernel.shape == (3, 3)   # output keeps all 3 units
    assert t.output_shape == m.output_shape
    assert [ly.name for ly in t.layers] == [ly.name for ly in m.layers]
    tiny = trim(m, x, keep=0.01)
    assert tiny.get_layer("c1").kernel.shape[-1] == 1
    assert tiny.get_layer("c2").kernel.shape[-1] == 1
    two = trim(m, x, keep=0.01, min_kernels=2)
    assert two.get_layer("c2").kernel.shape[-1] == 2
    full = trim(m, x, keep=1.0)
    np.testing.assert_allclose(run(full, x), run(m, x), atol=ATOL)


def test_flatten_rows_are_sliced_by_channel():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([L.Conv2D(3, 3, input_shape=(6, 6, 1), name="c"), L.Flatten(name="f"),
                          L.Dense(2, name="o")])
    x = data(m)
    res = trim_model(m, x, keep=0.34, scores={"c": np.array([0.1, 0.9, 0.5])})
    assert res.report["layers"]["c"]["kept"] == [1, 2]
    k = m.get_layer("o").get_weights()[0]
    rows = [f for f in range(k.shape[0]) if f % 3 != 0]  # 4x4 positions * 3 channels
    np.testing.assert_array_equal(res.model.get_layer("o").get_weights()[0], k[rows])
    np.testing.assert_allclose(run(res.model, x), run(masked_copy(m, *keep_masks(m, res.report)), x), atol=ATOL)


def test_report_is_json_and_counts_are_right():
    m = seq_model()
    res = trim_model(m, data(m), keep=0.5)
    rep = json.loads(json.dumps(res.report))
    assert rep["layers"]["c1"]["kernels_before"] == 4 and rep["layers"]["c1"]["kernels_after"] == 2
    assert rep["layers"]["out"]["kernels_after"] == 3 and rep["layers"]["out"]["fixed"]
    assert rep["params_before"] == m.count_params()
    assert rep["params_after"] == res.model.count_params()
    # c1: 6*6*9*1*4, c2: 2*2*4*4*6, fc1: 6*5, out: 5*3
    assert count_macs(m) == 6 * 6 * 9 * 4 + 2 * 2 * 4 * 4 * 6 + 6 * 5 + 5 * 3
    assert rep["macs_before"] == count_macs(m)
    assert rep["macs_after"] == 6 * 6 * 9 * 2 + 2 * 2 * 4 * 2 * 3 + 3 * 3 + 3 * 3


@pytest.mark.parametrize("options,widths", [
    ({}, {"c1": 3, "c2": 3, "fc1": 4}),
    ({"ranking": "global"}, {"c1": 4, "c2": 1, "fc1": 4}),
    ({"ranking": "global", "normalize": "rank"}, {"c1": 3, "c2": 2, "fc1": 4}),
    ({"ranking": "global", "cost": "sqrt_params", "min_kernels": 2}, {"c1": 2, "c2": 2, "fc1": 5}),
])
def test_planned_masks_follow_every_option_and_match_trim_model(options, widths):
    # the fit plans many levels on one set of scores and rebuilds only some: each option
    # must reach the plan (the four give four allocations), and its widths must be what
    # trim_model reports for the same cut
    from fpgacnn.trimming.core import KernelPlan, kernel_scores, mask_widths

    m = func_model()
    x = data(m)
    graph = ChannelGraph(m)
    masks = KernelPlan(graph, kernel_scores(m, x, graph, criterion="relevance"), **options).masks(0.6)
    assert mask_widths(graph, masks) == widths
    assert trim_model(m, x, keep=0.6, **options).widths == widths


@pytest.mark.parametrize("builder", [seq_model, func_model])
@pytest.mark.parametrize("ext", [".h5", ".keras"])
def test_trimmed_model_saves_and_reloads(tmp_path, builder, ext):
    m = builder()
    x = data(m)
    t = trim(m, x, keep=0.5)
    path = tmp_path / f"trimmed{ext}"
    t.save(path)
    back = keras.models.load_model(path)
    np.testing.assert_allclose(run(back, x), run(t, x), atol=1e-6)


def test_original_model_is_untouched():
    m = seq_model()
    x = data(m)
    before = [w.copy() for w in m.get_weights()]
    out = run(m, x)
    trim(m, x, keep=0.5)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(run(m, x), out)


# ---- errors --------------------------------------------------------------------

@pytest.mark.parametrize("keep", [0, 0.0, -0.5, 1.5, float("nan"), True, "half"])
def test_bad_keep_is_an_input_error(keep):
    m = seq_model()
    with pytest.raises(InputError, match="keep") as exc:
        trim(m, data(m), keep=keep)
    assert repr(keep) in str(exc.value)


def test_bad_options():
    m = seq_model()
    x = data(m)
    with pytest.raises(InputError, match="min_kernels"):
        trim(m, x, keep=0.5, min_kernels=0)
    with pytest.raises(InputError, match="criterion"):
        trim(m, x, keep=0.5, criterion="magic")
    with pytest.raises(InputError, match="statistic"):
        relevance_scores(m, x, statistic="median")
    with pytest.raises(InputError, match="batch_size"):
        relevance_scores(m, x, batch_size=0)
    with pytest.raises(InputError, match="entries"):
        trim(m, x, keep=0.5, scores={"c1": np.ones(3)})


@pytest.mark.parametrize("shape", [(4, 8, 8, 2), (4, 8, 8), (4, 9, 8, 1), (0, 8, 8, 1)])
def test_x_of_the_wrong_shape_is_a_data_error(shape):
    m = seq_model()
    with pytest.raises(DataError):
        relevance_scores(m, np.zeros(shape, "float32"))
    with pytest.raises(DataError):
        trim(m, np.zeros(shape, "float32"), keep=0.5)


def test_data_free_criteria_need_no_x_but_relevance_does():
    m = seq_model()
    assert trim(m, None, keep=0.5, criterion="l1").get_layer("c1").kernel.shape[-1] == 2
    with pytest.raises(DataError):
        trim(m, None, keep=0.5)


@pytest.mark.parametrize("layer,type_name", [
    (L.Reshape((4, 36), name="odd"), "Reshape"),
    (L.Conv2DTranspose(2, 3, name="odd"), "Conv2DTranspose"),
    (L.PReLU(name="odd"), "PReLU"),
])
def test_unsupported_layer_is_named(layer, type_name):
    m = keras.Sequential([L.Conv2D(4, 3, input_shape=(8, 8, 1), name="c"), layer,
                          L.Flatten(), L.Dense(2)])
    with pytest.raises(UnsupportedLayerError) as exc:
        trim(m, data(m), keep=0.5)
    assert exc.value.layer_name == "odd" and exc.value.layer_type == type_name
    assert "odd" in str(exc.value) and type_name in str(exc.value) and "trim" in str(exc.value)


def test_channels_first_is_rejected():
    m = keras.Sequential([L.Conv2D(4, 3, input_shape=(1, 8, 8), data_format="channels_first", name="cf"),
                          L.Flatten(), L.Dense(2)])
    with pytest.raises(UnsupportedLayerError, match="channels_first"):
        trim(m, None, keep=0.5, criterion="l1")


def test_softmax_in_the_middle_fixes_its_group():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([L.Dense(4, activation="softmax", input_shape=(6,), name="sm"),
                          L.Dense(3, activation="relu", name="h"), L.Dense(2, name="o")])
    rep = trim_model(m, None, keep=0.5, criterion="l1").report
    assert rep["layers"]["sm"]["kernels_after"] == 4 and "mixing" in rep["layers"]["sm"]["fixed"]
    assert rep["layers"]["h"]["kernels_after"] == 2


def test_package_level_exports():
    import fpgacnn

    m = seq_model()
    x = data(m)
    assert set(fpgacnn.relevance_scores(m, x)) == {"c1", "c2", "fc1", "out"}
    import fpgacnn.trimming  # noqa: F401 (the package must not shadow the export)
    t = fpgacnn.trim(m, x, keep=0.5)
    assert t.get_layer("c1").kernel.shape[-1] == 2
    # a report's widths of the trimmable layers are a valid target (the README's planned allocation)
    plan = fpgacnn.trim_schedule(m, x, np.zeros(len(x), int), target={"keep": 0.5}, criterion="random",
                                 rounds=1, finetune_epochs=0)
    assert set(plan.widths) == {"c1", "c2", "fc1"}  # the output layer is never a target
    assert sum(plan.widths.values()) < 4 + 6 + 5  # a real cut, so reaching it again means something
    again = fpgacnn.trim_schedule(m, x, np.zeros(len(x), int), target={"widths": plan.widths}, criterion="l1",
                                  rounds=1, finetune_epochs=0)
    assert again.widths == plan.widths


def test_vgg16_layout_is_the_benchmark_baseline():
    """The benchmarks train and reload this layout; its shape and count must not drift."""
    from fpgacnn.zoo import small_vgg, vgg16_layout
    from fpgacnn.trimming import ChannelGraph

    m = vgg16_layout()
    assert m.count_params() == 941_754  # benchmarks/results/trim_cifar10.md's baseline
    convs = [l.name for l in m.layers if l.__class__.__name__ == "Conv2D"]
    assert len(convs) == 13 and convs[-1] == "block5_conv3"
    assert [g.size for g in ChannelGraph(m).groups if g.trimmable] == [16, 16, 32, 32, 64, 64, 64] + [128] * 7
    with pytest.raises(ValueError, match="one entry per width"):
        small_vgg(widths=(8, 16), convs_per_block=(2,))
