"""Small reference CNNs the demo and tests train from scratch.

VGG-style (stacks of 3x3 conv + BN + ReLU, then max-pooling, then a dense head) because
that is the layout relevance trimming was shown on, and every layer maps to hls4ml's
io_stream implementation.
"""
from __future__ import annotations

import numpy as np


def small_vgg(input_shape=(8, 8, 1), n_classes: int = 10, widths=(16, 32), dense: int = 64,
              seed: int = 0, name: str = "small_vgg", *, convs_per_block=None, dropout: float = 0.25,
              bn_momentum: float = 0.9):
    """VGG blocks (``convs_per_block[i]`` convs of ``widths[i]`` kernels, two each by default)
    and a dense head; logits out (softmax on the host)."""
    from tensorflow import keras
    from tensorflow.keras import layers

    convs = (2,) * len(widths) if convs_per_block is None else tuple(convs_per_block)
    if len(convs) != len(widths):
        raise ValueError(f"convs_per_block {convs} needs one entry per width {tuple(widths)}")
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape=input_shape, name="image")
    h = inp
    for b, (width, n) in enumerate(zip(widths, convs), start=1):
        for c in range(1, n + 1):
            h = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{b}_conv{c}")(h)
            # momentum 0.9 by default: with ~20 steps an epoch the usual 0.99 leaves the moving
            # statistics far from the data and inference collapses to chance.
            h = layers.BatchNormalization(momentum=bn_momentum, name=f"block{b}_bn{c}")(h)
            h = layers.Activation("relu", name=f"block{b}_relu{c}")(h)
        h = layers.MaxPooling2D(2, name=f"block{b}_pool")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(dense, name="fc1")(h)
    h = layers.Activation("relu", name="fc1_relu")(h)
    h = layers.Dropout(dropout, name="fc1_dropout")(h)
    out = layers.Dense(n_classes, name="logits")(h)
    return keras.Model(inp, out, name=name)


def vgg16_layout(widths=(16, 32, 64, 128, 128), dense: int = 128, input_shape=(32, 32, 3),
                 n_classes: int = 10, seed: int = 0):
    """VGG16's 13 convolutions (blocks of 2-2-3-3-3) at the given widths: the CIFAR-10
    baseline of the trimming and fit benchmarks (full VGG16 is 64-128-256-512-512)."""
    return small_vgg(input_shape, n_classes, widths, dense, seed, "vgg16_small", convs_per_block=(2, 2, 3, 3, 3),
                     dropout=0.3, bn_momentum=0.99)


def compile_for_logits(model, learning_rate: float = 1e-3):
    from tensorflow import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train(model, x, y, x_val=None, y_val=None, epochs: int = 30, batch_size: int = 64,
          learning_rate: float = 1e-3, seed: int = 0, verbose: int = 0):
    """Seeded training with cross-entropy on logits and early stopping on validation loss."""
    from tensorflow import keras

    from .progress import epoch_callback

    keras.utils.set_random_seed(seed)
    compile_for_logits(model, learning_rate)
    callbacks = [epoch_callback(epochs, "train")]
    val = None
    if x_val is not None:
        val = (x_val, y_val)
        callbacks.append(keras.callbacks.EarlyStopping(patience=8, restore_best_weights=True))
    model.fit(x, y, validation_data=val, epochs=epochs, batch_size=batch_size,
              callbacks=callbacks, verbose=verbose, shuffle=True)
    return model


def accuracy(model, x, y, batch_size: int = 256) -> float:
    pred = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(pred, axis=1) == y))
