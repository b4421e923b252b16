"""Trimmer, issue-4 scope: score normalisation, layer/global ranking, floors, dry-run
sizes, and schedules (one-shot or iterative, to keep/params/MACs/budget targets)."""
from __future__ import annotations

import json
import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorflow import keras

from fpgacnn.errors import InputError
from fpgacnn.trimming import (ChannelGraph, count_macs, masked_copy, normalize_scores, trim_model,
                              trim_schedule, trimmed_size)
from fpgacnn.trimming.select import floor, select
from fpgacnn.trimming.surgery import rebuild
from test_trim import data, func_model, keep_masks, run, seq_model
from test_trim_graphs import resnet_like

ATOL = 1e-5


def labels(x, n_classes, seed=0):
    return np.random.default_rng(seed).integers(0, n_classes, len(x))


# ---- normalisation ---------------------------------------------------------------

def test_normalisations():
    s = np.array([0.0, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(normalize_scores(s, "mean"), s / 2.0)
    np.testing.assert_allclose(normalize_scores(s, "max"), s / 5.0)
    z = normalize_scores(s, "zscore")
    assert abs(z.mean()) < 1e-12 and abs(z.std() - 1) < 1e-12
    np.testing.assert_array_equal(normalize_scores(s, "none"), s)
    # scale-free: a layer with 1000x larger activations gets the same normalised scores
    np.testing.assert_allclose(normalize_scores(1000 * s, "mean"), normalize_scores(s, "mean"))
    for how in ("mean", "max", "zscore"):  # a dead layer stays dead, no division by zero
        np.testing.assert_array_equal(normalize_scores(np.zeros(3), how), np.zeros(3))
        assert list(np.argsort(normalize_scores(s, how))) == list(np.argsort(s))
    with pytest.raises(InputError, match="normalisation"):
        normalize_scores(s, "softmax")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=12), st.floats(1e-3, 1e3))
def test_rank_normalisation_is_the_quantile_inside_the_layer(values, scale):
    s = np.array(values, dtype=np.float64) * scale
    r = normalize_scores(s, "rank")
    assert abs(r.mean() - 1.0) < 1e-12  # one scale for every layer, as "mean" has
    for i in range(len(s)):  # the layer's order, ties equal
        for j in range(len(s)):
            assert (s[i] < s[j]) == (r[i] < r[j]) and (s[i] == s[j]) == (r[i] == r[j])
    if len(set(values)) == len(values):  # distinct scores: evenly spread, whatever their values
        np.testing.assert_allclose(np.sort(r), (2 * np.arange(len(s)) + 1) / len(s))



def test_rank_normalisation_grades_a_costed_cut_that_flat_scores_make_all_or_nothing():
    # three layers of 20 kernels with nearly equal scores, the way activation scores look
    # after mean normalisation, and kernels that cost 1, 2 and 4
    rng = np.random.default_rng(0)
    raw = {g: 1.0 + 0.05 * rng.random(20) for g in range(3)}
    costs = {0: 1.0, 1: 2.0, 2: 4.0}

    def kept(how):
        scores = {g: normalize_scores(s, how) for g, s in raw.items()}
        masks = select(scores, 0.5, ranking="global", min_kernels=2, costs=costs)
        return [int(masks[g].sum()) for g in range(3)]

    flat, graded = kept("mean"), kept("rank")
    assert sum(flat) == sum(graded) == 30
    assert flat[0] == 20 and flat[2] == 2  # the cheap layer whole, the dear one on its floor
    assert all(2 < n < 20 for n in graded)  # every layer cut by a graded amount
    assert graded[0] > graded[1] > graded[2]


# ---- selection -------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=5), keep=st.floats(0.01, 1.0),
       min_kernels=st.integers(1, 4), min_fraction=st.sampled_from([0.0, 0.1, 0.3]),
       ranking=st.sampled_from(["layer", "global"]), seed=st.integers(0, 1000))
def test_selection_respects_floors_counts_and_grows_with_keep(sizes, keep, min_kernels, min_fraction,
                                                              ranking, seed):
    rng = np.random.default_rng(seed)
    scores = {g: rng.random(n).round(1) for g, n in enumerate(sizes)}  # rounding makes ties
    masks = select(scores, keep, ranking=ranking, min_kernels=min_kernels, min_fraction=min_fraction)
    floors = {g: floor(n, min_kernels, min_fraction) for g, n in enumerate(sizes)}
    for g, n in enumerate(sizes):
        assert floors[g] <= masks[g].sum() <= n
        kept, dropped = scores[g][masks[g]], scores[g][~masks[g]]
        assert not len(dropped) or not len(kept) or kept.min() >= dropped.max()  # best ones kept
    total = sum(int(m.sum()) for m in masks.values())
    if ranking == "global":
        assert total == max(sum(floors.values()), math.ceil(keep * sum(sizes) - 1e-9))
    else:
        assert all(masks[g].sum() == max(floors[g], min(n, math.ceil(keep * n - 1e-9)))
                   for g, n in enumerate(sizes))
    more = select(scores, min(1.0, keep + 0.1), ranking=ranking, min_kernels=min_kernels,
                  min_fraction=min_fraction)
    assert all(np.all(more[g] >= masks[g]) for g in scores)  # the kept set only grows


def test_global_ranking_cuts_the_layer_whose_kernels_are_weak():
    m = seq_model()
    x = data(m)
    strong_c1 = np.array([1.0, 0.9, 1.1, 1.0])
    mostly_dead_c2 = np.array([3.0, 0.01, 0.02, 0.0, 0.01, 0.03])  # one strong kernel, five weak
    fc1 = np.array([1.0, 1.2, 0.8, 0.9, 1.1])
    given_scores = {"c1": strong_c1, "c2": mostly_dead_c2, "fc1": fc1}
    per_layer = trim_model(m, x, keep=0.5, scores=given_scores).report["layers"]
    glob = trim_model(m, x, keep=0.5, scores=given_scores, ranking="global").report["layers"]
    assert [per_layer[n]["kernels_after"] for n in ("c1", "c2", "fc1")] == [2, 3, 3]
    assert glob["c2"]["kernels_after"] == 1 and glob["c2"]["kept"] == [0]
    assert glob["c1"]["kernels_after"] + glob["fc1"]["kernels_after"] == 8 - 1  # ceil(0.5*15) = 8 in all
    assert glob["c1"]["kernels_after"] >= 3 and glob["fc1"]["kernels_after"] >= 3  # the strong layers lose less
    # Without normalisation a layer of uniformly weak kernels goes down to its floor ...
    weak = {"c1": strong_c1, "c2": np.full(6, 0.05) + np.arange(6) * 1e-3, "fc1": fc1}
    raw = trim_model(m, x, keep=0.6, scores=weak, ranking="global", normalize="none").report["layers"]
    assert raw["c2"]["kernels_after"] == 1
    # ... and a floor stops it: min_fraction=0.5 keeps 3 of 6
    floored = trim_model(m, x, keep=0.6, scores=weak, ranking="global", normalize="none",
                         min_fraction=0.5).report["layers"]
    assert floored["c2"]["kernels_after"] == 3 and floored["c2"]["kept"] == [3, 4, 5]
    assert trim_model(m, x, keep=0.01, min_kernels=2, ranking="global").report["layers"]["c2"]["kernels_after"] == 2


@pytest.mark.parametrize("builder", [seq_model, func_model, resnet_like])
def test_global_ranking_trims_to_an_equivalent_model(builder):
    m = builder()
    x = data(m)
    res = trim_model(m, x, keep=0.4, ranking="global")
    graph, masks = keep_masks(m, res.report)
    np.testing.assert_allclose(run(res.model, x), run(masked_copy(m, graph, masks), x), atol=ATOL, rtol=1e-5)
    groups = {tuple(e["group"]): e for e in res.report["layers"].values() if not e["fixed"]}
    n = sum(e["kernels_before"] for e in groups.values())
    assert sum(e["kernels_after"] for e in groups.values()) == math.ceil(0.4 * n)
    assert res.report["ranking"] == "global" and res.report["params_after"] < res.report["params_before"]


@pytest.mark.parametrize("builder", [seq_model, func_model, resnet_like])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dry_run_size_matches_the_rebuilt_model(builder, seed):
    m = builder()
    graph = ChannelGraph(m)
    rng = np.random.default_rng(seed)
    masks = {}
    for g in graph.groups:
        if g.trimmable:
            mask = rng.random(g.size) < 0.5
            mask[rng.integers(g.size)] = True
            masks[g.id] = mask
    small = rebuild(m, graph, masks)
    assert trimmed_size(graph, masks) == (small.count_params(), count_macs(small))
    assert trimmed_size(graph, {}) == (m.count_params(), count_macs(m))


def test_bad_ranking_options():
    m = seq_model()
    x = data(m)
    with pytest.raises(InputError, match="ranking"):
        trim_model(m, x, keep=0.5, ranking="best")
    with pytest.raises(InputError, match="normalisation"):
        trim_model(m, x, keep=0.5, normalize="softmax")
    with pytest.raises(InputError, match="min_fraction"):
        trim_model(m, x, keep=0.5, min_fraction=1.5)


# ---- schedules: targets (no fine-tuning, so they are quick) -----------------------

@pytest.mark.parametrize("ranking", ["layer", "global"])
@pytest.mark.parametrize("kind,fraction", [("params", 0.3), ("macs", 0.3), ("keep", 0.4)])
def test_schedule_meets_size_targets(kind, fraction, ranking):
    m = func_model()
    x = data(m, n=16)
    y = labels(x, 2)
    start = {"params": m.count_params(), "macs": count_macs(m), "keep": 1.0}[kind]
    goal = fraction * start if kind != "keep" else fraction
    res = trim_schedule(m, x, y, target={kind: goal}, rounds=2, finetune_epochs=0, ranking=ranking)
    rep = res.report
    assert rep["params_after"] == res.model.count_params() and rep["macs_after"] == count_macs(res.model)
    kernels = rep["rounds"][-1]["kernels"]
    got = {"params": rep["params_after"], "macs": rep["macs_after"], "keep": kernels / rep["start"]["kernels"]}
    assert got[kind] <= goal
    # not trivially small: one more kernel anywhere would break the target or the floor is hit
    assert got[kind] > 0.5 * goal
    assert rep["rounds"][0]["params"] >= rep["rounds"][1]["params"]


def test_schedule_respects_a_callable_budget():
    m = seq_model()
    x = data(m, n=16)
    calls = []

    def fits(model):
        calls.append(model.count_params())
        return model.count_params() <= 60 and count_macs(model) <= 400

    res = trim_schedule(m, x, labels(x, 3), target=fits, rounds=2, finetune_epochs=0, criterion="l1")
    assert fits(res.model) and len(calls) > 2
    assert res.report["target"] == {"budget": "fits"}
    assert res.report["rounds"][-1]["params"] == res.model.count_params() <= 60


def test_iterative_rounds_keep_original_indices_and_compute_the_masked_function():
    """Without fine-tuning, two rounds of trimming are one removal of the composed kernels."""
    m = seq_model()
    x = data(m, n=16)
    res = trim_schedule(m, x, labels(x, 3), target={"keep": 0.3}, rounds=2, finetune_epochs=0, recalibrate=False)
    graph, masks = keep_masks(m, res.report)
    np.testing.assert_allclose(run(res.model, x), run(masked_copy(m, graph, masks), x), atol=ATOL)
    assert res.report["layers"]["out"]["kernels_after"] == 3
    assert all(e["kernels_before"] == m.get_layer(n).kernel.shape[-1] for n, e in res.report["layers"].items())


def test_fraction_per_round_sets_the_number_of_rounds():
    m = func_model()
    x = data(m, n=16)
    res = trim_schedule(m, x, labels(x, 2), target={"params": 0.2 * m.count_params()},
                        fraction_per_round=0.5, finetune_epochs=0, criterion="l1")
    assert len(res.report["rounds"]) == 3  # 0.5^2 > 0.2 >= 0.5^3
    params = [r["params"] for r in res.report["rounds"]]
    assert params == sorted(params, reverse=True) and params[-1] <= 0.2 * m.count_params()


def test_schedule_errors():
    m = seq_model()
    x = data(m, n=8)
    y = labels(x, 3)
    for target, match in [({"keep": 1.5}, "fraction"), ({"params": -1}, "positive"), ({"flops": 3}, "unknown"),
                          ({"keep": 0.5, "params": 3}, "target"), (0.5, "target")]:
        with pytest.raises(InputError, match=match):
            trim_schedule(m, x, y, target=target, finetune_epochs=0)
    with pytest.raises(InputError, match="not both"):
        trim_schedule(m, x, y, target={"keep": 0.5}, rounds=2, fraction_per_round=0.5)
    with pytest.raises(InputError, match="out of reach"):
        trim_schedule(m, x, y, target={"params": 10}, finetune_epochs=0)
    with pytest.raises(InputError, match="out of reach"):
        trim_schedule(m, x, y, target=lambda model: False, finetune_epochs=0)
    with pytest.raises(InputError, match="labels"):
        trim_schedule(m, x, y[:3], target={"keep": 0.5})


def test_widths_target_keeps_the_best_kernels_of_each_named_layer():
    """An explicit allocation: exactly those widths, the kept kernels the criterion's best,
    reached geometrically over the rounds; layers not named keep all their kernels."""
    m = seq_model()
    x = data(m, n=16)
    res = trim_schedule(m, x, labels(x, 3), target={"widths": {"c1": 1, "fc1": 2}}, rounds=2,
                        finetune_epochs=0, criterion="l1", recalibrate=False)
    layers = res.report["layers"]
    assert {n: e["kernels_after"] for n, e in layers.items()} == {"c1": 1, "c2": 6, "fc1": 2, "out": 3}
    l1 = np.abs(m.get_layer("c1").kernel.numpy()).sum(axis=(0, 1, 2))
    assert layers["c1"]["kept"] == [int(np.argmax(l1))]
    assert [r["kernels"] for r in res.report["rounds"]] == [2 + 6 + 3, 1 + 6 + 2]  # 4->2->1, 5->3->2 (rounded)
    assert res.report["target"] == {"widths": {"c1": 1, "fc1": 2}}
    np.testing.assert_allclose(run(res.model, x), run(masked_copy(m, *keep_masks(m, res.report)), x), atol=ATOL)


@pytest.mark.parametrize("widths,match", [
    ({"nope": 2}, "no layer 'nope' produces kernels"),
    ({"c1": 9}, "layer 'c1' has 4 kernels, cannot keep 9"),
    ({"out": 2}, "layer 'out' cannot be trimmed"),
    ({"c1": 0}, "kernel counts >= 1"),
    ({}, "kernel counts >= 1"),
])
def test_widths_target_errors(widths, match):
    m = seq_model()
    x = data(m, n=8)
    with pytest.raises(InputError, match=match):
        trim_schedule(m, x, labels(x, 3), target={"widths": widths}, finetune_epochs=0)


# ---- schedules with fine-tuning on digits ------------------------------------------

@pytest.fixture(scope="module")
def iterative(trained_small_vgg, digits):
    seen = []
    res = trim_schedule(trained_small_vgg, digits.x_train, digits.y_train, target={"keep": 0.5}, rounds=2,
                        finetune_epochs=3, distill=True, x_val=digits.x_val, y_val=digits.y_val,
                        ranking="global", representative=200, callback=lambda e, mdl: seen.append((e, mdl)))
    return res, seen


def test_iterative_schedule_shrinks_every_round_and_reports_accuracy(iterative, trained_small_vgg, digits):
    res, seen = iterative
    rep = json.loads(json.dumps(res.report))  # JSON-serialisable
    rounds = rep["rounds"]
    assert [r["round"] for r in rounds] == [1, 2] and len(seen) == 2
    assert rep["start"]["params"] > rounds[0]["params"] > rounds[1]["params"] == res.model.count_params()
    assert rep["start"]["macs"] > rounds[0]["macs"] > rounds[1]["macs"]
    assert rounds[-1]["kernels"] <= 0.5 * rep["start"]["kernels"]
    assert seen[-1][1] is res.model and seen[0][0] == rep["rounds"][0]
    assert all(0.0 <= r["val_accuracy"] <= 1.0 for r in rounds)
    assert rounds[-1]["val_accuracy"] > 0.6  # fine-tuned: far above chance (0.1) on 10 classes
    assert trained_small_vgg.count_params() == rep["params_before"]  # the teacher is untouched


def test_distillation_changes_the_fine_tuning(trained_small_vgg, digits):
    kw = dict(target={"keep": 0.5}, finetune_epochs=1, representative=100, seed=3)
    x, y = digits.x_train[:256], digits.y_train[:256]
    with_teacher = trim_schedule(trained_small_vgg, x, y, distill=True, **kw)
    labels_only = trim_schedule(trained_small_vgg, x, y, distill=False, **kw)
    untuned = trim_schedule(trained_small_vgg, x, y, **{**kw, "finetune_epochs": 0})
    assert with_teacher.report["distill"] and not labels_only.report["distill"]
    a, b, c = (r.model.get_layer("fc1").get_weights()[0] for r in (with_teacher, labels_only, untuned))
    assert a.shape == b.shape == c.shape
    assert not np.allclose(a, c) and not np.allclose(a, b)  # it trained, and the loss was another


def test_cost_aware_global_ranking_keeps_cheap_kernels():
    m = seq_model()
    x = data(m)
    graph = ChannelGraph(m)
    from fpgacnn.trimming.core import kernel_costs

    costs = kernel_costs(graph, "params")
    for name in ("c1", "c2", "fc1"):  # the exact saving of removing one kernel of that layer
        g = graph.group(name)
        mask = np.ones(g.size, dtype=bool)
        mask[0] = False
        assert costs[g.id] == m.count_params() - rebuild(m, graph, {g.id: mask}).count_params()
    flat = {n: np.ones(m.get_layer(n).kernel.shape[-1]) for n in ("c1", "c2", "fc1")}
    plain = trim_model(m, x, keep=0.5, scores=flat, ranking="global").report
    priced = trim_model(m, x, keep=0.5, scores=flat, ranking="global", cost="params").report
    cheapest = min(("c1", "c2", "fc1"), key=lambda n: costs[graph.group(n).id])
    dearest = max(("c1", "c2", "fc1"), key=lambda n: costs[graph.group(n).id])
    assert priced["layers"][cheapest]["kernels_after"] == priced["layers"][cheapest]["kernels_before"]
    assert priced["layers"][dearest]["kernels_after"] == 1
    assert priced["params_after"] < plain["params_after"]
    assert priced["cost"] == "params"
    with pytest.raises(InputError, match="cost"):
        trim_model(m, x, keep=0.5, cost="params")  # layer ranking: every layer keeps `keep` anyway
    with pytest.raises(InputError, match="cost"):
        trim_model(m, x, keep=0.5, ranking="global", cost="luts")
    sqrt_costs = kernel_costs(graph, "sqrt_params")
    assert all(np.isclose(sqrt_costs[g], costs[g] ** 0.5) for g in costs)
    # with a score gradient the square-root price lands between ignoring the cost and obeying it
    graded = {n: np.linspace(2.0, 0.1, m.get_layer(n).kernel.shape[-1]) for n in ("c1", "c2", "fc1")}
    kept = {c: trim_model(m, x, keep=0.5, scores=graded, ranking="global", cost=c).report["layers"][dearest]
            ["kernels_after"] for c in (None, "sqrt_params", "params")}
    assert kept[None] >= kept["sqrt_params"] >= kept["params"] and kept[None] > kept["params"]


def test_batchnorm_statistics_are_re_estimated_in_order():
    from fpgacnn.trimming import recalibrate_batchnorm

    keras.utils.set_random_seed(0)
    L = keras.layers
    m = keras.Sequential([L.Conv2D(4, 3, input_shape=(8, 8, 2), name="c1"), L.BatchNormalization(name="bn1"),
                          L.ReLU(), L.Conv2D(3, 3, name="c2"), L.BatchNormalization(name="bn2"), L.Flatten(),
                          L.Dense(2, name="out")])
    for name in ("bn1", "bn2"):  # stale statistics, as after a cut
        g, b, _, _ = m.get_layer(name).get_weights()
        m.get_layer(name).set_weights([g, b, np.full_like(b, 5.0), np.full_like(b, 9.0)])
    x = data(m, n=20)
    assert recalibrate_batchnorm(m, x, batch_size=7) == ["bn1", "bn2"]
    for name in ("bn1", "bn2"):  # bn2's statistics are taken behind the re-estimated bn1
        bn = m.get_layer(name)
        a = keras.Model(m.inputs, bn.input)(x, training=False).numpy().reshape(-1, bn.moving_mean.shape[0])
        np.testing.assert_allclose(bn.moving_mean.numpy(), a.mean(axis=0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(bn.moving_variance.numpy(), a.var(axis=0), rtol=1e-4, atol=1e-5)
