"""fit / fits_part: the search for a design that fits a part, and why nothing fits when nothing does."""
from __future__ import annotations

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from fpgacnn.errors import BudgetError, InputError  # noqa: E402
from fpgacnn.estimate import Part  # noqa: E402
from fpgacnn.estimate import points as P  # noqa: E402
from fpgacnn.estimate.hardware import reuse_for_target, valid_reuse_factors  # noqa: E402

# trained_small_vgg (8/16 filters) at 8 bits, reuse factors for 20k fps: keep 1 needs ~18k LUT,
# keep 0.5 ~7k (ReLUs folded, shallow FIFOs); 80% of this part admits only the trimmed one.
TIGHT = Part("tight-board", dsp=20, bram_18k=60, lut=15_000, ff=50_000)


# ---- pure helpers (no TensorFlow) ---------------------------------------------------
@pytest.mark.parametrize("n_in,n_out", [(27, 16), (72, 8), (117, 13), (64, 32), (5, 7)])
def test_valid_reuse_factors_match_hls4ml(n_in, n_out):
    from hls4ml.backends import get_backend

    assert valid_reuse_factors(n_in, n_out) == get_backend("Vivado").get_valid_reuse_factors(n_in, n_out)


def test_reuse_slows_fast_layers_to_the_slowest():
    geometry = {"conv1": (27, 16, 1156), "conv2": (144, 32, 324), "fc": (512, 10, 1)}
    reuse = reuse_for_target(geometry, 20_000)
    assert reuse["conv1"] < reuse["conv2"] < reuse["fc"]  # fewer pixels -> more reuse
    for name, (n_in, n_out, px) in geometry.items():
        assert reuse[name] in valid_reuse_factors(n_in, n_out)
        cycles = (px + 1) * reuse[name] if px > 1 else px + reuse[name]
        assert cycles <= 20_000
    assert reuse_for_target(geometry, 100)["conv1"] == 1  # below the slowest stage: no reuse at all
    assert reuse_for_target(geometry, 20_000, reuse_grid=(1, 2, 4))["fc"] == 4  # the grid caps it
    assert reuse_for_target(geometry, 20_000, reuse_grid=(1, 3))["fc"] == 1  # 3 does not divide 512 x 10


def _row(keep, bits, acc, used_lut, fits=True, stage="finetuned"):
    return {"keep": keep, "bits": bits, "stage": stage, "fits": fits, "accuracy": acc,
            "used": {"DSP": 0, "BRAM_18K": 10, "LUT": used_lut, "FF": 100},
            "budget": {"DSP": 176, "BRAM_18K": 224, "LUT": 42_560, "FF": 85_120},
            "ii_cycles": 1000, "budget_ii": 3_333_333, "pareto": False,
            "peak": used_lut / 42_560}


def test_pareto_front_and_maximal_points():
    rows = [_row(1.0, 8, 0.90, 40_000), _row(0.5, 8, 0.85, 20_000), _row(0.5, 4, 0.80, 30_000),
            _row(0.25, 4, 0.95, 50_000, fits=False)]
    P.mark_pareto(rows)
    assert [r["pareto"] for r in rows] == [True, True, False, False]
    assert sorted(P.maximal([(1.0, 4), (0.5, 8), (0.5, 4), (1.0, 8)])) == [(1.0, 8)]
    assert sorted(P.maximal([(1.0, 4), (0.5, 8)])) == [(0.5, 8), (1.0, 4)]
    assert P.dominated_by((0.5, 8), [(0.25, 4)]) == (0.25, 4) and P.dominated_by((0.5, 8), [(1.0, 4)]) is None


def test_screening_ranks_by_accuracy_only_above_chance():
    def screened(keep, bits, acc):
        return {"keep": keep, "bits": bits, "accuracy_ptq": acc}

    # 10 classes, 5000 images: chance 0.1 +- 2 standard errors (0.0085)
    rows = [screened(0.1, 8, 0.105), screened(0.15, 4, 0.102), screened(0.125, 6, 0.108), screened(0.2, 4, 0.35),
            screened(0.2, 8, 0.5)]
    order = [(r["keep"], r["bits"]) for r in P.screening_order(rows, 10, 5000)]
    assert order == [(0.2, 8), (0.2, 4), (0.15, 4), (0.125, 6), (0.1, 8)]
    # with 20 classes (chance 0.05) the same scores are informative: accuracy decides
    assert [(r["keep"], r["bits"]) for r in P.screening_order(rows[:3], 20, 10_000)] == \
        [(0.125, 6), (0.1, 8), (0.15, 4)]


def test_budget_message_names_resource_and_factor():
    part = Part("board", dsp=220, bram_18k=280, lut=53_200, ff=106_400)
    row = _row(0.25, 4, None, 1000, fits=False, stage="screen")
    row["used"]["DSP"] = 412
    msg = P.budget_message([row], part, 30, 100, 0.8)
    assert "DSP: needs 412, part allows 176 (80% of 220): 2.3x over" in msg
    assert "keep 0.25, 4 bits" in msg and "\n" not in msg


# ---- the search on a trained model --------------------------------------------------
@pytest.fixture(scope="module")
def tight_fit(trained_small_vgg, digits):
    from fpgacnn.estimate.fit import fit

    return fit(trained_small_vgg, digits.x_train, digits.y_train, TIGHT, fps=20_000, clock_mhz=100,
               x_val=digits.x_val, y_val=digits.y_val, keep_grid=(1.0, 0.5), bits_grid=(8,),
               finetune_epochs=2, max_finetune=1, representative=200)


def test_fit_finds_a_design_under_a_tight_part(tight_fit, digits):
    r = tight_fit
    assert r.keep == 0.5 and r.bits == 8
    assert r.estimate.fits(TIGHT, 0.8)
    assert r.fps >= 20_000 and r.latency_ms > 0
    untrimmed = [row for row in r.table if row["keep"] == 1.0]
    assert untrimmed and not untrimmed[0]["fits"] and untrimmed[0]["bottleneck"] in ("BRAM_18K", "LUT")
    chosen = [row for row in r.table if row["stage"] == "finetuned" and row["fits"]]
    assert chosen and chosen[0]["pareto"] and chosen[0]["accuracy"] == pytest.approx(r.accuracy)
    assert r.accuracy > 0.5  # trimmed to half and fine-tuned: far above the 10% of chance
    assert r.float_model.count_params() < 0.5 * 6_000  # the untrimmed net has ~9.6k parameters


def test_fit_result_design_reproduces_its_estimate(tight_fit):
    import json

    from fpgacnn.estimate.design import estimate_design

    r = tight_fit
    again = estimate_design(r.qmodel, r.design, input_type=r.input_type, part=TIGHT)
    assert again.total == r.estimate.total
    names = {ly.name for ly in r.qmodel.layers}
    assert set(r.design.layer_reuse) <= names and max(r.design.layer_reuse.values()) > 1
    d = json.loads(json.dumps(r.to_dict()))
    assert d["keep"] == 0.5 and d["estimate"]["total"] == r.estimate.total and len(d["table"]) >= 3


def test_fit_model_has_batchnorm_statistics_of_the_representative_images(tight_fit, digits):
    """Trimmed and fine-tuned, the chosen model normalises with its own statistics, not the
    untrimmed network's (which put a trimmed VGG at chance) nor those of the training views."""
    import numpy as np
    from tensorflow import keras

    rng = np.random.default_rng(0)  # fit's seeded choice of representative images
    x_rep = digits.x_train[np.sort(rng.permutation(len(digits.x_train))[:200])]
    m = tight_fit.float_model
    bns = [ly for ly in m.layers if type(ly).__name__ == "BatchNormalization"]
    assert bns
    for bn in bns:
        a = keras.Model(m.inputs, bn.input)(x_rep, training=False).numpy().reshape(-1, bn.input.shape[-1])
        np.testing.assert_allclose(bn.moving_mean.numpy(), a.mean(axis=0), rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(bn.moving_variance.numpy(), a.var(axis=0), rtol=1e-3, atol=1e-4)


def test_fit_result_generates_exactly_its_design(tight_fit, digits, tmp_path):
    from fpgacnn.estimate.estimator import TOTAL_KEYS

    r = tight_fit
    proj = r.generate(tmp_path / "p", x_test=digits.x_test[:4], y_test=digits.y_test[:4])
    mf = proj.manifest
    assert mf["project"]["layer_reuse"] == r.design.layer_reuse and len(set(r.design.layer_reuse.values())) > 1
    assert mf["project"]["layer_strategy"] == r.design.layer_strategy
    assert mf["project"]["part"] == "tight-board" and mf["project"]["clock_period_ns"] == 10.0
    assert mf["input"] == r.input_type.manifest() and mf["model"]["params"] == r.qmodel.count_params()
    assert mf["estimate"]["total"] == {k: int(r.estimate.total[k]) for k in TOTAL_KEYS}  # the design estimated


def test_finetune_options_reach_the_distillation(trained_small_vgg, digits, monkeypatch):
    import fpgacnn.distill
    from fpgacnn.estimate.fit import fit

    with pytest.raises(InputError, match="finetune_options must be a dict with keys from"):
        fit(trained_small_vgg, digits.x_train, digits.y_train, "xc7z020", finetune_options={"augmentation": "flip"})
    seen, real = [], fpgacnn.distill.finetune

    def spy(*args, **kwargs):
        seen.append({k: kwargs.get(k) for k in ("augment", "lr_schedule")})
        return real(*args, **kwargs)

    monkeypatch.setattr(fpgacnn.distill, "finetune", spy)
    r = fit(trained_small_vgg, digits.x_train, digits.y_train, "xc7z020clg400-1", fps=1000, keep_grid=(0.5,),
            bits_grid=(8,), finetune_epochs=1, max_finetune=1, representative=100,
            finetune_options={"augment": "shift", "lr_schedule": "cosine"})
    # the distillation gets them; quantization-aware training (distilled from the student) keeps its recipe
    assert seen == [{"augment": "shift", "lr_schedule": "cosine"}, {"augment": None, "lr_schedule": None}]
    assert r.design.part == "xc7z020clg400-1"  # the ordering code as given: what the vendor tools need


@pytest.mark.parametrize("bad,match", [
    ({"ranking": "layer", "cost": "sqrt_params"}, "with global ranking"),
    ({"rounds": 0}, r"trim_options\['rounds'\] must be an integer >= 1"),
    ({"criterion": "taylor"}, "unknown trim criterion 'taylor'"),
    ({"allocation": "even"}, "unknown trim criterion 'even'"),
    ({"keep": 0.5}, "trim_options must be a dict with keys from"),
])
def test_bad_trim_options_fail_before_any_work(trained_small_vgg, digits, bad, match):
    from fpgacnn.estimate.fit import fit

    with pytest.raises(InputError, match=match):
        fit(trained_small_vgg, digits.x_train, digits.y_train, "xc7z020", trim_options=bad)


def test_trim_options_choose_scoring_allocation_and_rounds(trained_small_vgg, digits, monkeypatch):
    import fpgacnn.distill
    import fpgacnn.quantization
    from fpgacnn.estimate.fit import fit
    from fpgacnn.trimming import ChannelGraph, trim_model

    epochs, real = [], fpgacnn.distill.finetune

    def spy(*args, **kwargs):
        epochs.append(kwargs["epochs"])
        return real(*args, **kwargs)

    qat, real_quantize = [], fpgacnn.quantization.quantize

    def spy_quantize(*args, **kwargs):
        if kwargs.get("y") is not None:
            qat.append(kwargs["epochs"])
        return real_quantize(*args, **kwargs)

    monkeypatch.setattr(fpgacnn.distill, "finetune", spy)
    monkeypatch.setattr(fpgacnn.quantization, "quantize", spy_quantize)
    r = fit(trained_small_vgg, digits.x_train, digits.y_train, "xc7z020", fps=1000, keep_grid=(0.5,),
            bits_grid=(8,), finetune_epochs=3, qat_epochs=1, max_finetune=1, representative=100,
            trim_options={"criterion": "l1", "ranking": "global", "min_kernels": 2, "rounds": 2})
    assert epochs[:2] == [2, 2]  # two re-scored cuts, 3 epochs spread over them (rounded up)
    assert qat == [1]  # then quantization-aware training for its own number of epochs
    widths = [g.size for g in ChannelGraph(r.float_model).groups if g.trimmable]
    full = [g.size for g in ChannelGraph(trained_small_vgg).groups if g.trimmable]
    assert sum(widths) <= math.ceil(0.5 * sum(full)) and min(widths) >= 2
    # one threshold over all layers: the layers are not all cut by the same fraction
    assert len({round(w / f, 2) for w, f in zip(widths, full)}) > 1
    # the cuts reach the allocation that was screened (a one-shot cut of the original model;
    # L1 needs no data), whatever re-scoring the fine-tuned weights would have chosen
    screened = trim_model(trained_small_vgg, None, 0.5, criterion="l1", ranking="global", min_kernels=2).model
    assert widths == [g.size for g in ChannelGraph(screened).groups if g.trimmable]


def test_allocation_plans_the_widths_and_the_criterion_picks_the_kernels(trained_small_vgg, digits):
    import numpy as np

    from fpgacnn.estimate.fit import fit
    from fpgacnn.trimming import ChannelGraph, trim_model

    opts = {"ranking": "global", "cost": "sqrt_params", "min_kernels": 2}
    r = fit(trained_small_vgg, digits.x_train, digits.y_train, "xc7z020", fps=1000, keep_grid=(0.5,),
            bits_grid=(8,), finetune_epochs=0, max_finetune=1, representative=100,
            trim_options={"criterion": "l1", "allocation": "random", **opts})

    def widths(m):
        return {g.producers[0]: g.size for g in ChannelGraph(m).groups if g.trimmable}

    planned = widths(trim_model(trained_small_vgg, None, 0.5, criterion="random", **opts).model)
    own = widths(trim_model(trained_small_vgg, None, 0.5, criterion="l1", **opts).model)
    assert planned != own  # otherwise this test could not tell the planner from the criterion
    assert widths(r.float_model) == planned
    # inside each layer the kernels kept are L1's choice: the largest filters, in their order
    conv = next(ly for ly in trained_small_vgg.layers if ly.name in planned and planned[ly.name] < ly.filters)
    w = conv.get_weights()[0]
    top = np.sort(np.argsort(-np.abs(w).sum(axis=(0, 1, 2)), kind="stable")[: planned[conv.name]])
    np.testing.assert_array_equal(r.float_model.get_layer(conv.name).get_weights()[0], w[..., top])


def test_nothing_fits_raises_budget_error_naming_the_resource(trained_small_vgg, digits):
    from fpgacnn.estimate.fit import fit

    tiny = Part("tiny", dsp=220, bram_18k=280, lut=1_000, ff=106_400)
    with pytest.raises(BudgetError, match=r"LUT: needs [\d,]+, part allows 800 \(80% of 1,000\): [\d.]+x over"):
        fit(trained_small_vgg, digits.x_train, digits.y_train, tiny, fps=1000, keep_grid=(1.0, 0.5),
            bits_grid=(8, 4), finetune_epochs=0, representative=100)
    assert issubclass(BudgetError, InputError)


def test_impossible_frame_rate_names_throughput(trained_small_vgg, digits):
    from fpgacnn.estimate.fit import fit

    with pytest.raises(BudgetError, match=r"throughput: needs [\d,]+ cycles per image"):
        fit(trained_small_vgg, digits.x_train, digits.y_train, "xc7z020", fps=1e7, keep_grid=(0.5,),
            bits_grid=(4,), finetune_epochs=0, representative=100)


def test_fits_part_is_a_trimmer_budget(trained_small_vgg, digits):
    from fpgacnn.estimate.fit import fits_part

    roomy = fits_part(Part("roomy", dsp=1000, bram_18k=1000, lut=10**6, ff=10**6), fps=20_000, bits=8,
                      x=digits.x_train[:100])
    assert roomy(trained_small_vgg) is True and roomy.last.fits
    assert "roomy" in roomy.__name__
    tight = fits_part(TIGHT, fps=20_000, bits=8, x=digits.x_train[:100])
    assert tight(trained_small_vgg) is False
    assert tight.last.estimate.total["BRAM_18K"] > math.floor(0.8 * TIGHT.bram_18k) or \
        tight.last.estimate.total["LUT"] > 0.8 * TIGHT.lut
    with pytest.raises(InputError):
        fits_part("xc7z020", fps=0)
