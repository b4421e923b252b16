"""Same inputs and seed, two fresh processes: identical trimmed weights, byte-identical projects.

The two runs differ in everything that should not matter: the working directory (so any
absolute path that leaks into a file shows up as a difference), ``PYTHONHASHSEED`` (so does
any dependence on set or dict-of-str ordering) and the time they run at.

Compared byte for byte: every file of the project tree except

* ``csim/``: g++ build outputs (the binary, its cache stamp, ``build.log``) and
  ``result.json``, which records build and run times. They are products of the local
  compiler run, not of fpgacnn, and the project is identical without them;
* in ``report.json``, the wall-clock fields only: ``timing_s`` (seconds per stage) and
  ``csim.img_per_s`` (simulation throughput). Every other report field must match.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
sys.path.insert(0, str(Path(__file__).parent))

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from fpgacnn.data import load_npz_split
    from fpgacnn.modelio import load_model
    from fpgacnn.pipeline import PipelineOptions, run_pipeline
    from fpgacnn.trimming import trim

    model_path, data_path = sys.argv[1], sys.argv[2]
    model = load_model(model_path)
    split = load_npz_split(data_path, seed=3)
    small = trim(model, split.x_train[:100], keep=0.5)
    np.savez("trimmed.npz", *small.get_weights())
    opts = PipelineOptions(keep=0.5, bits=6, finetune_epochs=1, qat_epochs=1, representative=100,
                           csim_samples=20, seed=3, name="det_cnn")
    run_pipeline(load_model(model_path), split, "prj", opts)
""")


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.relative_to(root).parts[0] != "csim"}


def without_timings(report: bytes) -> dict:
    r = json.loads(report)
    r.pop("timing_s")
    r["csim"].pop("img_per_s")
    return r


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, digits):
    from fpgacnn.zoo import small_vgg, train

    src = tmp_path_factory.mktemp("det_src")
    s = digits
    model = small_vgg(widths=(4, 8), dense=16, seed=1)
    train(model, s.x_train[:300], s.y_train[:300], epochs=1, seed=1)
    model.save(src / "model.h5")
    np.savez(src / "data.npz", x=np.concatenate([s.x_train, s.x_test])[:400],
             y=np.concatenate([s.y_train, s.y_test])[:400])
    runs = []
    for k, hashseed in enumerate(("1", "4242")):
        cwd = tmp_path_factory.mktemp(f"det_run{k}") / ("a" * (k + 1))  # different absolute paths
        cwd.mkdir()
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": hashseed}
        runs.append((cwd, subprocess.Popen([sys.executable, "-c", SCRIPT, str(src / "model.h5"),
                                            str(src / "data.npz")], cwd=cwd, env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for cwd, proc in runs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    return [cwd for cwd, _ in runs]


def test_trimmed_weights_identical(two_runs):
    a, b = (np.load(d / "trimmed.npz") for d in two_runs)
    assert a.files == b.files and len(a.files) > 4
    for key in a.files:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
        assert a[key].tobytes() == b[key].tobytes(), key


def test_project_trees_byte_identical(two_runs):
    a, b = (files(d / "prj") for d in two_runs)
    assert sorted(a) == sorted(b)
    assert {"fpgacnn.json", "report.json", "Makefile", "README.md", "fpgacnn_tb.cpp"} <= set(a)
    assert any(k.startswith("firmware/weights/") for k in a)
    differ = [k for k in a if k != "report.json" and a[k] != b[k]]
    assert differ == []
    ra, rb = without_timings(a["report.json"]), without_timings(b["report.json"])
    assert ra == rb
    assert ra["csim"]["bit_exact"] is True
    for d in two_runs:
        for text in (v.decode("utf-8", "replace") for v in files(d / "prj").values()):
            assert str(d) not in text  # no absolute path in any file


def test_hls4ml_random_stamp_never_shows(tmp_path, monkeypatch):
    """hls4ml stamps every project with 8 random hex digits. The YAML writer quotes a stamp that
    looks like a number ('12345678', about 2% of stamps) and not one that does not ('89ffa7fc'), so a
    plain text replacement of the stamp left a random difference in ``hls4ml_config.yml``."""
    import uuid

    import hls4ml.model.optimizer.passes.stamp as stamp_pass
    from test_render import tiny_qmodel

    from fpgacnn import generate

    q = tiny_qmodel()
    x = (np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)) / 256).astype(np.float32)
    trees = []
    for k, tail in enumerate(("12345678", "89ffa7fc")):
        monkeypatch.setattr(stamp_pass.uuid, "uuid4", lambda t=tail: uuid.UUID("00000000-0000-0000-0000-0000" + t))
        generate(q, tmp_path / f"p{k}", x_test=x, name="stamped")
        trees.append(files(tmp_path / f"p{k}"))
    assert trees[0] == trees[1]
    text = trees[0]["hls4ml_config.yml"].decode()
    assert "12345678" not in text and "89ffa7fc" not in text
