"""Estimator, parts catalogue and vendor report parsing (fast: conversion only, no HLS)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fpgacnn.errors import InputError  # noqa: E402
from fpgacnn.estimate import Estimate, Part, estimate_keras, get_part, known_parts, parse_report  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REPORTS = SHARED / "reference-reports"


# ---- parts -------------------------------------------------------------------------
@pytest.mark.parametrize("code,name", [("xc7z020clg400-1", "xc7z020"), ("xcu250-figd2104-2L-e", "xcu250"),
                                       ("xczu9eg-ffvb1156-2-e", "xczu9eg"), ("XC7A35T-1CPG236C", "xc7a35t"),
                                       ("xc7z010", "xc7z010"), ("xczu3eg-sbva484-1-e", "xczu3eg")])
def test_part_lookup(code, name):
    assert get_part(code).name == name


def test_part_numbers():
    z = get_part("xc7z020clg400-1")
    assert (z.dsp, z.bram_18k, z.lut, z.ff, z.dsp_type) == (220, 280, 53_200, 106_400, "DSP48E1")
    u = get_part("xcu250")
    assert (u.dsp, u.bram_18k, u.lut, u.ff, u.uram, u.dsp_type) == (12_288, 5_376, 1_728_000, 3_456_000, 1_280,
                                                                    "DSP48E2")
    for n in ("xc7z010", "xc7z020", "xc7z045", "xc7a35t", "xc7a100t", "xczu3eg", "xczu7ev", "xczu9eg", "xcu250"):
        assert n in known_parts()


def test_unknown_part_lists_known():
    with pytest.raises(InputError, match="xc7z020"):
        get_part("xc9z999-foo")
    with pytest.raises(InputError):
        get_part("xc7z0200")  # not a prefix match of xc7z020


def test_custom_part():
    p = Part("tiny", dsp=10, bram_18k=20, lut=1000, ff=2000)
    assert get_part(p) is p and p.capacity()["DSP"] == 10
    with pytest.raises(InputError):
        Part("bad", dsp=-1, bram_18k=0, lut=0, ff=0)


# ---- estimator ---------------------------------------------------------------------
def _dense_model(w_bits=None, sparsity=0.0, seed=0):
    import tensorflow as tf
    from tensorflow.keras import layers as KL

    tf.keras.utils.set_random_seed(seed)
    m = tf.keras.Sequential([KL.Input((16,)), KL.Dense(8, name="fc", kernel_initializer="glorot_normal"),
                             KL.Activation("relu", name="act")])
    if sparsity:
        w, b = m.get_layer("fc").get_weights()
        w[np.abs(w) < np.quantile(np.abs(w), sparsity)] = 0
        m.get_layer("fc").set_weights([w, b])
    return m


def _cnn():
    import tensorflow as tf
    from tensorflow.keras import layers as KL

    tf.keras.utils.set_random_seed(0)
    return tf.keras.Sequential([KL.Input((12, 12, 3)), KL.Conv2D(8, 3, name="c1"), KL.Activation("relu"),
                                KL.MaxPooling2D(2), KL.Flatten(), KL.Dense(10, name="d1"),
                                KL.Activation("softmax")])


@pytest.fixture(scope="module")
def cnn_est():
    return estimate_keras(_cnn(), part="xc7z020clg400-1", clock_mhz=100)


def test_estimate_totals_and_roundtrip(cnn_est):
    t = cnn_est.total
    assert set(t) >= {"DSP", "BRAM_18K", "LUT", "FF", "latency_cycles", "ii_cycles"}
    assert t["DSP"] > 0 and t["LUT"] > 0 and t["latency_cycles"] >= 144  # 12x12 pixels streamed in
    assert t["ii_cycles"] >= 144
    d = json.loads(cnn_est.to_json())
    back = Estimate.from_dict(d)
    assert back.total == cnn_est.total and back.layers == cnn_est.layers and back.part == cnn_est.part
    assert cnn_est.throughput_fps == pytest.approx(100e6 / t["ii_cycles"])


def test_reuse_factor_monotonic():
    m = _cnn()
    ests = [estimate_keras(m, reuse_factor=rf, part="xc7z020") for rf in (1, 2, 4)]
    dsp = [e.total["DSP"] for e in ests]
    lat = [e.total["latency_cycles"] for e in ests]
    assert dsp[0] > dsp[1] > dsp[2]
    assert lat[0] < lat[1] < lat[2]


def test_resource_strategy_and_io_parallel():
    m = _dense_model()
    r = estimate_keras(m, strategy="Resource", reuse_factor=4, io_type="io_parallel", part="xc7z020")
    lat = estimate_keras(m, io_type="io_parallel", part="xc7z020")
    assert r.total["DSP"] < lat.total["DSP"]
    assert r.total["ii_cycles"] == 4 and lat.total["ii_cycles"] == 1


def test_zero_weights_reduce_dsp():
    dense = estimate_keras(_dense_model(), io_type="io_parallel", part="xc7z020").total["DSP"]
    sparse = estimate_keras(_dense_model(sparsity=0.5), io_type="io_parallel", part="xc7z020").total["DSP"]
    assert sparse < dense * 0.7


def test_narrow_bits_use_no_dsp():
    import hls4ml

    m = _dense_model()
    cfg = hls4ml.utils.config_from_keras_model(m, granularity="name", default_precision="ap_fixed<6,2>")
    for lc in cfg["LayerName"].values():
        if isinstance(lc.get("Precision"), dict):
            for k in lc["Precision"]:
                if k in ("weight", "bias", "result", "accum"):
                    lc["Precision"][k] = "ap_fixed<6,2>"
    e = estimate_keras(m, config=cfg, io_type="io_parallel", part="xc7z020")
    assert e.total["DSP"] == 0 and e.total["LUT"] > 0


def test_fits_and_bottleneck(cnn_est):
    assert cnn_est.fits("xcu250")
    tiny = Part("tiny", dsp=1, bram_18k=100, lut=10**6, ff=10**6)
    assert not cnn_est.fits(tiny)
    b = cnn_est.bottleneck(tiny)
    assert b["resource"] == "DSP" and b["shortfall"] == cnn_est.total["DSP"] - 0 and not b["fits"]
    u = cnn_est.utilization("xc7z020")
    assert u["DSP"] == pytest.approx(cnn_est.total["DSP"] / 220)


# ---- vendor reports ----------------------------------------------------------------
needs_shared = pytest.mark.skipif(not REPORTS.is_dir(), reason="shared reference reports not present")


@needs_shared
@pytest.mark.parametrize("folder,dsp_hls,dsp_viv", [("svhn-cnn-pruned", 5414, 5386),
                                                    ("svhn-cnn-pruned-quantized", 340, 353)])
def test_parse_svhn_reports(folder, dsp_hls, dsp_viv):
    hls = parse_report(REPORTS / folder / "csynth.rpt")
    assert hls["total"]["latency_cycles"] == 1044 and hls["total"]["ii_cycles"] == 1028
    assert hls["total"]["DSP"] == dsp_hls and hls["total"]["BRAM_18K"] == 100
    assert sum(i["DSP"] for i in hls["instances"]) == dsp_hls
    conv = [i for i in hls["instances"] if i["instance"].startswith("conv_2d_cl") and "config2_" in i["instance"]]
    assert conv and conv[0]["latency_cycles"] == 1027
    viv = parse_report(REPORTS / folder / "vivado_synth.rpt")
    assert viv["total"]["DSP"] == dsp_viv


@needs_shared
def test_parse_baseline_json():
    r = parse_report(REPORTS / "hls4ml-unit-baselines" / "Vivado-2020.1-test_keras_api_test_dense_io_parallel-Vivado.json")
    assert r["total"] == {"DSP": 2, "BRAM_18K": 1, "LUT": 190, "FF": 89, "latency_cycles": 2, "ii_cycles": 1}


def test_parse_missing_report(tmp_path):
    with pytest.raises(InputError):
        parse_report(tmp_path / "nope.rpt")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(InputError):
        parse_report(tmp_path / "x.txt")


def test_parse_csynth_xml(tmp_path):
    x = tmp_path / "csynth.xml"
    x.write_text("""<profile><UserAssignments><Part>xc7z020-clg400-1</Part></UserAssignments>
<PerformanceEstimates><SummaryOfOverallLatency><Best-caseLatency>10</Best-caseLatency>
<Worst-caseLatency>12</Worst-caseLatency><Interval-min>5</Interval-min><Interval-max>6</Interval-max>
</SummaryOfOverallLatency></PerformanceEstimates><AreaEstimates><Resources><BRAM_18K>3</BRAM_18K>
<DSP>7</DSP><FF>100</FF><LUT>200</LUT><URAM>0</URAM></Resources></AreaEstimates></profile>""")
    r = parse_report(x)
    assert r["total"] == {"DSP": 7, "BRAM_18K": 3, "LUT": 200, "FF": 100, "latency_cycles": 12, "ii_cycles": 6,
                          "URAM": 0}
