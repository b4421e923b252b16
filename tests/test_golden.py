"""Golden files: what the templates render for fixed inputs, and a generated tree that never depends on where.

The rendered files are compared with ``tests/golden/<case>/``. After an intended template
change, rewrite them with ``FPGACNN_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py``
and review the diff like any other code change.
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from fpgacnn.errors import InputError

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("FPGACNN_UPDATE_GOLDEN") == "1"
sys.path.insert(0, str(Path(__file__).parent))

# The sections of an hls4ml testbench that fpgacnn reads (markers and lines as hls4ml writes them).
_FAKE_TB = """#include "firmware/myproject.h"
#include "firmware/nnet_utils/nnet_helpers.h"
// hls-fpga-machine-learning insert bram

int main(int argc, char **argv) {{
            // hls-fpga-machine-learning insert data
{data}
            // hls-fpga-machine-learning insert top-level-function
            myproject(input_1,layer7_out);

            // hls-fpga-machine-learning insert tb-output
            nnet::print_result<result_t, 10>(layer7_out, fout);
}}
"""
_STREAM_DATA = """      hls::stream<input_t> input_1("input_1");
      nnet::copy_data<float, input_t, 0, 8*8*1>(in, input_1);
      hls::stream<result_t> layer7_out("layer7_out");"""
_ARRAY_DATA = """      input_t input_1[8*8*1];
      nnet::copy_data<float, input_t, 0, 8*8*1>(in, input_1);
      result_t layer7_out[10];"""


def _manifest(backend, io_type, axi_stream, softmax):
    design = {"layer_reuse": {"conv": 9, "dense": 40}, "layer_strategy": {"conv": "Latency", "dense": "Resource"},
              "fifo_depth": "auto", "fifo_depths": {"layer2_out": 16, "layer4_out": 9},
              "folded_activations": ["relu"]} if io_type == "io_stream" else {}
    return {
        "fpgacnn_version": "0.1.0",
        "project": {"name": "myproject", "display_name": "Golden digits", "top": "myproject", "backend": backend,
                    "io_type": io_type, "part": "xc7z020clg400-1", "clock_period_ns": 10, "strategy": "Latency",
                    "reuse_factor": 1, "axi_stream": axi_stream, **design},
        "model": {"name": "golden", "sha256": "ab" * 32, "params": 410, "input_shape": [8, 8, 1], "n_outputs": 10,
                  "classes": [str(i) for i in range(10)]},
        "input": {"precision": "ap_ufixed<8,0>", "bits": 8, "scale": 0.00390625, "offset": 0.0,
                  "note": "pixel / 256, on the 2^-8 grid"},
        "output": {"precision": "ap_fixed<20,5>", "softmax": softmax},
        "precision": {"layers": [
            {"name": "conv", "hls_name": "conv", "class": "QConv2D", "weight": "ap_fixed<8,1>",
             "bias": "ap_fixed<8,1>", "result": "ap_fixed<18,3>", "accum": "ap_fixed<18,3>"},
            {"name": "dense", "hls_name": "dense", "class": "QDense", "weight": "ap_fixed<8,1>",
             "bias": "ap_fixed<8,1>", "result": "ap_fixed<20,5>", "accum": "ap_fixed<20,5>"}]},
        "testbench": {"samples": 40, "inputs": "tb_data/tb_input_features.dat",
                      "expected": "tb_data/tb_output_predictions.dat", "float": None, "labels": None,
                      "compare": "argmax" if softmax == "hardware" else "exact"},
    }


CASES = {
    "vitis_stream_axi": dict(backend="Vitis", io_type="io_stream", axi_stream=True, softmax="host"),
    "vivado_parallel_softmax": dict(backend="Vivado", io_type="io_parallel", axi_stream=False, softmax="hardware"),
}


def _render(case: str, where: Path) -> dict[str, str]:
    from fpgacnn.hls.render import render_project_files

    opts = CASES[case]
    (where / "firmware").mkdir(parents=True)
    (where / "firmware/myproject.cpp").write_text("// stands for hls4ml's firmware\n")
    data = _STREAM_DATA if opts["io_type"] == "io_stream" else _ARRAY_DATA
    (where / "myproject_test.cpp").write_text(_FAKE_TB.format(data=data))
    paths = render_project_files(where, _manifest(**opts))
    return {p.relative_to(where).as_posix(): p.read_text(encoding="utf-8") for p in paths}


def _golden(case: str) -> dict[str, str]:
    root = GOLDEN / case
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_templates_render_the_golden_files(case, tmp_path):
    rendered = _render(case, tmp_path / "prj")
    if UPDATE:
        shutil.rmtree(GOLDEN / case, ignore_errors=True)
        for rel, text in rendered.items():
            path = GOLDEN / case / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
    golden = _golden(case)
    assert golden, f"no golden files for {case}: run with FPGACNN_UPDATE_GOLDEN=1"
    assert sorted(rendered) == sorted(golden)
    for rel, text in rendered.items():
        if text != golden[rel]:
            diff = "".join(difflib.unified_diff(golden[rel].splitlines(True), text.splitlines(True),
                                                f"golden/{case}/{rel}", f"rendered/{rel}", n=1))
            pytest.fail(f"{rel} differs from the golden file (FPGACNN_UPDATE_GOLDEN=1 rewrites it):\n"
                        + "".join(diff.splitlines(True)[:60]))


def test_rendering_does_not_depend_on_the_directory(tmp_path):
    a = _render("vitis_stream_axi", tmp_path / "a")
    b = _render("vitis_stream_axi", tmp_path / "somewhere" / "else" / "entirely")
    assert a == b


def _tree(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        assert not p.is_symlink(), p
        if p.is_file():
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def test_generated_tree_is_byte_identical_wherever_it_is_written(tmp_path):
    from fpgacnn.hls.generate import generate
    from test_render import tiny_qmodel

    qmodel = tiny_qmodel()
    rng = np.random.default_rng(3)
    x = (rng.integers(0, 256, size=(12, 8, 8, 1)) / 256).astype(np.float32)
    one = tmp_path / "first" / "prj"
    two = tmp_path / "second" / "nested" / "camera_ip"
    generate(qmodel, one, x_test=x, name="myproject", axi_stream=True)
    generate(qmodel, two, x_test=x, name="myproject", axi_stream=True)
    a, b = _tree(one), _tree(two)
    assert sorted(a) == sorted(b)
    differ = [rel for rel in a if a[rel] != b[rel]]
    assert not differ, differ
    assert "firmware/myproject_axis.cpp" in a and "myproject_axis_tb.cpp" in a
    for rel, data in a.items():  # no absolute path, in text or binary files
        for d in (one, two, tmp_path):
            assert str(d).encode() not in data, (rel, d)
    assert json.loads(a["fpgacnn.json"])["project"]["axi_stream"] is True
    with pytest.raises(InputError, match="axi_stream"):
        generate(qmodel, tmp_path / "third", x_test=x, axi_stream="yes")
    assert not (tmp_path / "third").exists()
