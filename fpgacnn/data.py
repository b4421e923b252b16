"""Bundled data for the demo and tests, and the checks every stage applies to user data.

The demo uses scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): it ships
inside the installed package, so nothing is downloaded and CI needs no network.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]


def load_digits_split(seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Split:
    """Digits as NHWC float32 in [0, 1] (pixel / 16), stratified train/val/test split.

    Pixels are integers 0..16, so ``x = pixel / 16`` sits exactly on a 1/16 grid: any
    fixed-point input type with at least 4 fractional bits represents it without error.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[..., None]
    y = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=y_rest
    )
    return Split(x_train, y_train, x_val, y_val, x_test, y_test, [str(c) for c in digits.target_names])


def check_images(x, input_shape, what: str = "x") -> np.ndarray:
    """Images as float32 NHWC matching ``input_shape`` (without batch), or a DataError."""
    x = np.asarray(x)
    if x.dtype == object or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise DataError(f"{what} must be a real numeric array, got dtype {x.dtype}")
    expected = tuple(int(d) if d is not None else None for d in input_shape)
    if x.ndim != len(expected) + 1 or any(e is not None and e != s for e, s in zip(expected, x.shape[1:])):
        raise DataError(f"{what} has shape {x.shape}, the model expects (N, {', '.join(map(str, expected))})")
    if len(x) == 0:
        raise DataError(f"{what} is empty")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise DataError(f"{what} contains NaN or Inf")
    return x


def check_labels(y, n: int, n_classes: int, what: str = "y") -> np.ndarray:
    """Integer class labels (or one-hot) for ``n`` samples, each in [0, n_classes)."""
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool) or np.iscomplexobj(y):
        raise DataError(f"{what} must be numeric class labels, got dtype {y.dtype}")
    if y.ndim == 2 and y.shape[1] == n_classes:
        y = y.argmax(axis=1)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{what} has shape {y.shape}, expected ({n},) integer labels")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise DataError(f"{what} must hold integer class labels")
        y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise DataError(f"{what} has labels in [{y.min()}, {y.max()}], the model has {n_classes} outputs")
    return y.astype(np.int64)


def load_npz_split(path, seed: int = 0, classes=None) -> Split:
    """User data from an .npz: either x_train/y_train/x_test/y_test (x_val/y_val optional)
    or plain x/y, which is split 70/10/20 stratified with ``seed``."""
    from pathlib import Path

    from sklearn.model_selection import train_test_split

    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file '{path}' does not exist")
    try:
        npz = np.load(path, allow_pickle=False)
        arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise DataError(f"cannot read data file '{path}' as .npz: {exc}") from None
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        x_val, y_val = arrays.get("x_val"), arrays.get("y_val")
        if x_val is None:
            x_val, y_val = arrays["x_test"][:0], arrays["y_test"][:0]
        parts = (arrays["x_train"], arrays["y_train"], x_val, y_val, arrays["x_test"], arrays["y_test"])
    elif {"x", "y"} <= arrays.keys():
        x, y = arrays["x"], arrays["y"]
        if len(x) != len(y):
            raise DataError(f"'{path}': x has {len(x)} samples but y has {len(y)}")
        labels = y.argmax(1) if y.ndim == 2 else y
        if len(np.unique(labels)) < 2:
            raise DataError(f"'{path}': the labels hold a single class; need at least two")
        x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=labels)
        lr = y_rest.argmax(1) if y_rest.ndim == 2 else y_rest
        x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.125, random_state=seed, stratify=lr)
        parts = (x_train, y_train, x_val, y_val, x_test, y_test)
    else:
        raise DataError(f"'{path}' must contain arrays x and y, or x_train, y_train, x_test and y_test; found {sorted(arrays)}")
    n_classes = int(max(np.max(p.argmax(1) if p.ndim == 2 else p) for p in parts[1::2] if len(p)) + 1)
    classes = list(classes) if classes else [str(i) for i in range(n_classes)]
    return Split(*parts, classes=classes)
