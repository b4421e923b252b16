"""`fpgacnn run CONFIG` then `fpgacnn report DIR`, as a user drives them from a terminal or CI."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def fpgacnn(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fpgacnn.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("job")
    (d / "job.yaml").write_text(
        "model: {builtin: small_vgg, epochs: 8}\n"
        "data: {source: digits, seed: 1}\n"
        "trim: {keep: 0.75, finetune_epochs: 3}\n"
        "quantize: {bits: 8, qat_epochs: 3}\n"
        "hls: {name: \"cam'; rm -rf x\"}\n"
        "csim: {samples: 40}\n"
        "output: {dir: prj}\n"
    )
    proc = fpgacnn("--quiet", "run", d / "job.yaml", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return d, json.loads(proc.stdout), proc


def test_run_writes_a_bit_exact_project(run_dir):
    d, report, proc = run_dir
    assert report["csim"]["bit_exact"] is True and report["csim"]["samples"] == 40
    assert (d / "prj" / "fpgacnn.json").is_file()
    assert proc.stderr.strip() == ""  # --quiet: nothing but errors


def test_report_after_run(run_dir):
    d, _, _ = run_dir
    proc = fpgacnn("report", d / "prj")
    assert proc.returncode == 0, proc.stderr
    page = (d / "prj" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3


def test_config_errors_exit_2_listing_all_problems(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: {builtin: small_vgg}\ntrim: {kepp: 0.5, criterion: magic}\noutput: {dir: x}\n")
    proc = fpgacnn("run", cfg)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()[-1]
    assert "2 problems" in err and "unknown key 'kepp'" in err and "trim.criterion must be one of" in err
    assert not (tmp_path / "x").exists()
