"""Project templates: every file rendered, deterministic, and immune to hostile names."""
from __future__ import annotations

import copy
import json
import re
import shutil

import pytest

from fpgacnn.errors import InputError

RENDERED = ["Makefile", "README.md", "hls_config.cfg", "fpgacnn_synth.tcl", "fpgacnn_tb.cpp"]
HOSTILE = 'ev"il\' $(rm -rf x) `rm -rf y` ; rm -rf z\n# Heading\r\n| a | b |\t<script>../../etc/passwd */ /* \\ ${HOME} [x](http://e)'


def tiny_qmodel():
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu
    from tensorflow.keras.layers import Flatten, Input, MaxPooling2D

    tf.random.set_seed(0)
    q = dict(kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1))
    inp = Input((8, 8, 1), name="input_1")
    x = QConv2D(4, (3, 3), name="conv", **q)(inp)
    x = QActivation(quantized_relu(8), name="relu")(x)
    x = MaxPooling2D((2, 2), name="pool")(x)
    x = Flatten(name="flat")(x)
    x = QDense(10, name="dense", **q)(x)
    return tf.keras.Model(inp, x, name="tiny")


def write_hls_project(model, out_dir, io_type="io_stream", backend="Vitis"):
    import hls4ml

    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
    hm = hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(out_dir), io_type=io_type, backend=backend,
        part="xc7z020clg400-1", project_name="myproject")
    hm.write()
    return hm


def base_manifest(samples=0, float_file=None, labels_file=None):
    return {
        "fpgacnn_version": "0.1.0",
        "project": {"name": "myproject", "display_name": "Tiny digits", "top": "myproject", "backend": "Vitis",
                    "io_type": "io_stream", "part": "xc7z020clg400-1", "clock_period_ns": 10,
                    "strategy": "Latency", "reuse_factor": 1},
        "model": {"name": "tiny", "sha256": "0" * 64, "params": 410, "input_shape": [8, 8, 1], "n_outputs": 10,
                  "classes": [str(i) for i in range(10)]},
        "input": {"precision": "ap_fixed<16,6>", "scale": 0.00390625, "offset": 0.0,
                  "note": "pixel / 256, on the 2^-8 grid"},
        "output": {"precision": "ap_fixed<23,8>", "softmax": "host"},
        "precision": {"layers": [
            {"name": "conv", "hls_name": "conv", "class": "QConv2D", "weight": "ap_fixed<8,1>",
             "bias": "ap_fixed<8,1>", "result": "ap_fixed<29,12>", "accum": "ap_fixed<29,12>"},
            {"name": "dense", "hls_name": "dense", "class": "QDense", "weight": "ap_fixed<8,1>",
             "bias": "ap_fixed<8,1>", "result": "ap_fixed<23,8>", "accum": "ap_fixed<23,8>"}]},
        "testbench": {"samples": samples, "inputs": "tb_data/tb_input_features.dat",
                      "expected": "tb_data/tb_output_predictions.dat", "float": float_file, "labels": labels_file},
    }


@pytest.fixture(scope="module")
def hls_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("render") / "prj"
    write_hls_project(tiny_qmodel(), d)
    return d


def render_copy(src, dst, manifest):
    from fpgacnn.hls.render import render_project_files

    shutil.copytree(src, dst)
    paths = render_project_files(dst, manifest)
    return paths, {p.name: p.read_text() for p in paths}


def test_render_all_files_deterministic(hls_dir, tmp_path):
    paths, first = render_copy(hls_dir, tmp_path / "a", base_manifest())
    assert sorted(p.name for p in paths) == sorted(RENDERED)
    assert all(p.parent == tmp_path / "a" for p in paths)
    _, second = render_copy(hls_dir, tmp_path / "b", base_manifest())
    assert first == second
    for name, text in first.items():
        assert str(tmp_path) not in text, name  # no absolute paths
        assert not re.search(r"20\d\d-\d\d-\d\d", text), name  # no dates
    mk = first["Makefile"]
    for target in ("csim:", "csynth:", "cosim:", "export:", "synth:", "clean:"):
        assert re.search(rf"^{target}", mk, re.M), target
    assert "-O2 -std=c++17 -Ifirmware -Ifirmware/ap_types" in mk and "-O0" not in mk
    assert "v++ -c --mode hls --config hls_config.cfg" in mk
    assert "vitis-run --mode hls --cosim --config hls_config.cfg" in mk
    assert "vitis-run --mode hls --package --config hls_config.cfg" in mk
    assert 'vitis_hls -f fpgacnn_synth.tcl "$(3)"' in mk
    cfg = first["hls_config.cfg"]
    assert "part=xc7z020clg400-1" in cfg and "syn.top=myproject" in cfg and "clock=10ns" in cfg
    assert "syn.file=firmware/myproject.cpp" in cfg and "tb.file=fpgacnn_tb.cpp" in cfg
    assert "[hls]\nflow_target=vivado" in cfg and "package.output.format=ip_catalog" in cfg
    assert "cosim.argv=tb_data/tb_input_features.dat cosim_outputs.dat 0 10 tb_data/tb_output_predictions.dat" in cfg
    tcl = first["fpgacnn_synth.tcl"]
    assert "set_top myproject" in tcl and "export_design -format ip_catalog" in tcl and "cosim_design -argv" in tcl
    readme = first["README.md"]
    for needed in ("xc7z020clg400-1", "10 ns", "8 x 8 x 1", "410", "make csim", "make csynth", "make cosim",
                   "make export", "ap_fixed<16,6>", "argmax", "0.00390625"):
        assert needed in readme.replace("`", ""), needed
    tb = first["fpgacnn_tb.cpp"]
    assert "myproject(input_1, layer7_out);" in tb and "setprecision(17)" in tb
    assert "copy_data<double, input_t, 0, 8*8*1>(in, input_1)" in tb


@pytest.mark.parametrize("backend,tool,message", [
    ("Vivado", "vivado_hls", "vivado_hls not found"),
    ("Vitis", "vitis-run", "no AMD Vitis HLS found"),
])
def test_vendor_targets_without_the_tool(hls_dir, tmp_path, backend, tool, message):
    import subprocess

    mf = base_manifest()
    mf["project"]["backend"] = backend
    _, files = render_copy(hls_dir, tmp_path / "v", mf)
    if backend == "Vivado":
        assert 'vivado_hls -f fpgacnn_synth.tcl "$(2)"' in files["Makefile"]
        assert "v++" not in files["Makefile"]
    if not shutil.which("make"):
        pytest.skip("make not installed")
    if shutil.which(tool) or shutil.which("vitis_hls"):
        pytest.skip(f"{tool} is installed: the no-tool message cannot be seen")
    for target in ("csynth", "cosim", "export", "synth"):
        r = subprocess.run(["make", target], cwd=tmp_path / "v", capture_output=True, text=True)
        assert r.returncode != 0, target
        assert f"make {'csynth' if target == 'synth' else target}: {message}" in r.stderr, r.stderr


def test_hostile_names_cannot_change_meaning(hls_dir, tmp_path):
    _, clean = render_copy(hls_dir, tmp_path / "clean", base_manifest())
    mf = copy.deepcopy(base_manifest())
    mf["project"]["display_name"] = HOSTILE
    mf["model"]["name"] = HOSTILE
    mf["model"]["classes"] = [HOSTILE] * 10
    mf["input"]["note"] = HOSTILE
    mf["input"]["precision"] = HOSTILE
    mf["fpgacnn_version"] = HOSTILE
    for layer in mf["precision"]["layers"]:
        for key in layer:
            layer[key] = HOSTILE
    _, evil = render_copy(hls_dir, tmp_path / "evil", mf)
    # Only the README shows user text; the build files do not depend on it at all.
    for name in ("Makefile", "hls_config.cfg", "fpgacnn_synth.tcl", "fpgacnn_tb.cpp"):
        assert evil[name] == clean[name], name
    readme, ref = evil["README.md"], clean["README.md"]
    assert len(readme.splitlines()) == len(ref.splitlines())  # no injected lines
    headings = [ln for ln in readme.splitlines() if ln.startswith("#")]
    assert headings == [ln for ln in ref.splitlines() if ln.startswith("#")]
    unescaped_pipes = lambda ln: len(re.findall(r"(?<!\\)\|", ln))  # noqa: E731
    for a, b in zip(readme.splitlines(), ref.splitlines()):
        assert unescaped_pipes(a) == unescaped_pipes(b), a  # table structure intact
    assert "\r" not in readme
    # Outside code spans and code blocks (where text is literal), only escaped forms remain.
    prose = "\n".join(ln for ln in readme.splitlines() if not ln.startswith("    "))
    prose = re.sub(r"(?<!\\)`[^`\n]*`", "CODE", prose)
    for bad in (r"\$\(rm", r"`", r"<script", r"\]\(http", r"\$\{HOME", r"\*\_/"):
        assert not re.search(r"(?<!\\)" + bad, prose), bad


@pytest.mark.parametrize("field,value", [
    ("name", "../evil\"; rm -rf x"),
    ("part", "xc7z020 $(rm -rf x)"),
    ("backend", "Quartus"),
    ("io_type", "io_evil"),
    ("clock_period_ns", "5; rm"),
])
def test_bad_project_fields_rejected(hls_dir, tmp_path, field, value):
    from fpgacnn.hls.render import render_project_files

    mf = base_manifest()
    mf["project"][field] = value
    shutil.copytree(hls_dir, tmp_path / "p")
    with pytest.raises(InputError):
        render_project_files(tmp_path / "p", mf)


def test_hostile_hls4ml_testbench_rejected(hls_dir, tmp_path):
    from fpgacnn.hls.render import render_project_files

    d = tmp_path / "p"
    shutil.copytree(hls_dir, d)
    tb = d / "myproject_test.cpp"
    tb.write_text(tb.read_text().replace(
        "myproject(input_1,layer7_out);", 'myproject(input_1,layer7_out); system("rm -rf x");', 1))
    with pytest.raises(InputError, match="unexpected line"):
        render_project_files(d, base_manifest())
    assert not (d / "fpgacnn_tb.cpp").exists()


def test_missing_project_dir(tmp_path):
    from fpgacnn.hls.render import render_project_files

    with pytest.raises(InputError):
        render_project_files(tmp_path / "nope", base_manifest())
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        render_project_files(tmp_path / "empty", base_manifest())


def test_manifest_is_json_roundtrippable():
    json.dumps(base_manifest())


# ---------------------------------------------------------------- AXI4-Stream wrapper
AXIS_FILES = ["firmware/myproject_axis.h", "firmware/myproject_axis.cpp", "myproject_axis_tb.cpp",
              "firmware/ap_axi_sdata_csim.h"]


def axi_manifest():
    mf = base_manifest()
    mf["project"]["axi_stream"] = True
    mf["input"]["precision"] = "ap_ufixed<8,0>"
    mf["output"]["precision"] = "ap_fixed<20,5>"
    return mf


def test_axi_wrapper_files_and_top(hls_dir, tmp_path):
    paths, files = render_copy(hls_dir, tmp_path / "a", axi_manifest())
    rel = sorted(p.relative_to(tmp_path / "a").as_posix() for p in paths)
    assert rel == sorted(RENDERED + AXIS_FILES)
    assert not (hls_dir / "firmware/ap_types/ap_axi_sdata.h").exists()  # why the stand-in exists
    header = (tmp_path / "a/firmware/myproject_axis.h").read_text()
    assert "__has_include(<ap_axi_sdata.h>)" in header and '#include "ap_axi_sdata_csim.h"' in header
    assert "typedef ap_axiu<8, 0, 0, 0> pixel_beat_t;" in header
    assert "typedef ap_axiu<64, 0, 0, 0> result_beat_t;" in header
    wrapper = (tmp_path / "a/firmware/myproject_axis.cpp").read_text()
    for pragma in ("INTERFACE axis port=pixels", "INTERFACE axis port=result", "INTERFACE ap_ctrl_none port=return",
                   "DATAFLOW"):
        assert f"#pragma HLS {pragma}" in wrapper
    assert "myproject(core_in, core_out);" in wrapper
    cfg = files["hls_config.cfg"]
    assert "syn.top=myproject_axis" in cfg and "syn.file=firmware/myproject_axis.cpp" in cfg
    assert "tb.file=myproject_axis_tb.cpp" in cfg and "tb.file=fpgacnn_tb.cpp" not in cfg
    assert "set_top myproject_axis" in files["fpgacnn_synth.tcl"]
    assert "csim/$(NAME)_axis_tb" in files["Makefile"]
    assert "ap_axiu<64,0,0,0>" in files["README.md"].replace(" ", "")


@pytest.mark.parametrize("where,value", [
    (("project", "axi_stream"), "yes"),
    (("model", "input_shape"), [64]),
    (("model", "input_shape"), [8, 8, 0]),
    (("input", "precision"), "float"),
    (("input", "precision"), 'ap_ufixed<8,0>"; system("rm -rf x"); //'),
    (("input", "scale"), 0.1),
    (("input", "offset"), "1; rm"),
    (("output", "precision"), "ap_fixed<2000,5>"),
    (("model", "n_outputs"), "10"),
])
def test_axi_bad_manifest_rejected(hls_dir, tmp_path, where, value):
    from fpgacnn.hls.render import render_project_files

    mf = axi_manifest()
    mf[where[0]][where[1]] = value
    d = tmp_path / "p"
    shutil.copytree(hls_dir, d)
    with pytest.raises(InputError):
        render_project_files(d, mf)
    assert not (d / "Makefile").exists() and not (d / "firmware/myproject_axis.cpp").exists()


def test_axi_wrapper_ignores_hostile_display_text(hls_dir, tmp_path):
    _, clean = render_copy(hls_dir, tmp_path / "clean", axi_manifest())
    mf = axi_manifest()
    mf["project"]["display_name"] = HOSTILE
    mf["model"]["classes"] = [HOSTILE] * 10
    mf["input"]["note"] = HOSTILE
    render_copy(hls_dir, tmp_path / "evil", mf)
    for rel in AXIS_FILES:
        assert (tmp_path / "evil" / rel).read_text() == (tmp_path / "clean" / rel).read_text(), rel


def test_axi_result_rows_against_qkeras():
    import numpy as np

    from fpgacnn.errors import ToolError
    from fpgacnn.hls.axis import summarize_results

    expected = np.array([[0.5, 2.0, -1.0], [3.0, 3.0, 0.0], [0.0, -0.25, -0.5], [1.0, 0.0, 0.0]])
    good = np.array([[1, 2.0, 0], [0, 3.0, 0], [0, 0.0, 0], [-1, 0, 0]])  # ties: lowest index; last skipped
    r = summarize_results(good, expected, "exact")
    assert r["passed"] and r["streamed"] == 3 and r["skipped"] == 1 and r["classes"] == [1, 0, 0, -1]
    assert r["class_agreement"] == 1.0 and r["score_exact"] is True
    wrong_class = good.copy()
    wrong_class[1, 0] = 1
    assert not summarize_results(wrong_class, expected, "exact")["passed"]
    wrong_score = good.copy()
    wrong_score[0, 1] = 2.0 + 2 ** -15
    assert not summarize_results(wrong_score, expected, "exact")["passed"]
    assert summarize_results(wrong_score, expected, "argmax")["passed"]  # probabilities: class only
    flagged = good.copy()
    flagged[2, 2] = 1
    assert summarize_results(flagged, expected, "exact")["frame_errors"] == 1
    assert not summarize_results(np.array([[-1, 0, 0]] * 4), expected, "exact")["passed"]  # nothing streamed
    with pytest.raises(ToolError):
        summarize_results(good[:, :2], expected, "exact")
