"""The CLI as users drive it: a subprocess, exit codes, one-line errors (no tracebacks)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "fpgacnn.cli", *map(str, args)], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=300)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    for needle in needles:
        assert needle in last, last


@pytest.fixture(scope="module")
def data_npz(tmp_path_factory):
    from fpgacnn.data import load_digits_split

    s = load_digits_split()
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=np.concatenate([s.x_train, s.x_test])[:300], y=np.concatenate([s.y_train, s.y_test])[:300])
    return path


def test_help_lists_the_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("demo", "build", "trim", "csim"):
        assert cmd in proc.stdout


def test_missing_model_file(tmp_path, data_npz):
    proc = run_cli("build", tmp_path / "nope.h5", "--data", data_npz, "--out", tmp_path / "prj")
    assert_one_line_error(proc, "nope.h5", "does not exist")
    assert not (tmp_path / "prj").exists()


def test_unsupported_layer_is_named(tmp_path, data_npz):
    from tensorflow import keras

    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    h = keras.layers.UpSampling2D(name="odd_upsample")(h)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(10, name="logits")(h)
    model_path = tmp_path / "odd.h5"
    keras.Model(inp, out).save(model_path)
    proc = run_cli("build", model_path, "--data", data_npz, "--out", tmp_path / "prj", "--epochs", "0")
    assert_one_line_error(proc, "odd_upsample", "UpSampling2D")
    assert not (tmp_path / "prj").exists()


def test_existing_output_dir_is_refused(tmp_path, data_npz):
    out = tmp_path / "prj"
    out.mkdir()
    (out / "keep_me.txt").write_text("user work")
    proc = run_cli("build", tmp_path / "any.h5", "--data", data_npz, "--out", out)
    assert_one_line_error(proc, str(out), "--force")
    assert (out / "keep_me.txt").read_text() == "user work"
    assert sorted(p.name for p in out.iterdir()) == ["keep_me.txt"]


def test_demo_refuses_existing_output_dir(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "x").write_text("1")
    proc = run_cli("demo", "--out", out)
    assert_one_line_error(proc, "--force")


def test_lambda_layer_is_not_loaded(tmp_path, data_npz):
    from tensorflow import keras

    inp = keras.Input((8, 8, 1))
    h = keras.layers.Lambda(lambda t: t * 2.0, name="sneaky")(inp)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(10)(h)
    model_path = tmp_path / "lambda.h5"
    keras.Model(inp, out).save(model_path)
    proc = run_cli("build", model_path, "--data", data_npz, "--out", tmp_path / "prj")
    assert_one_line_error(proc, "Lambda", "sneaky")


def test_stage_commands_chain(tmp_path, data_npz, trained_small_vgg):
    """trim → quantize → generate → csim, each a separate command on files, as in a Makefile."""
    model_path = tmp_path / "float.h5"
    trained_small_vgg.save(model_path)
    steps = [
        ("trim", model_path, "--data", data_npz, "--keep", "0.75", "--out", tmp_path / "trimmed.h5"),
        ("quantize", tmp_path / "trimmed.h5", "--data", data_npz, "--epochs", "1", "--out", tmp_path / "q.h5"),
        ("generate", tmp_path / "q.h5", "--data", data_npz, "--samples", "12", "--out", tmp_path / "prj"),
        ("csim", tmp_path / "prj"),
        # every QActivation a layer of its own, as hls4ml builds it unaided: exact as well
        ("generate", tmp_path / "q.h5", "--data", data_npz, "--samples", "12", "--separate-activations",
         "--out", tmp_path / "prj_sep"),
        ("csim", tmp_path / "prj_sep"),
    ]
    for args in steps:
        proc = run_cli("--quiet", *args)
        assert proc.returncode == 0, (args[0], proc.stderr[-1500:])
        if args[0] == "csim":
            assert "bit-exact: True" in proc.stdout and "samples: 12" in proc.stdout
    folded = {p: json.loads((tmp_path / p / "fpgacnn.json").read_text())["project"]["folded_activations"]
              for p in ("prj", "prj_sep")}
    assert len(folded["prj"]) == 5 and folded["prj_sep"] == []  # 4 conv ReLUs and fc1's
