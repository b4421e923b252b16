"""Fine-tuning with knowledge distillation (Hinton, Vinyals, Dean 2015).

A trimmed or quantized student recovers faster, and keeps the teacher's decisions on
hard images, when it matches the teacher's softened outputs as well as the labels:

    loss = T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + α · CE(labels, student)

Without augmentation the teacher logits are computed once before training, so a
fine-tuning epoch costs the same as plain training. With augmentation (random flips and
shifts, the usual recipe for natural images) every epoch sees a new seeded view of the
images and the teacher is run once per view: a trimmed network recovers far more from
augmented, distilled epochs than from repeated ones, and restarting Adam at full rate
on an inherited network undoes part of what it inherited, hence the cosine decay.
"""
from __future__ import annotations

import numpy as np

from fpgacnn.errors import InputError

AUGMENTATIONS = ("shift", "flip_shift")
LR_SCHEDULES = ("constant", "cosine")


def check_finetune_options(options) -> dict:
    """The ``finetune_options`` that schedules and ``fit`` pass on to ``fpgacnn.distill.finetune``."""
    allowed = {"augment", "lr_schedule"}
    if options is None:
        return {}
    if not isinstance(options, dict) or set(options) - allowed:
        raise InputError(f"finetune_options must be a dict with keys from {sorted(allowed)}, got {options!r}")
    return dict(options)


def augment_images(x, seed: int, mode: str = "flip_shift", max_shift: int = 4) -> np.ndarray:
    """A seeded random view of NHWC images: shifts of up to ``max_shift`` pixels (zero fill),
    and for ``"flip_shift"`` also horizontal flips of half the images. Deterministic in
    ``seed`` so that a fine-tuning run, and any cache of teacher outputs, is reproducible."""
    if mode not in AUGMENTATIONS:
        raise InputError(f"unknown augmentation '{mode}' (choose from {', '.join(AUGMENTATIONS)})")
    x = np.asarray(x)
    if x.ndim != 4:
        raise InputError(f"augmentation needs images (batch, height, width, channels), got shape {x.shape}")
    rng = np.random.default_rng(seed)
    n, h, w, _ = x.shape
    src = x
    if mode == "flip_shift":
        flip = rng.random(n) < 0.5
        src = x.copy()
        src[flip] = x[flip, :, ::-1]
    dy = rng.integers(-max_shift, max_shift + 1, n)
    dx = rng.integers(-max_shift, max_shift + 1, n)
    out = np.zeros_like(x)
    for sy in np.unique(dy):
        for sx in np.unique(dx):
            idx = np.flatnonzero((dy == sy) & (dx == sx))
            if len(idx) == 0 or abs(sy) >= h or abs(sx) >= w:
                continue
            out[idx, max(sy, 0):h + min(sy, 0), max(sx, 0):w + min(sx, 0)] = \
                src[idx, max(-sy, 0):h + min(-sy, 0), max(-sx, 0):w + min(-sx, 0)]
    return out


def distillation_loss(n_classes: int, temperature: float = 4.0, alpha: float = 0.5):
    """Keras loss on packed targets ``[one-hot labels | teacher logits]`` and student logits."""
    import tensorflow as tf

    t = float(temperature)

    def loss(packed, student_logits):
        labels, teacher_logits = packed[:, :n_classes], packed[:, n_classes:]
        p_teacher = tf.nn.softmax(teacher_logits / t)
        log_p_student = tf.nn.log_softmax(student_logits / t)
        log_p_teacher = tf.nn.log_softmax(teacher_logits / t)
        kl = tf.reduce_sum(p_teacher * (log_p_teacher - log_p_student), axis=-1)
        ce = tf.keras.losses.categorical_crossentropy(labels, student_logits, from_logits=True)
        return t * t * kl + alpha * ce

    return loss


def finetune(student, x, y, *, teacher=None, epochs: int = 10, batch_size: int = 64,
             learning_rate: float = 1e-3, seed: int = 0, x_val=None, y_val=None,
             temperature: float = 4.0, alpha: float = 0.5, teacher_input=None, desc: str = "fine-tune",
             augment: str | None = None, lr_schedule: str = "constant"):
    """Fine-tune ``student`` in place on integer labels ``y``, distilled from ``teacher`` if given.

    ``teacher_input`` lets the teacher see other inputs than the student (e.g. float images
    while a quantized student sees them snapped to its input grid). ``augment``
    (``"shift"`` or ``"flip_shift"``, see ``augment_images``) trains on a new view of the
    images every epoch; ``lr_schedule="cosine"`` decays the rate to zero over the run.
    """
    from tensorflow import keras

    from .progress import epoch_callback

    if augment is not None and augment not in AUGMENTATIONS:
        raise InputError(f"unknown augmentation '{augment}' (choose from {', '.join(AUGMENTATIONS)})")
    if lr_schedule not in LR_SCHEDULES:
        raise InputError(f"unknown learning-rate schedule '{lr_schedule}' (choose from {', '.join(LR_SCHEDULES)})")
    if augment is not None and teacher_input is not None:
        raise InputError("augmentation with a separate teacher input is not supported")
    keras.utils.set_random_seed(seed)
    rate = learning_rate
    if lr_schedule == "cosine":
        steps = max(1, int(epochs) * int(np.ceil(len(x) / int(batch_size))))
        rate = keras.optimizers.schedules.CosineDecay(float(learning_rate), steps)
    if augment is not None:
        return _finetune_augmented(student, x, y, teacher, int(epochs), int(batch_size), rate, seed, x_val, y_val,
                                   temperature, alpha, augment, desc)
    n = int(student.output_shape[-1])
    y = np.asarray(y).astype(np.int64)
    callbacks = [epoch_callback(int(epochs), desc)]
    if teacher is None:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        targets = y
        val = (x_val, y_val) if x_val is not None and len(x_val) else None
    else:
        loss = distillation_loss(n, temperature, alpha)
        t_in = x if teacher_input is None else teacher_input
        teacher_logits = teacher.predict(t_in, batch_size=256, verbose=0).astype(np.float32)
        targets = np.concatenate([np.eye(n, dtype=np.float32)[y], teacher_logits], axis=1)
        val = None
        if x_val is not None and len(x_val):
            tv = teacher.predict(x_val, batch_size=256, verbose=0).astype(np.float32)
            val = (x_val, np.concatenate([np.eye(n, dtype=np.float32)[np.asarray(y_val)], tv], axis=1))
    if val is not None:
        callbacks.append(keras.callbacks.EarlyStopping(patience=5, restore_best_weights=True))
    student.compile(optimizer=keras.optimizers.Adam(rate), loss=loss)
    student.fit(x, targets, validation_data=val, epochs=int(epochs), batch_size=int(batch_size),
                callbacks=callbacks, shuffle=True, verbose=0)
    return student


_TEACHER_CACHE: dict = {}
_TEACHER_CACHE_VIEWS = 64  # about 2 MB per 50k-image view of 10 logits


def _teacher_logits(teacher, view) -> np.ndarray:
    """The teacher's logits on one view, remembered for this process.

    Views are seeded, so fine-tuning several students from one teacher (the candidates of
    ``fit``, the rounds of a schedule) sees the same views; the teacher is usually the
    largest network in the loop, so running it once per view instead of once per student
    is most of the cost. Keyed by the bytes of the view *and* of the teacher's weights, so
    a teacher that changed is never answered from the cache.
    """
    import hashlib

    key = (hashlib.sha1(np.ascontiguousarray(view).tobytes()).hexdigest(),
           hashlib.sha1(b"".join(np.ascontiguousarray(w).tobytes() for w in teacher.get_weights())).hexdigest())
    if key not in _TEACHER_CACHE:
        if len(_TEACHER_CACHE) >= _TEACHER_CACHE_VIEWS:
            _TEACHER_CACHE.pop(next(iter(_TEACHER_CACHE)))
        from tensorflow import keras

        logits = predict_in_batches(teacher, view) if isinstance(teacher, keras.Model) else \
            teacher.predict(view, batch_size=256, verbose=0)
        _TEACHER_CACHE[key] = np.asarray(logits, dtype=np.float32)
    return _TEACHER_CACHE[key]


def predict_in_batches(model, x, batch_size: int = 256) -> np.ndarray:
    """``model.predict`` without handing Keras the whole array: ``predict``/``fit`` on a
    NumPy array copy it into a dataset, and one such copy per epoch of 50,000 CIFAR
    images let a fine-tuning process grow past 13 GB."""
    return np.concatenate([np.asarray(model.predict_on_batch(x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])


def _finetune_augmented(student, x, y, teacher, epochs, batch_size, rate, seed, x_val, y_val,
                        temperature, alpha, augment, desc):
    """Batch by batch on each epoch's view (``fit`` on a new array every epoch kept a copy
    of each view alive: 0.5 GB per CIFAR epoch); the weights with the best validation
    loss are kept (the early-stopping rule of the fixed-data path)."""
    from tensorflow import keras

    from .progress import bar

    n = int(student.output_shape[-1])
    y = np.asarray(y).astype(np.int64)
    onehot = np.eye(n, dtype=np.float32)[y]
    loss = distillation_loss(n, temperature, alpha) if teacher is not None else \
        keras.losses.CategoricalCrossentropy(from_logits=True)
    val = None
    if x_val is not None and len(x_val):
        yv = np.eye(n, dtype=np.float32)[np.asarray(y_val).astype(np.int64)]
        val = (x_val, yv if teacher is None else
               np.concatenate([yv, teacher.predict(x_val, batch_size=256, verbose=0).astype(np.float32)], axis=1))
    student.compile(optimizer=keras.optimizers.Adam(rate), loss=loss)
    best, best_weights = np.inf, None
    progress = bar(total=epochs, desc=desc, unit="epoch")
    for epoch in range(epochs):
        view = augment_images(x, seed * 1009 + epoch, augment)
        targets = onehot if teacher is None else np.concatenate([onehot, _teacher_logits(teacher, view)], axis=1)
        order = np.random.default_rng(seed * 7919 + epoch).permutation(len(view))
        for i in range(0, len(view), batch_size):  # train_on_batch: Keras keeps no copy of the view
            idx = np.sort(order[i:i + batch_size])
            student.train_on_batch(view[idx], targets[idx])
        progress.update(1)
        if val is not None:
            v = float(student.evaluate(val[0], val[1], batch_size=256, verbose=0))
            if v < best:
                best, best_weights = v, student.get_weights()
    progress.close()
    if best_weights is not None:
        student.set_weights(best_weights)
    return student
