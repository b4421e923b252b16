"""Fine-tuning options: seeded augmentation views and the cosine schedule."""
from __future__ import annotations

import numpy as np
import pytest
from tensorflow import keras

from fpgacnn.distill import augment_images, finetune
from fpgacnn.errors import InputError


def _images(n=64, seed=0):
    return np.random.default_rng(seed).random((n, 8, 8, 2)).astype("float32") + 0.5  # no zeros


def test_views_are_seeded_shifted_with_zero_fill_and_flipped():
    x = _images()
    a, b = augment_images(x, 1), augment_images(x, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, augment_images(x, 2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert np.any(a == 0.0)  # shifted-in pixels are zero
    # every view is one of the 2 x 9 x 9 flipped/shifted copies of its image
    for i in range(8):
        found = False
        for src in (x[i], x[i, :, ::-1]):
            for dy in range(-4, 5):
                for dx in range(-4, 5):
                    shifted = np.zeros_like(src)
                    shifted[max(dy, 0):8 + min(dy, 0), max(dx, 0):8 + min(dx, 0)] = \
                        src[max(-dy, 0):8 + min(-dy, 0), max(-dx, 0):8 + min(-dx, 0)]
                    found |= np.array_equal(shifted, a[i])
        assert found


def test_shift_only_never_flips():
    x = np.zeros((200, 8, 8, 1), dtype="float32")
    x[:, 4, 0, 0] = 1.0  # a dot in the left column: a flip would move it to the right half
    v = augment_images(x, 0, "shift", max_shift=1)
    cols = np.argwhere(v[..., 0] == 1.0)[:, 2]
    assert cols.max() <= 1


@pytest.mark.parametrize("kwargs,match", [
    ({"augment": "rotate"}, "augmentation"),
    ({"lr_schedule": "step"}, "schedule"),
])
def test_bad_options_are_input_errors(kwargs, match):
    m = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(InputError, match=match):
        finetune(m, _images(8), np.zeros(8, int), epochs=1, **kwargs)


def test_augmentation_needs_images():
    m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    with pytest.raises(InputError, match="images"):
        finetune(m, np.ones((8, 5), "float32"), np.zeros(8, int), epochs=1, augment="shift")


def test_augmented_cosine_distillation_learns_and_keeps_the_best_epoch():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 256)
    x = rng.random((256, 8, 8, 1)).astype("float32") * 0.2
    x[y == 1] += 0.6  # bright images are class 1, wherever they are shifted
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.GlobalMaxPooling2D(),
                                keras.layers.Dense(2)])  # right on every shifted view
    teacher.set_weights([np.array([[-20.0, 20.0]]), np.array([8.0, -8.0])])
    student = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.GlobalMaxPooling2D(),
                                keras.layers.Dense(2, kernel_initializer="zeros")])
    finetune(student, x, y, teacher=teacher, epochs=10, batch_size=16, learning_rate=5e-2, augment="flip_shift",
             lr_schedule="cosine", temperature=2.0, x_val=x[:64], y_val=y[:64])
    acc = np.mean(np.argmax(student.predict(x, verbose=0), axis=1) == y)
    assert acc > 0.9
    assert float(keras.backend.get_value(student.optimizer.learning_rate)) < 5e-2 * 1e-3  # last step: cosine near 0


def test_teacher_logits_are_reused_per_view_but_never_for_a_changed_teacher():
    from fpgacnn import distill

    class Counting:
        def __init__(self, model):
            self.model, self.calls = model, 0

        def get_weights(self):
            return self.model.get_weights()

        def predict(self, x, **kw):
            self.calls += 1
            return self.model.predict(x, **kw)

    keras.utils.set_random_seed(0)
    t = Counting(keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Flatten(), keras.layers.Dense(2)]))
    v = augment_images(_images(16), 0)
    a = distill._teacher_logits(t, v)
    np.testing.assert_array_equal(distill._teacher_logits(t, v), a)
    assert t.calls == 1
    distill._teacher_logits(t, augment_images(_images(16), 1))
    assert t.calls == 2
    t.model.set_weights([w + 1.0 for w in t.model.get_weights()])
    assert not np.array_equal(distill._teacher_logits(t, v), a) and t.calls == 3
