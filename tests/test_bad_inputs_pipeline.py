"""Bad inputs to the whole pipeline: refused before any training, exact error, nothing written.

Every case runs ``run_pipeline`` (or ``fit``) with ``finetune_epochs=0``; a case that
reached training would be slow and would write the project directory.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from bad_inputs_common import NONE_SHAPE, free_size_model, pipeline, raises_exactly
from fpgacnn.errors import BudgetError, DataError, InputError, UnsupportedLayerError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
