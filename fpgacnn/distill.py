"""Fine-tuning with knowledge distillation (Hinton, Vinyals, Dean 2015).

A trimmed or quantized student recovers faster, and keeps the teacher's decisions on
hard images, when it matches the teacher's softened outputs as well as the labels:

    loss = T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + α · CE(labels, student)

Teacher logits are computed once before training (fixed data, no augmentation), so a
fine-tuning epoch costs the same as plain training.
"""
from __future__ import annotations

import numpy as np


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
             temperature: float = 4.0, alpha: float = 0.5, teacher_input=None, desc: str = "fine-tune"):
    """Fine-tune ``student`` in place on integer labels ``y``, distilled from ``teacher`` if given.

    ``teacher_input`` lets the teacher see other inputs than the student (e.g. float images
    while a quantized student sees them snapped to its input grid).
    """
    from tensorflow import keras

    from .progress import epoch_callback

    keras.utils.set_random_seed(seed)
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
    student.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    student.fit(x, targets, validation_data=val, epochs=int(epochs), batch_size=int(batch_size),
                callbacks=callbacks, shuffle=True, verbose=0)
    return student
