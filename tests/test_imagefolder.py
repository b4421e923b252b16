import numpy as np
import pytest

from fpgacnn.errors import DataError
from fpgacnn.imagefolder import Preprocessing, load_image_folder


@pytest.fixture()
def folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, level in (("cat", 40), ("dog", 200)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            arr = np.clip(rng.normal(level, 5, (20, 30, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    return tmp_path


def test_loads_resizes_and_scales(folder):
    pre = Preprocessing((8, 12), "rgb", scale=1 / 256, offset=0.0)
    x, y, classes = load_image_folder(folder, pre)
    assert classes == ["cat", "dog"] and x.shape == (6, 8, 12, 3) and x.dtype == np.float32
    assert list(y) == [0, 0, 0, 1, 1, 1]
    assert 0.1 < x[y == 0].mean() < 0.2 and 0.7 < x[y == 1].mean() < 0.85
    np.testing.assert_array_equal(x * 256, np.round(x * 256))  # pixel/256: on the input grid


def test_grayscale_and_recorded_recipe(folder):
    pre = Preprocessing((4, 4), "grayscale", scale=1 / 255, offset=-0.5)
    x, _, _ = load_image_folder(folder, pre)
    assert x.shape == (6, 4, 4, 1) and x.min() >= -0.5 and x.max() <= 0.5
    d = pre.to_dict()
    assert d["image_size"] == [4, 4] and d["color_mode"] == "grayscale" and "formula" in d


def test_bad_folders(tmp_path, folder):
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "nope", Preprocessing((4, 4)))
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a").mkdir()
    with pytest.raises(DataError, match="at least two class"):
        load_image_folder(tmp_path / "only", Preprocessing((4, 4)))
    (folder / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        load_image_folder(folder, Preprocessing((4, 4)))
    (folder / "empty" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        load_image_folder(folder, Preprocessing((4, 4)))
