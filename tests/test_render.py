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
    for target in ("csim:", "synth:", "clean:"):
        assert re.search(rf"^{target}", mk, re.M)
    assert "-O2 -std=c++17 -Ifirmware -Ifirmware/ap_types" in mk and "-O0" not in mk
    cfg = first["hls_config.cfg"]
    assert "part=xc7z020clg400-1" in cfg and "syn.top=myproject" in cfg and "clock=10ns" in cfg
    assert "syn.file=firmware/myproject.cpp" in cfg and "tb.file=fpgacnn_tb.cpp" in cfg
    readme = first["README.md"]
    for needed in ("xc7z020clg400-1", "10 ns", "8 x 8 x 1", "410", "make csim", "make synth",
                   "ap_fixed<16,6>", "argmax", "0.00390625"):
        assert needed in readme.replace("`", ""), needed
    tb = first["fpgacnn_tb.cpp"]
    assert "myproject(input_1, layer7_out);" in tb and "setprecision(17)" in tb
    assert "copy_data<double, input_t, 0, 8*8*1>(in, input_1)" in tb


def test_vivado_backend_and_no_tool_message(hls_dir, tmp_path):
    mf = base_manifest()
    mf["project"]["backend"] = "Vivado"
    _, files = render_copy(hls_dir, tmp_path / "v", mf)
    assert "vivado_hls -f \"fpgacnn_synth.tcl\"" in files["Makefile"]
    if shutil.which("make") and not shutil.which("vivado_hls"):
        import subprocess

        r = subprocess.run(["make", "synth"], cwd=tmp_path / "v", capture_output=True, text=True)
        assert r.returncode != 0 and "vivado_hls not found" in r.stderr


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
