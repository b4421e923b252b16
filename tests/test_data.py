import numpy as np
import pytest

from fpgacnn.data import check_images, check_labels, load_digits_split, load_npz_split
from fpgacnn.errors import DataError


def test_digits_split_is_stratified_and_on_the_sixteenth_grid():
    s = load_digits_split(seed=0)
    assert s.x_train.shape[1:] == (8, 8, 1) and len(s.classes) == 10
    assert len(s.x_train) + len(s.x_val) + len(s.x_test) == 1797
    assert set(np.unique(s.y_test)) == set(range(10))
    assert np.all(s.x_train * 16 == np.round(s.x_train * 16)) and s.x_train.max() <= 1.0


def test_digits_split_is_seeded():
    a, b = load_digits_split(seed=3), load_digits_split(seed=3)
    assert np.array_equal(a.x_test, b.x_test)


@pytest.mark.parametrize("x, msg", [
    (np.zeros((4, 8, 8)), "shape"),
    (np.zeros((4, 8, 9, 1)), "shape"),
    (np.zeros((0, 8, 8, 1)), "empty"),
    (np.full((2, 8, 8, 1), np.nan), "NaN"),
    (np.array([["a"]]), "numeric"),
])
def test_bad_images(x, msg):
    with pytest.raises(DataError, match=msg):
        check_images(x, (8, 8, 1))


def test_bad_labels():
    with pytest.raises(DataError, match="labels in"):
        check_labels(np.array([0, 10]), 2, 10)
    with pytest.raises(DataError, match="shape"):
        check_labels(np.array([0, 1, 2]), 2, 10)


def test_npz_single_class_and_missing_keys(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((20, 8, 8, 1)), y=np.zeros(20, int))
    with pytest.raises(DataError, match="single class"):
        load_npz_split(p)
    np.savez(p, images=np.zeros((2, 8, 8, 1)))
    with pytest.raises(DataError, match="must contain"):
        load_npz_split(p)
    with pytest.raises(DataError, match="does not exist"):
        load_npz_split(tmp_path / "nope.npz")
