"""CIFAR-10 for the benchmarks, read straight from the JPEG zip in ``../shared/datasets``.

The zip holds ``train/<class>/NNNN.jpg`` (5,000 per class) and ``test/<class>/NNNN.jpg``
(1,000 per class); classes in alphabetical order are label indices 0..9. Decoding 60,000
JPEGs takes a minute, so the decoded uint8 arrays are cached as ``.npy`` under
``benchmarks/work/`` (git-ignored). Validation images are carved out of train/ with a
seeded, stratified split: every tuning decision uses them, never test/.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from fpgacnn.data import Split

ROOT = Path(__file__).resolve().parents[1]
ZIP = ROOT.parent / "shared" / "datasets" / "cifar10-jpg.zip"
WORK = ROOT / "benchmarks" / "work"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def decode(zip_path: Path = ZIP, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """All images of one split as uint8 (N, 32, 32, 3) and their labels, in zip order."""
    from PIL import Image

    xs, ys = [], []
    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith(f"{split}/") and n.endswith(".jpg"))
        for name in names:
            cls = name.split("/")[1]
            with Image.open(io.BytesIO(zf.read(name))) as img:
                xs.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
            ys.append(CLASSES.index(cls))
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def cached(split: str, zip_path: Path = ZIP, work: Path = WORK) -> tuple[np.ndarray, np.ndarray]:
    """``decode`` once, then read the ``.npy`` cache."""
    work.mkdir(parents=True, exist_ok=True)
    fx, fy = work / f"cifar10_{split}_x.npy", work / f"cifar10_{split}_y.npy"
    if not (fx.exists() and fy.exists()):
        if not zip_path.exists():
            raise SystemExit(f"CIFAR-10 zip not found at {zip_path}")
        x, y = decode(zip_path, split)
        np.save(fx, x)
        np.save(fy, y)
    return np.load(fx), np.load(fy)


def load(val_per_class: int = 500, seed: int = 0) -> Split:
    """train/ split into train and a stratified validation set; test/ untouched."""
    x, y = cached("train")
    xt, yt = cached("test")
    rng = np.random.default_rng(seed)
    val_idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:val_per_class] for c in range(10)])
    is_val = np.zeros(len(y), dtype=bool)
    is_val[val_idx] = True
    train_idx = rng.permutation(np.flatnonzero(~is_val))
    scale = np.float32(1 / 255)
    return Split(x[train_idx].astype(np.float32) * scale, y[train_idx],
                 x[is_val].astype(np.float32) * scale, y[is_val],
                 xt.astype(np.float32) * scale, yt, classes=list(CLASSES))


if __name__ == "__main__":
    d = load()
    print({k: v.shape for k, v in vars(d).items()})
