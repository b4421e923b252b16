"""AXI4-Stream top level: camera frames through the wrapper give QKeras' class, in a project that moves."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
sys.path.insert(0, str(Path(__file__).parent))  # the 1-channel fixture model lives in test_render

N_SAMPLES = 24


def rgb_qmodel():
    """6x6 RGB input with signed values: exercises channel packing and a non-zero pixel offset."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu
    from tensorflow.keras.layers import Flatten, Input

    tf.random.set_seed(1)
    q = dict(kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1))
    inp = Input((6, 6, 3), name="camera")
    x = QConv2D(3, (3, 3), name="conv", **q)(inp)
    x = QActivation(quantized_relu(8, 2), name="relu")(x)
    x = Flatten(name="flat")(x)
    x = QDense(5, name="dense", **q)(x)
    return tf.keras.Model(inp, x, name="rgb")


def _seeded(model, seed):
    """Weights from a seeded generator: the same model whatever TensorFlow built before in this process."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0.0, 0.3, size=w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def _pixels(shape, rng, signed):
    p = rng.integers(0, 256, size=(N_SAMPLES, *shape))
    p *= rng.random((N_SAMPLES, *shape)) < rng.uniform(0.05, 1.0, size=(N_SAMPLES,) + (1,) * len(shape))  # sparse..dense
    # on the 8-bit pixel grid of ap_ufixed<8,0> (p/256) or ap_fixed<8,1> (p/128 - 1)
    return (p / 128.0 - 1.0 if signed else p / 256.0).astype(np.float32)


def _generate(tmp_path_factory, kind):
    from fpgacnn.hls.generate import generate
    from test_render import tiny_qmodel

    rng = np.random.default_rng(7)
    if kind == "io_stream-gray":
        qmodel, io_type, x = _seeded(tiny_qmodel(), 1), "io_stream", _pixels((8, 8, 1), rng, signed=False)
    else:
        qmodel, io_type, x = _seeded(rgb_qmodel(), 2), "io_parallel", _pixels((6, 6, 3), rng, signed=True)
    out = tmp_path_factory.mktemp("axi") / "prj"
    proj = generate(qmodel, out, io_type=io_type, x_test=x, name="myproject", axi_stream=True)
    return proj, qmodel.predict(x, verbose=0)


@pytest.fixture(scope="module", params=["io_stream-gray", "io_parallel-rgb"])
def axi_project(request, tmp_path_factory):
    return _generate(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def axi_run(axi_project):
    from fpgacnn.hls.csim import csim

    proj, _ = axi_project
    return csim(proj, jobs=2)


def test_manifest_and_input_mapping(axi_project):
    proj, _ = axi_project
    mf = proj.manifest
    assert mf["project"]["axi_stream"] is True
    header = (proj.dir / "firmware/myproject_axis.h").read_text()
    channels = mf["model"]["input_shape"][2]
    assert f"typedef ap_axiu<{8 * channels}, 0, 0, 0> pixel_beat_t;" in header
    assert f"const scale_t scale = {mf['input']['scale']!r};" in header
    assert f"const offset_t offset = {mf['input']['offset']!r};" in header


def test_class_index_is_qkeras_argmax_for_every_vector(axi_project, axi_run):
    _, logits = axi_project
    r = axi_run
    assert r.bit_exact and r.passed, r.to_dict()
    ax = r.axis
    assert ax is not None and ax["passed"], ax
    assert ax["frames"] == ax["streamed"] == N_SAMPLES and ax["skipped"] == 0
    assert ax["classes"] == logits.argmax(axis=1).tolist()
    assert ax["score_exact"] is True and ax["frame_errors"] == 0 and ax["class_mismatches"] == 0
    assert len(set(ax["classes"])) > 1  # the check can tell classes apart on these vectors


def test_wrapper_testbench_catches_a_wrong_class(axi_project, axi_run, tmp_path):
    from fpgacnn.hls.csim import csim

    proj, logits = axi_project
    copy = tmp_path / "prj"
    shutil.copytree(proj.dir, copy)  # with csim/: the cached binaries are reused
    exp = copy / "tb_data/tb_output_predictions.dat"
    rows = [ln.split() for ln in exp.read_text().splitlines()]
    top = int(np.argmax(logits[0]))
    other = (top + 1) % logits.shape[1]
    rows[0][top], rows[0][other] = rows[0][other], rows[0][top]  # frame 0 now expects another class
    exp.write_text("".join(" ".join(r) + "\n" for r in rows))

    r = csim(copy, jobs=1)
    assert r.axis["cached_build"] is True
    assert r.axis["class_mismatches"] == 1 and r.axis["passed"] is False and r.passed is False

    # the testbench's own check, as vendor C simulation and co-simulation run it
    run = subprocess.run(["csim/myproject_axis_tb", "tb_data/tb_input_features.dat", "csim/x.dat", "0", "-1",
                          "tb_data/tb_output_predictions.dat"], cwd=copy, capture_output=True, text=True)
    assert run.returncode == 1 and "MISMATCH frame 0" in run.stderr, run.stdout + run.stderr


@pytest.mark.skipif(not shutil.which("make"), reason="make not installed")
def test_make_csim_after_moving_the_project(axi_project, axi_run, tmp_path):
    proj, _ = axi_project
    if proj.manifest["project"]["io_type"] != "io_stream":
        pytest.skip("one full rebuild is enough: the Makefile does not depend on io_type")
    moved = tmp_path / "moved" / "elsewhere"
    moved.parent.mkdir()
    shutil.copytree(proj.dir, tmp_path / "orig", ignore=shutil.ignore_patterns("csim"))
    shutil.move(str(tmp_path / "orig"), str(moved))
    r = subprocess.run(["make", "csim"], cwd=moved, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "fpgacnn_tb: bit-exact" in r.stdout
    assert f"myproject_axis_tb: {N_SAMPLES} frames, {N_SAMPLES} streamed and checked" in r.stdout
    assert "0 failed, framing ok" in r.stdout
    for name in ("Makefile", "hls_config.cfg", "fpgacnn_synth.tcl", "firmware/myproject_axis.h"):
        assert str(tmp_path) not in (moved / name).read_text()
