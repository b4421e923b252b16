"""Shared fixtures: small models trained once per session on the bundled digits."""
from __future__ import annotations

import dataclasses
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


@pytest.fixture(scope="session")
def digits_small(digits):
    """A few digits per split: enough for inputs that must be refused before any training."""
    s = digits
    return dataclasses.replace(s, x_train=s.x_train[:200], y_train=s.y_train[:200], x_val=s.x_val[:40],
                               y_val=s.y_val[:40], x_test=s.x_test[:60], y_test=s.y_test[:60])


@pytest.fixture(scope="session")
def vgg():
    """An untrained two-block VGG of 2 kernels per conv, for the same purpose."""
    from fpgacnn.zoo import small_vgg

    return small_vgg(widths=(2, 2), dense=4, seed=0)
