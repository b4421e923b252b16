"""Activations folded into the Conv/Dense output cast: what is folded, what is not, and
that the folded design still computes exactly what QKeras computes."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("tensorflow").keras
L = keras.layers


def _qmodel(branch: bool = False, act: str = "quantized_relu(8,2)", seed: int = 0):
    """QConv2D -> QActivation -> pool -> QDense -> QActivation -> QDense; with ``branch`` the
    first conv is also read by an Add (so its ReLU must stay a layer of its own)."""
    from qkeras import QActivation, QConv2D, QDense

    keras.utils.set_random_seed(seed)
    q = dict(kernel_quantizer="quantized_bits(6,0,alpha=1)", bias_quantizer="quantized_bits(6,0,alpha=1)")
    i = keras.Input((8, 8, 1), name="img")
    c = QConv2D(4, 3, padding="same", name="conv", **q)(i)
    h = QActivation(act, name="act")(c)
    if branch:
        h = L.Add(name="add")([h, c])
        h = QActivation("quantized_relu(8,3)", name="act2")(h)
    h = L.MaxPooling2D(2, name="pool")(h)
    h = L.Flatten(name="flat")(h)
    h = QDense(12, name="fc", **q)(h)
    h = QActivation("quantized_relu(8,2)", name="fc_act")(h)
    out = QDense(10, name="logits", **q)(h)
    m = keras.Model(i, out, name="folded")
    rng = np.random.default_rng(seed)
    m.set_weights([rng.uniform(-1, 1, w.shape).astype("float32") for w in m.get_weights()])
    return m


def _x(n=16, seed=1):
    return (np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 1)) / 256).astype("float32")


def test_foldable_pairs_only_where_the_activation_is_the_sole_reader():
    from fpgacnn.hls.fuse import foldable_activations
    from fpgacnn.quant.graph import layer_graph

    assert foldable_activations(layer_graph(_qmodel())) == {"act": "conv", "fc_act": "fc"}
    # conv also feeds the Add: its exact value is needed there, so only the dense pair folds;
    # act2 reads an Add, which has no output cast to fold into
    assert foldable_activations(layer_graph(_qmodel(branch=True))) == {"fc_act": "fc"}


def test_folded_precisions_keep_the_accumulator_exact():
    from fpgacnn.hls.precision import Fixed, layer_precisions

    m = _qmodel()
    inp = Fixed(8, 0, False)
    plain = {lp.name: lp for lp in layer_precisions(m, inp, fold_activations=False)}
    folded = {lp.name: lp for lp in layer_precisions(m, inp)}
    for producer, act in (("conv", "act"), ("fc", "fc_act")):
        assert folded[producer].result == plain[act].result == folded[act].result
        assert folded[producer].accum == plain[producer].accum == plain[producer].result
        assert folded[producer].info["activation_folded"] == act and folded[act].info["folded_into"] == producer
    assert folded["logits"].result == plain["logits"].result


def _design_layers(m, fold):
    from fpgacnn.estimate.design import Design, convert, prepare

    hls_model = convert(prepare(m, x=_x()), Design("xc7z020clg400-1", 100.0, fold_activations=fold))
    return {ly.name: ly.class_name for ly in hls_model.get_layers()}


def test_identity_activations_leave_the_hls_graph():
    folded, plain = _design_layers(_qmodel(), True), _design_layers(_qmodel(), False)
    assert plain["act"] == plain["fc_act"] == "Activation"
    assert "act" not in folded and "fc_act" not in folded
    assert set(plain) - set(folded) == {"act", "fc_act"}
    branch = _design_layers(_qmodel(branch=True), True)
    assert "act" in branch and "act2" in branch and "fc_act" not in branch


def test_relu_on_a_signed_or_wider_input_is_not_an_identity():
    from fpgacnn.estimate.design import Design, convert, prepare
    from fpgacnn.hls.fuse import RemoveIdentityActivation

    hls_model = convert(prepare(_qmodel(), x=_x()), Design("xc7z020clg400-1", 100.0, fold_activations=False))
    rule = RemoveIdentityActivation()
    acts = [ly for ly in hls_model.get_layers() if ly.class_name == "Activation"]
    assert acts and not any(rule.match(ly) for ly in acts)  # each reads a signed, wider accumulator
    assert not any(rule.match(ly) for ly in hls_model.get_layers() if ly.class_name != "Activation")


def test_folding_saves_luts_in_the_estimate():
    from fpgacnn.estimate.design import Design, estimate_design

    m, x = _qmodel(), _x()
    est = {fold: estimate_design(m, Design("xc7z020clg400-1", 100.0, fold_activations=fold), x=x)
           for fold in (True, False)}
    assert est[True].total["LUT"] < est[False].total["LUT"]
    assert not [r for r in est[True].layers if r["class_name"] == "Activation"]
    # the rounding and saturation moved into the producers: charged there, not lost
    logic = {fold: next(r["LUT"] - r["fifo"]["LUT"] for r in est[fold].layers if r["name"] == "conv")
             for fold in est}
    assert logic[True] > logic[False]


@pytest.mark.slow
@pytest.mark.parametrize("act", ["quantized_relu(8,2)", "quantized_bits(8,2,alpha=1)"])
def test_folded_design_is_bit_exact(act, tmp_path):
    from fpgacnn.hls.csim import csim
    from fpgacnn.hls.generate import generate

    m, x = _qmodel(act=act), _x()
    project = generate(m, tmp_path / "p", x_test=x)
    assert project.manifest["project"]["folded_activations"] == ["act", "fc_act"]
    firmware = (tmp_path / "p" / "firmware" / f"{project.name}.cpp").read_text()
    assert "relu<" not in firmware  # no activation process left
    result = csim(project)
    assert result.bit_exact, result


def test_design_round_trips_the_switch():
    from fpgacnn.errors import InputError
    from fpgacnn.estimate.design import Design

    d = Design("xc7z020clg400-1", 100.0, fold_activations=False)
    assert Design.from_dict(d.to_dict()) == d and d.generate_options()["fold_activations"] is False
    assert Design.from_dict({"part": "xc7z020clg400-1"}).fold_activations is True  # older fit.json files
    with pytest.raises(InputError, match="fold_activations"):
        Design.from_dict({"part": "xc7z020clg400-1", "fold_activations": "yes"})


@pytest.mark.slow
@pytest.mark.parametrize("io_type", ["io_stream", "io_parallel"])
def test_activation_read_by_a_flatten_is_folded_exactly(io_type, tmp_path):
    """hls4ml builds Flatten as an alias of its input stream/array: with the activation gone
    it must alias the convolution's output instead (found by the fuzzer)."""
    from qkeras import QActivation, QConv2D, QDense

    from fpgacnn.hls.csim import csim
    from fpgacnn.hls.generate import generate

    keras.utils.set_random_seed(0)
    q = dict(kernel_quantizer="quantized_bits(6,0,alpha=1)", bias_quantizer="quantized_bits(6,0,alpha=1)")
    i = keras.Input((4, 4, 1), name="img")
    h = QConv2D(2, 1, name="conv", **q)(i)
    h = QActivation("quantized_relu(4,1)", name="act")(h)
    out = QDense(3, name="logits", **q)(L.Flatten(name="flat")(h))
    m = keras.Model(i, out)
    project = generate(m, tmp_path / "p", x_test=_x()[:, :4, :4], io_type=io_type)
    assert project.manifest["project"]["folded_activations"] == ["act"]
    assert csim(project).bit_exact
