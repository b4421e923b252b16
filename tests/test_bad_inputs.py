"""Bad inputs at every entry point: the exact error class and message, and nothing written.

API cases call the public functions (``load_model``, ``trim``, ``quantize``, ``generate``);
a few CLI cases run ``python -m fpgacnn.cli`` to check exit code 2 and a one-line message.
The whole pipeline's cases are in ``test_bad_inputs_pipeline.py``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from bad_inputs_common import NONE_SHAPE, conv_model, free_size_model, images, raises_exactly, tree
from fpgacnn.errors import DataError, InputError, ModelLoadError, UnsupportedLayerError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# ---------------------------------------------------------------- model files (written once)
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good and broken model files, written once."""
    d = tmp_path_factory.mktemp("models")
    m = conv_model()
    m.save(d / "ok.h5")
    m.save(d / "ok.keras")
    h5 = (d / "ok.h5").read_bytes()
    (d / "truncated.h5").write_bytes(h5[: len(h5) // 2])
    (d / "junk.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    (d / "empty.h5").write_bytes(b"")
    ks = (d / "ok.keras").read_bytes()
    (d / "truncated.keras").write_bytes(ks[: len(ks) // 2])
    (d / "junk.keras").write_bytes(np.random.default_rng(1).bytes(4096))
    with zipfile.ZipFile(d / "noconfig.keras", "w") as zf:
        zf.writestr("metadata.json", "{}")
    (d / "zip.h5").write_bytes((d / "ok.keras").read_bytes())
    (d / "notes.txt").write_text("not a model")
    (d / "not_saved_model").mkdir()
    (d / "not_saved_model" / "variables").mkdir()
    (d / "bad_saved_model").mkdir()
    (d / "bad_saved_model" / "saved_model.pb").write_bytes(b"\x08\x96\x01garbage")
    w = m.get_weights()
    w[0][0, 0, 0, 0] = np.nan
    m.set_weights(w)
    m.save(d / "nan.h5")
    w[0][0, 0, 0, 0] = np.inf
    m.set_weights(w)
    m.save(d / "inf.keras")
    return d


# ---------------------------------------------------------------- model files
FILE_CASES = [
    ("missing.h5", "model file '{p}' does not exist", False),
    ("empty.h5", "model file '{p}' is empty", False),
    ("junk.h5", "model file '{p}' is not an HDF5 file (corrupt, or not a Keras .h5 model)", False),
    ("truncated.h5", r"cannot load model '{p}': Unable to synchronously open file \(truncated file: .*\)", True),
    ("junk.keras", "model file '{p}' is not a valid .keras archive (corrupt or truncated)", False),
    ("truncated.keras", "model file '{p}' is not a valid .keras archive (corrupt or truncated)", False),
    ("noconfig.keras", "model file '{p}' is a zip archive but not a .keras model (no config.json)", False),
    ("zip.h5", "model file '{p}' is a zip archive; a Keras v3 model must be named *.keras", False),
    ("notes.txt", "'{p}' is not a Keras model: expected an .h5/.hdf5 file, a .keras archive or a SavedModel "
                  "directory", False),
    ("not_saved_model", "'{p}' is a directory but not a SavedModel (no saved_model.pb)", False),
    ("bad_saved_model", r"cannot load model '{p}': .*saved_model\.pb.*", True),
    ("nan.h5", "model '{p}': layer 'c1' has NaN weights (c1/kernel:0); the model is corrupt or its training "
               "diverged", False),
    ("inf.keras", "model '{p}': layer 'c1' has infinite weights (c1/kernel:0); the model is corrupt or its "
                  "training diverged", False),
]


@pytest.mark.parametrize("fname, message, regex", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_model_files(files, fname, message, regex):
    from fpgacnn.modelio import load_model

    p = files / fname
    shown = re.escape(str(p)) if regex else str(p)
    raises_exactly(ModelLoadError, message.format(p=shown), lambda: load_model(p), where=files, regex=regex)


def test_good_files_still_load(files):
    from fpgacnn.modelio import load_model

    for name in ("ok.h5", "ok.keras"):
        assert load_model(files / name).get_layer("c1").kernel.shape == (3, 3, 1, 2)


def test_unregistered_custom_class_in_h5(tmp_path):
    from tensorflow import keras

    from fpgacnn.modelio import load_model

    class Scale(keras.layers.Layer):  # not registered: the loader cannot know it
        def call(self, x):
            return 2.0 * x

    i = keras.Input((8, 8, 1))
    m = keras.Model(i, keras.layers.Dense(3)(keras.layers.Flatten()(Scale(name="scale")(i))))
    m.save(tmp_path / "custom.h5")
    p = tmp_path / "custom.h5"
    raises_exactly(ModelLoadError, rf"cannot load model '{re.escape(str(p))}': Unknown layer: 'Scale'.*",
                   lambda: load_model(p), where=tmp_path, regex=True)


# ---------------------------------------------------------------- model structure, per stage
def lstm_model():
    from tensorflow import keras

    i = keras.Input((8, 8), name="seq")
    return keras.Model(i, keras.layers.Dense(3, name="out")(keras.layers.LSTM(4, name="lstm")(i)))


def channels_first_model():
    from tensorflow import keras

    L = keras.layers
    i = keras.Input((1, 8, 8), name="img")
    h = L.Conv2D(2, 3, data_format="channels_first", name="cf")(i)
    return keras.Model(i, L.Dense(3, name="out")(L.Flatten(name="flat")(h)))




def test_lstm_is_named_by_trim_and_quantize(tmp_path):
    from fpgacnn import quantize, trim

    m = lstm_model()
    x = images(shape=(8, 8))
    raises_exactly(UnsupportedLayerError, "unsupported layer 'lstm' of type LSTM for trim: no rule for which "
                   "channels it keeps; remove it or trim before adding it", lambda: trim(m, x, keep=0.5),
                   where=tmp_path)
    e = raises_exactly(UnsupportedLayerError, r"unsupported layer 'lstm' of type LSTM for quantize: .*",
                       lambda: quantize(m, 8), where=tmp_path, regex=True)
    assert (e.layer_name, e.layer_type) == ("lstm", "LSTM")


def test_channels_first_is_refused(tmp_path):
    from fpgacnn import quantize, trim

    m = channels_first_model()
    raises_exactly(UnsupportedLayerError, "unsupported layer 'cf' of type Conv2D for trim: channels_first layout; "
                   "convert the model to channels_last", lambda: trim(m, None, keep=0.5, criterion="l1"),
                   where=tmp_path)
    raises_exactly(UnsupportedLayerError, r"unsupported layer 'cf' of type Conv2D for quantize: .*channels_last.*",
                   lambda: quantize(m, 8), where=tmp_path, regex=True)


def test_unknown_input_size_is_refused_by_every_stage(tmp_path):
    from fpgacnn import generate, quantize, trim

    m = free_size_model()
    raises_exactly(InputError, NONE_SHAPE, lambda: trim(m, images(), keep=0.5), where=tmp_path)
    raises_exactly(InputError, NONE_SHAPE, lambda: quantize(m, 8), where=tmp_path)
    # A QKeras model with a free input size (quantize refuses to make one, so build it by hand).
    from qkeras import QConv2D
    from tensorflow import keras

    i = keras.Input((None, None, 1))
    q = keras.Model(i, QConv2D(2, 3, kernel_quantizer="quantized_bits(8,0,alpha=1)",
                               bias_quantizer="quantized_bits(8,0,alpha=1)")(i))
    raises_exactly(InputError, NONE_SHAPE, lambda: generate(q, tmp_path / "prj"), where=tmp_path)


def test_nan_weights_in_memory_are_refused(tmp_path):
    from fpgacnn import quantize, trim

    m = conv_model()
    w = m.get_weights()
    w[1][0] = np.inf  # a bias
    m.set_weights(w)
    for stage, call in (("trim", lambda: trim(m, images(), keep=0.5)), ("quantize", lambda: quantize(m, 8))):
        raises_exactly(InputError, f"{stage}: layer 'c1' has infinite weights (c1/bias:0); the model is corrupt "
                       "or its training diverged", call, where=tmp_path)


def test_generate_refuses_nan_weights_and_wrong_data(tmp_path):
    from fpgacnn import generate, quantize

    q = quantize(conv_model(), 8)
    raises_exactly(DataError, "x_test has sample shape (8, 8), the model wants (8, 8, 1)",
                   lambda: generate(q, tmp_path / "prj", x_test=images()[..., 0]), where=tmp_path)
    w = q.get_weights()
    w[0][...] = np.nan
    q.set_weights(w)
    raises_exactly(InputError, "generate: layer 'c1' has NaN weights (c1/kernel:0); the model is corrupt or its "
                   "training diverged", lambda: generate(q, tmp_path / "prj"), where=tmp_path)


@pytest.mark.parametrize("keep", [0, -0.5, 1.5, float("nan"), True])
def test_trim_keep_out_of_range(tmp_path, keep):
    from fpgacnn import trim

    raises_exactly(InputError, f"keep must be a fraction in (0, 1], got {keep!r}",
                   lambda: trim(conv_model(), images(), keep=keep), where=tmp_path)


def test_trim_data_problems(tmp_path):
    from fpgacnn import trim

    m = conv_model()
    bad = images()
    bad[2, 3, 3, 0] = np.inf
    cases = [
        (images()[..., 0], "images of shape (6, 8, 8) do not fit model input (batch, 8, 8, 1)"),
        (images()[:0], "no images given"),
        (bad, "images contain NaN or infinity"),
        (np.full((2, 8, 8, 1), "a"), "images are not numeric: could not convert string to float: 'a'"),
    ]
    for x, msg in cases:
        raises_exactly(DataError, msg, lambda: trim(m, x, keep=0.5), where=tmp_path)


@pytest.mark.parametrize("bits", [1, 40])
def test_quantize_bits_out_of_range(tmp_path, bits):
    from fpgacnn import quantize

    raises_exactly(InputError, rf"bits .*{bits}.*", lambda: quantize(conv_model(), bits), where=tmp_path,
                   regex=True)


def test_quantize_labels(tmp_path):
    from fpgacnn import quantize

    m, x = conv_model(), images()
    raises_exactly(DataError, "labels must lie in [0, 3), got [0, 7]",
                   lambda: quantize(m, 8, x, np.array([0, 1, 2, 7, 1, 0]), epochs=1), where=tmp_path)
    raises_exactly(DataError, "6 inputs but 2 labels", lambda: quantize(m, 8, x, np.array([0, 1]), epochs=1),
                   where=tmp_path)


# ---------------------------------------------------------------- CLI: exit 2, one line, nothing written
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fpgacnn.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def cli_data(tmp_path_factory, digits_small):
    d = tmp_path_factory.mktemp("cli_data")
    s = digits_small
    np.savez(d / "d.npz", x=np.concatenate([s.x_train, s.x_test]), y=np.concatenate([s.y_train, s.y_test]))
    return d / "d.npz"


CLI_CASES = [
    (["--keep", "0"], None, "error: keep must be a fraction in (0, 1], got 0.0"),
    (["--bits", "40"], None, "error: bits must be an integer in [2, 16], got 40"),
    (["--part", "xc7z0200"], None, "error: unknown part 'xc7z0200'; known parts: "),
    ([], "nan.h5", "error: model '{model}': layer 'c1' has NaN weights (c1/kernel:0); the model is corrupt or "
                   "its training diverged"),
    ([], "truncated.keras", "error: model file '{model}' is not a valid .keras archive (corrupt or truncated)"),
]


@pytest.mark.parametrize("extra, model_name, message", CLI_CASES, ids=["keep", "bits", "part", "nan", "truncated"])
def test_cli_one_line_exit_2(tmp_path, files, cli_data, extra, model_name, message):
    model = files / (model_name or "ok.h5")
    before = tree(tmp_path)
    proc = run_cli("build", model, "--data", cli_data, "--out", tmp_path / "prj", "--epochs", "0", *extra,
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(message.format(model=model)), lines[0]
    assert tree(tmp_path) == before
