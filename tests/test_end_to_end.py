"""The whole chain on a small trained CNN: trim → QAT → generate → g++ csim → report."""
from __future__ import annotations

import json

import pytest

from fpgacnn.pipeline import PipelineOptions, run_pipeline


@pytest.fixture(scope="module")
def pipeline_report(trained_small_vgg, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "prj"
    opts = PipelineOptions(keep=0.5, bits=8, finetune_epochs=10, qat_epochs=10, csim_samples=120,
                           name="e2e_cnn")
    report = run_pipeline(trained_small_vgg, digits, out, opts)
    return out, report


def test_csim_is_bit_exact_against_qkeras(pipeline_report):
    _, report = pipeline_report
    assert report["csim"]["bit_exact"] is True
    assert report["csim"]["samples"] == 120
    assert report["csim"]["max_abs_diff"] == 0.0


def test_csim_agrees_with_the_float_model(pipeline_report):
    _, report = pipeline_report
    assert report["csim"]["argmax_agreement"] >= 0.95
    assert report["accuracy"]["csim"] >= report["accuracy"]["float"] - 0.05
    assert report["accuracy"]["float"] > 0.9


def test_trim_made_the_model_smaller(pipeline_report):
    _, report = pipeline_report
    assert report["model"]["params_after"] < 0.5 * report["model"]["params_before"]


def test_report_json_has_the_agreed_fields(pipeline_report):
    out, report = pipeline_report
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    for key in ("float", "trimmed", "quantized", "csim"):
        assert isinstance(on_disk["accuracy"][key], float)
    assert on_disk["timing_s"]["train"] == 0.0  # the model came trained
    for key in ("trim", "quantize", "generate", "csim"):
        assert on_disk["timing_s"][key] > 0
    assert not on_disk["project"]["dir"].startswith("/") and on_disk["project"]["dir"].endswith("prj")


def test_project_has_the_rendered_files(pipeline_report):
    out, _ = pipeline_report
    for name in ("Makefile", "README.md", "fpgacnn.json"):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "fpgacnn.json").read_text())
    assert manifest["model"]["input_shape"] == [8, 8, 1]
    assert manifest["project"]["part"] == "xc7z020clg400-1"
    assert len(manifest["precision"]["layers"]) >= 4
