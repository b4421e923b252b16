"""Shared fixtures: small models trained once per session on the bundled digits."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    from fpgacnn.data import load_digits_split

    return load_digits_split(seed=0)


@pytest.fixture(scope="session")
def trained_small_vgg(digits):
    """A narrow VGG (8/16 filters) trained for a few seconds: ~97% on digits."""
    from fpgacnn.zoo import small_vgg, train

    model = small_vgg(widths=(8, 16), dense=32, seed=0)
    train(model, digits.x_train, digits.y_train, digits.x_val, digits.y_val, epochs=25, seed=0)
    return model
