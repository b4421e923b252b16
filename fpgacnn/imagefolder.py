"""Camera images from a folder with one subfolder per class.

Preprocessing (resize, colour mode, ``x = pixel * scale + offset``) is one explicit
recipe, recorded in the project so the camera side and the testbench apply the same one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff"}


@dataclass(frozen=True)
class Preprocessing:
    image_size: tuple[int, int]          # (height, width) after resize
    color_mode: str = "rgb"              # "rgb" or "grayscale"
    scale: float = 1.0 / 256.0  # pixel p -> p/256: exactly on the ap_ufixed<8,0> grid
    offset: float = 0.0
    resample: str = "bilinear"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size)
        d["formula"] = "x = pixel * scale + offset (pixel in 0..255 after resize)"
        return d


def load_image_folder(root, pre: Preprocessing):
    """(x, y, classes): x float32 NHWC, y int labels, classes sorted alphabetically."""
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder '{root}' does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"image folder '{root}' needs at least two class subfolders, found {len(classes)}")
    mode = "RGB" if pre.color_mode == "rgb" else "L"
    h, w = pre.image_size
    resample = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST}[pre.resample]
    xs, ys = [], []
    for label, cls in enumerate(classes):
        files = sorted(p for p in (root / cls).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"class folder '{root / cls}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for f in files:
            try:
                with Image.open(f) as img:
                    arr = np.asarray(img.convert(mode).resize((w, h), resample), dtype=np.float32)
            except Exception as exc:
                raise DataError(f"cannot read image '{f}': {exc}") from None
            xs.append(arr if arr.ndim == 3 else arr[..., None])
            ys.append(label)
    x = np.stack(xs) * np.float32(pre.scale) + np.float32(pre.offset)
    return x.astype(np.float32), np.asarray(ys, dtype=np.int64), classes
