"""C simulation with g++: bit-exact against QKeras, cached, split across processes, relocatable."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fpgacnn.errors import InputError, ToolError

pytestmark = pytest.mark.slow
sys.path.insert(0, str(Path(__file__).parent))  # the fixture model lives in test_render

N_SAMPLES = 40


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
    path.write_text("".join(" ".join(repr(float(v)) for v in r) + "\n" for r in rows))


def _build_with_generate(qmodel, x, y, out_dir, io_type="io_stream"):
    """The real pipeline, once fpgacnn.hls.generate exists; None when it does not (yet)."""
    try:
        from fpgacnn.hls.generate import generate
    except ImportError:
        return None
    return generate(qmodel, out_dir, part="xc7z020clg400-1", backend="Vitis", io_type=io_type,
                    x_test=x, y_test=y, float_model=qmodel, name="myproject")


def _build_by_hand(qmodel, x, labels, out_dir, io_type="io_stream"):
    from fpgacnn.hls.project import MANIFEST, Project
    from fpgacnn.hls.render import render_project_files
    from test_render import base_manifest, write_hls_project

    write_hls_project(qmodel, out_dir, io_type=io_type)
    expected = qmodel.predict(x, verbose=0)
    _write(out_dir / "tb_data/tb_input_features.dat", x)
    _write(out_dir / "tb_data/tb_output_predictions.dat", expected)
    # Stand-in for the float model: the QKeras logits themselves (argmax agreement 1).
    _write(out_dir / "tb_data/float_predictions.dat", expected)
    (out_dir / "tb_data/labels.dat").write_text("".join(f"{int(v)}\n" for v in labels))
    mf = base_manifest(samples=len(x), float_file="tb_data/float_predictions.dat", labels_file="tb_data/labels.dat")
    mf["project"]["io_type"] = io_type
    (out_dir / MANIFEST).write_text(json.dumps(mf, indent=1))
    render_project_files(out_dir, mf)
    return Project.load(out_dir)


def _make_project(tmp_path_factory, io_type):
    from test_render import tiny_qmodel

    qmodel = tiny_qmodel()
    rng = np.random.default_rng(0)
    # Inputs on the 2^-8 grid: exactly representable in the input type.
    x = (rng.integers(0, 256, size=(N_SAMPLES, 8, 8, 1)) / 256).astype(np.float32)
    expected = qmodel.predict(x, verbose=0)
    labels = expected.argmax(axis=1)
    labels[:4] = (labels[:4] + 1) % 10  # 36 of 40 right
    out_dir = tmp_path_factory.mktemp("csim") / "prj"
    proj = None
    if os.environ.get("FPGACNN_TEST_HAND_PROJECT") != "1":
        proj = _build_with_generate(qmodel, x, labels, out_dir, io_type)
    if proj is None:
        proj = _build_by_hand(qmodel, x, labels, out_dir, io_type)
    return proj


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return _make_project(tmp_path_factory, "io_stream")


@pytest.fixture(scope="module")
def first_run(project):
    from fpgacnn.hls.csim import csim

    return csim(project, rebuild=True)


def test_bit_exact_vs_qkeras(project, first_run):
    from fpgacnn.hls.testvectors import read_matrix

    r = first_run
    assert r.bit_exact, r.to_dict()
    assert r.mismatches == 0 and r.max_abs_diff == 0.0
    assert r.cached_build is False and r.build_s > 0
    n = project.manifest["testbench"]["samples"]
    assert r.samples == n
    assert r.outputs.shape == (n, 10)
    np.testing.assert_array_equal(r.outputs, read_matrix(project.dir / "tb_data/tb_output_predictions.dat")[:n])
    assert r.argmax_reference == "float" and r.argmax_agreement == 1.0
    assert r.accuracy == pytest.approx(36 / 40)
    saved = json.loads((project.dir / "csim/result.json").read_text())
    assert saved["bit_exact"] is True and "outputs" not in saved
    json.dumps(r.to_dict())


def test_second_call_uses_cached_build(project, first_run, monkeypatch):
    import fpgacnn
    import fpgacnn.hls.csim as csim_mod

    binary = project.dir / "csim/fpgacnn_tb"
    mtime = binary.stat().st_mtime_ns
    calls = []
    real_run = subprocess.run

    def spy(cmd, *a, **kw):
        calls.append(list(cmd))
        return real_run(cmd, *a, **kw)

    monkeypatch.setattr(csim_mod.subprocess, "run", spy)
    r = fpgacnn.csim(str(project.dir), samples=10)  # path, and the package-level export
    assert r.cached_build is True and r.build_s == 0.0
    assert r.bit_exact and r.samples == 10
    assert binary.stat().st_mtime_ns == mtime
    assert all("--version" in c for c in calls), calls  # g++ asked its version, never compiled
    np.testing.assert_array_equal(r.outputs, first_run.outputs[:10])


def test_split_jobs_identical(project, first_run):
    from fpgacnn.hls.csim import csim

    one = csim(project, jobs=1)
    two = csim(project, jobs=2)
    assert one.jobs == 1 and two.jobs == 2
    np.testing.assert_array_equal(one.outputs, two.outputs)
    np.testing.assert_array_equal(two.outputs, first_run.outputs)
    odd = csim(project, samples=7, jobs=2)  # uneven split
    np.testing.assert_array_equal(odd.outputs, first_run.outputs[:7])


def test_copied_project_and_tampered_expected(project, first_run, tmp_path):
    from fpgacnn.hls.csim import csim

    copy = tmp_path / "elsewhere" / "prj"
    shutil.copytree(project.dir, copy)
    r = csim(copy)
    assert r.bit_exact and r.cached_build is True  # binary and cache key are relocatable
    np.testing.assert_array_equal(r.outputs, first_run.outputs)
    assert str(project.dir) not in (copy / "csim/fpgacnn_tb.stamp").read_text()

    exp = copy / "tb_data/tb_output_predictions.dat"
    lines = exp.read_text().splitlines()
    vals = lines[3].split()
    vals[2] = repr(float(vals[2]) + 2.0 ** -15)  # one LSB of ap_fixed<23,8>
    lines[3] = " ".join(vals)
    exp.write_text("\n".join(lines) + "\n")
    bad = csim(copy)
    assert bad.bit_exact is False and bad.mismatches == 1
    assert bad.max_abs_diff == pytest.approx(2.0 ** -15)
    assert json.loads((copy / "csim/result.json").read_text())["bit_exact"] is False

    if shutil.which("make"):
        ok = subprocess.run(["make", "csim"], cwd=project.dir, capture_output=True, text=True)
        assert ok.returncode == 0 and "bit-exact" in ok.stdout, ok.stdout + ok.stderr
        no = subprocess.run(["make", "csim"], cwd=copy, capture_output=True, text=True)
        assert no.returncode != 0 and "NOT bit-exact" in no.stdout


def test_missing_gxx(project, first_run, tmp_path, monkeypatch):
    from fpgacnn.hls.csim import csim

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(ToolError, match="g\\+\\+ not found"):
        csim(project)


def test_compile_failure_reports_log(project, first_run, tmp_path):
    from fpgacnn.hls.csim import csim

    copy = tmp_path / "broken"
    shutil.copytree(project.dir, copy, ignore=shutil.ignore_patterns("csim"))
    tb = copy / "fpgacnn_tb.cpp"
    tb.write_text('#error "deliberately broken"\n' + tb.read_text())
    with pytest.raises(ToolError, match="deliberately broken") as err:
        csim(copy)
    assert "\n" not in str(err.value) and "build.log" in str(err.value)  # one line, pointing at the log
    assert not (copy / "csim/fpgacnn_tb").exists()


def _cli_csim(project_dir, env_path):
    env = {**os.environ, "PATH": env_path, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "fpgacnn.cli", "csim", str(project_dir)], capture_output=True,
                          text=True, env=env, timeout=300)


def test_cli_gxx_missing_or_failing_is_one_line(project, first_run, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    r = _cli_csim(project.dir, str(empty))
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "g++ not found" in r.stderr
    assert "Traceback" not in r.stderr

    broken = tmp_path / "broken"
    shutil.copytree(project.dir, broken, ignore=shutil.ignore_patterns("csim"))
    tb = broken / "fpgacnn_tb.cpp"
    tb.write_text('#error "deliberately broken"\n' + tb.read_text())
    r = _cli_csim(broken, os.environ["PATH"])
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "deliberately broken" in r.stderr, r.stderr


def test_bad_inputs(project, tmp_path):
    from fpgacnn.hls.csim import csim

    with pytest.raises(InputError):
        csim(tmp_path / "does-not-exist")
    with pytest.raises(InputError):
        csim(tmp_path)  # a directory, but no fpgacnn.json
    with pytest.raises(InputError):
        csim(project, samples=10 ** 6)
    with pytest.raises(InputError):
        csim(project, samples=0)
    with pytest.raises(InputError):
        csim(project, jobs=0)


def test_io_parallel_bit_exact(tmp_path_factory):
    from fpgacnn.hls.csim import csim

    proj = _make_project(tmp_path_factory, "io_parallel")
    assert "input_1[" in (proj.dir / "fpgacnn_tb.cpp").read_text()  # arrays, not streams
    r = csim(proj, jobs=2)
    assert r.bit_exact and r.samples == N_SAMPLES and r.accuracy == pytest.approx(36 / 40)
