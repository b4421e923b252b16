"""What the bad-input tests share: 'nothing was written' as equal trees, exact errors, tiny models."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

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


def pipeline(model, split, out, **opts):
    from fpgacnn.pipeline import PipelineOptions, run_pipeline

    base = dict(finetune_epochs=0, qat_epochs=0, csim_samples=10)
    return lambda: run_pipeline(model, split, out, PipelineOptions(**{**base, **opts}))


def free_size_model():
    from tensorflow import keras

    L = keras.layers
    i = keras.Input((None, None, 1), name="img")
    h = L.MaxPooling2D(name="pool")(L.Conv2D(2, 3, activation="relu", name="c1")(i))
    return keras.Model(i, L.Conv2D(3, 2, name="head")(h))


NONE_SHAPE = ("model input shape (None, None, None, 1) has unknown dimensions; the hardware needs a fixed input "
              "size: rebuild the model with keras.Input(shape=(height, width, channels))")
