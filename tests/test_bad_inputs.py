"""Bad inputs at every entry point: the exact error class and message, and nothing written.

API cases call the public functions (``load_model``, ``trim``, ``quantize``, ``generate``,
``run_pipeline``, ``fit``); a few CLI cases run ``python -m fpgacnn.cli`` to check exit
code 2 and a one-line message. Pipeline cases use ``finetune_epochs=0``: every one of them
must be refused before any training starts.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from fpgacnn.errors import BudgetError, DataError, InputError, ModelLoadError, UnsupportedLayerError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# ---------------------------------------------------------------- helpers
def tree(root) -> dict:
    """Every path under ``root`` with its size and mtime: 'nothing was written' means equal trees."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def raises_exactly(cls, message, fn, *, where, regex=False):
    """``fn()`` raises exactly ``cls`` with exactly ``message``, and ``where`` is unchanged."""
    before = tree(where)
    with pytest.raises(cls) as info:
        fn()
    assert type(info.value) is cls, f"{type(info.value).__name__}: {info.value}"
    text = str(info.value)
    assert "\n" not in text
    if regex:
        assert re.fullmatch(message, text), text
    else:
        assert text == message
    assert tree(where) == before, "something was written"
    return info.value


def conv_model(shape=(8, 8, 1), n_out=3, name="c1", **conv_kw):
    from tensorflow import keras

    L = keras.layers
    i = keras.Input(shape, name="img")
    h = L.Conv2D(2, 3, activation="relu", name=name, **conv_kw)(i)
    o = L.Dense(n_out, name="out")(L.Flatten(name="flat")(h))
    return keras.Model(i, o)


def images(n=6, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


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


@pytest.fixture(scope="module")
def digits_small(digits):
    s = digits
    return dataclasses.replace(s, x_train=s.x_train[:200], y_train=s.y_train[:200], x_val=s.x_val[:40],
                               y_val=s.y_val[:40], x_test=s.x_test[:60], y_test=s.y_test[:60])


@pytest.fixture(scope="module")
def vgg():
    from fpgacnn.zoo import small_vgg

    return small_vgg(widths=(2, 2), dense=4, seed=0)


def pipeline(model, split, out, **opts):
    from fpgacnn.pipeline import PipelineOptions, run_pipeline

    base = dict(finetune_epochs=0, qat_epochs=0, csim_samples=10)
    return lambda: run_pipeline(model, split, out, PipelineOptions(**{**base, **opts}))


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


def free_size_model():
    from tensorflow import keras

    L = keras.layers
    i = keras.Input((None, None, 1), name="img")
    h = L.MaxPooling2D(name="pool")(L.Conv2D(2, 3, activation="relu", name="c1")(i))
    return keras.Model(i, L.Conv2D(3, 2, name="head")(h))


def channels_first_model():
    from tensorflow import keras

    L = keras.layers
    i = keras.Input((1, 8, 8), name="img")
    h = L.Conv2D(2, 3, data_format="channels_first", name="cf")(i)
    return keras.Model(i, L.Dense(3, name="out")(L.Flatten(name="flat")(h)))


NONE_SHAPE = ("model input shape (None, None, None, 1) has unknown dimensions; the hardware needs a fixed input "
              "size: rebuild the model with keras.Input(shape=(height, width, channels))")


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


# ---------------------------------------------------------------- the pipeline: refused before training
def test_pipeline_unsupported_layer(tmp_path, digits_small):
    from tensorflow import keras

    L = keras.layers
    i = keras.Input((8, 8, 1), name="image")
    h = L.UpSampling2D(name="odd_upsample")(L.Conv2D(2, 3, name="c1")(i))
    m = keras.Model(i, L.Dense(10, name="logits")(L.Flatten()(h)))
    e = raises_exactly(UnsupportedLayerError, r"unsupported layer 'odd_upsample' of type UpSampling2D for "
                       r"quantize: .*", pipeline(m, digits_small, tmp_path / "prj"), where=tmp_path, regex=True)
    assert e.layer_name == "odd_upsample"


def test_pooling_hls4ml_computes_differently_is_refused(tmp_path, digits_small):
    """Found by fuzzing: hls4ml pools 'same'-padded borders differently from Keras, and its
    io_stream pooling needs strides == pool_size. Refused before training / generation."""
    from tensorflow import keras

    from fpgacnn import generate, quantize

    L = keras.layers
    i = keras.Input((8, 8, 1), name="image")
    h = L.MaxPooling2D(2, padding="same", name="pool")(L.Conv2D(2, 2, activation="relu", name="c1")(i))
    m = keras.Model(i, L.Dense(10, name="logits")(L.Flatten()(h)))
    raises_exactly(UnsupportedLayerError, "unsupported layer 'pool' of type MaxPooling2D for generate: "
                   "padding='same' pads its 7x7 input, and hls4ml pools padded borders differently from Keras; "
                   "use padding='valid' or an input size divisible by the stride",
                   pipeline(m, digits_small, tmp_path / "prj"), where=tmp_path)
    i = keras.Input((8, 8, 1), name="image")
    h = L.MaxPooling2D(3, strides=2, name="overlap")(L.Conv2D(2, 1, activation="relu", name="c1")(i))
    q = quantize(keras.Model(i, L.Dense(3, name="logits")(L.Flatten()(h))), 8)
    raises_exactly(UnsupportedLayerError, "unsupported layer 'overlap' of type MaxPooling2D for generate: "
                   "pool_size (3, 3) with strides (2, 2): hls4ml's io_stream pooling needs strides equal to "
                   "pool_size (use io_parallel, or pool_size == strides)",
                   lambda: generate(q, tmp_path / "prj", io_type="io_stream"), where=tmp_path)


def test_pipeline_model_shapes(tmp_path, digits_small):
    from tensorflow import keras

    L = keras.layers
    i = keras.Input((8, 8, 1))
    conv_out = keras.Model(i, L.Conv2D(10, 3, name="c1")(i))
    one_out = keras.Model(i, L.Dense(1, name="d")(L.Flatten()(i)))
    raises_exactly(InputError, "the model output must be a vector of class scores, got shape (None, 6, 6, 10)",
                   pipeline(conv_out, digits_small, tmp_path / "prj"), where=tmp_path)
    raises_exactly(InputError, "the model has 1 output; a classifier needs at least 2",
                   pipeline(one_out, digits_small, tmp_path / "prj"), where=tmp_path)
    raises_exactly(InputError, NONE_SHAPE, pipeline(free_size_model(), digits_small, tmp_path / "prj"),
                   where=tmp_path)


def _replace(split, **kw):
    return dataclasses.replace(split, **kw)


def data_cases(s):
    n = len(s.x_train)
    nan_x = s.x_train.copy()
    nan_x[5, 2, 2, 0] = np.nan
    return [
        ("empty", _replace(s, x_train=s.x_train[:0], y_train=s.y_train[:0]), "training images is empty"),
        ("single class", _replace(s, y_train=np.full(n, 3)),
         "training labels hold a single class (3); need at least two"),
        ("wrong rank", _replace(s, x_train=s.x_train[..., 0]),
         f"training images has shape ({n}, 8, 8), the model expects (N, 8, 8, 1)"),
        ("wrong channels", _replace(s, x_test=np.repeat(s.x_test, 3, axis=-1)),
         f"test images has shape ({len(s.x_test)}, 8, 8, 3), the model expects (N, 8, 8, 1)"),
        ("strings", _replace(s, x_train=s.x_train.astype(str)),
         "training images must be a real numeric array, got dtype <U32"),
        ("complex", _replace(s, x_train=s.x_train.astype(np.complex64)),
         "training images must be a real numeric array, got dtype complex64"),
        ("nan", _replace(s, x_train=nan_x), "training images contains NaN or Inf"),
        ("labels out of range", _replace(s, y_train=np.where(np.arange(n) == 7, 12, s.y_train)),
         "training labels has labels in [0, 12], the model has 10 outputs"),
        ("negative labels", _replace(s, y_test=-s.y_test - 1),
         "test labels has labels in [-10, -1], the model has 10 outputs"),
        ("fractional labels", _replace(s, y_train=s.y_train + 0.5), "training labels must hold integer class labels"),
        ("string labels", _replace(s, y_train=s.y_train.astype(str)),
         "training labels must be numeric class labels, got dtype <U21"),
        ("label count", _replace(s, y_train=s.y_train[:-1]),
         f"training labels has shape ({n - 1},), expected ({n},) integer labels"),
        ("class names", _replace(s, classes=["a", "b", "c"]),
         "the data names 3 classes but the model has 10 outputs"),
    ]


def test_pipeline_data_problems(tmp_path, digits_small, vgg):
    for label, split, msg in data_cases(digits_small):
        try:
            raises_exactly(DataError, msg, pipeline(vgg, split, tmp_path / "prj"), where=tmp_path)
        except AssertionError as exc:
            raise AssertionError(f"{label}: {exc}") from None


OPTION_CASES = [
    (dict(keep=0), "keep must be a fraction in (0, 1], got 0"),
    (dict(keep=-0.25), "keep must be a fraction in (0, 1], got -0.25"),
    (dict(keep=1.01), "keep must be a fraction in (0, 1], got 1.01"),
    (dict(bits=1), "bits must be an integer in [2, 16], got 1"),
    (dict(bits=17), "bits must be an integer in [2, 16], got 17"),
    (dict(bits=8.5), "bits must be an integer in [2, 16], got 8.5"),
    (dict(representative=0), "representative must be a positive integer, got 0"),
    (dict(clock_period_ns=float("inf")), "clock_period_ns must be a positive number, got inf"),
    (dict(criterion="magic"), "unknown trim criterion 'magic' (choose from relevance, relevance_weighted, l1, apoz, random)"),
    (dict(name=""), "name must be a non-empty string, got ''"),
]


@pytest.mark.parametrize("opts, message", OPTION_CASES, ids=[str(c[0]) for c in OPTION_CASES])
def test_pipeline_options(tmp_path, digits_small, vgg, opts, message):
    raises_exactly(InputError, message, pipeline(vgg, digits_small, tmp_path / "prj", **opts), where=tmp_path)


def test_pipeline_unknown_part(tmp_path, digits_small, vgg):
    from fpgacnn.estimate.parts import known_parts

    msg = (f"unknown part 'xc7z0200clg400-1'; known parts: {', '.join(known_parts())} "
           "(or pass Part(name, dsp=..., bram_18k=..., lut=..., ff=...))")
    raises_exactly(InputError, msg, pipeline(vgg, digits_small, tmp_path / "prj", part="xc7z0200clg400-1"),
                   where=tmp_path)


def test_pipeline_output_path_is_a_file(tmp_path, digits_small, vgg):
    (tmp_path / "prj").write_text("a file")
    raises_exactly(InputError, f"output path '{tmp_path / 'prj'}' exists and is not a directory",
                   pipeline(vgg, digits_small, tmp_path / "prj"), where=tmp_path)


def test_budget_nothing_can_meet(tmp_path, digits_small, vgg):
    from fpgacnn.estimate.fit import fit

    s = digits_small
    msg = (r"no design fits xc7z007s at 1e\+07 fps, 100 MHz, 80% utilization; \w+: needs .* over "
           r"\(closest point: keep 0\.25, 4 bits\)")
    raises_exactly(BudgetError, msg, lambda: fit(vgg, s.x_train, s.y_train, part="xc7z007s", fps=1e7,
                                                 keep_grid=(0.25,), bits_grid=(4,), representative=50),
                   where=tmp_path, regex=True)


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
