"""``quantize``: float Keras CNN -> QKeras model that hls4ml turns into bit-exact C++.

In order:

1. walk the model as a DAG (Sequential, functional chains, residual ``Add`` and
   ``Concatenate`` blocks) and turn it into ops with BatchNorm folded in (``ops.py``);
2. with representative inputs ``x``, run the folded float model on them and summarise every
   ReLU output, batch by batch (calibration: activation ranges, no labels needed);
3. pick widths and integer bits per tensor (``policy.py``: uniform, per-layer or
   ``"range"``) and rebuild the model with QKeras quantizers (``build.py``);
4. with labels ``y`` as well, fine-tune quantization-aware (optionally distilled from a
   float teacher) on ``x`` snapped to the hardware's input grid.

Without ``y`` it is a post-training conversion: the weights are the folded float weights
(QKeras quantizes them on the fly) and only the activation ranges come from ``x``.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError, InputError
from .build import build_model
from .ops import LINEAR, model_ops
from .policy import choose_widths, parse_bits
from .ranges import MagnitudeStats
from ..validate import check_input_shape, check_model_weights

__all__ = ["quantize", "fold_batchnorm", "snap_inputs"]


def fold_batchnorm(model):
    """The float model with BatchNormalization folded away and Dropout/final softmax removed.

    Same function as ``model`` up to float rounding (and logits instead of softmax).
    """
    in_name, ops, output = model_ops(model, True)
    return build_model(model.name, model.input_shape[1:], in_name, ops, output)


def snap_inputs(x, spec=None, bits: int = 8):
    """Map float inputs onto the fixed-point input grid the generated design uses.

    ``spec`` is an ``InputSpec`` (see ``fpgacnn.hls.precision.input_spec``); without it one
    is derived from ``x`` and ``bits``. Values are rounded to the nearest grid point (ties to
    even) and saturated to the type's range. Returns float32 values that are exactly
    representable in the input type.
    """
    from ..hls.precision import input_spec

    x = np.asarray(x)
    spec = spec or input_spec(x, bits)
    return spec.snap(x)


def _check_xy(model, x, y):
    if x is None:
        if y is not None:
            raise DataError("labels y given without inputs x")
        return None, None
    x = np.asarray(x, dtype=np.float32)
    want = tuple(model.input_shape[1:])
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise DataError(f"inputs have shape {x.shape[1:]}, the model wants {want}")
    if not np.all(np.isfinite(x)):
        raise DataError("inputs contain NaN or infinity")
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise DataError(f"{len(x)} inputs but {len(y)} labels")
    return x, y


def _loss_for(y, n_out):
    from tensorflow import keras

    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        if np.issubdtype(y.dtype, np.integer) or np.all(np.equal(np.mod(y, 1), 0)):
            if int(np.max(y)) >= n_out or int(np.min(y)) < 0:
                raise DataError(f"labels must lie in [0, {n_out}), got [{np.min(y)}, {np.max(y)}]")
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True), y.reshape(-1).astype(np.int64)
    if y.ndim == 2 and y.shape[1] == n_out:
        if np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
            return keras.losses.CategoricalCrossentropy(from_logits=True), y.astype(np.float32)
        return keras.losses.MeanSquaredError(), y.astype(np.float32)
    raise DataError(f"labels of shape {y.shape} do not fit a model with {n_out} outputs")


def calibrate(model, in_name: str, ops, output: str, x, batch_size: int = 256) -> dict:
    """ReLU op name -> ``MagnitudeStats`` of its float outputs on ``x`` (folded float model),
    batch by batch: memory does not grow with ``len(x)``."""
    from tensorflow import keras

    relus = [op.name for op in ops if op.kind == "relu"]
    if x is None or len(x) == 0 or not relus:
        return {}
    fm = build_model(model.name, model.input_shape[1:], in_name, ops, output)
    probe = keras.Model(fm.inputs, [fm.get_layer(n).output for n in relus])
    stats = {n: MagnitudeStats() for n in relus}
    for start in range(0, len(x), batch_size):
        vals = probe.predict_on_batch(x[start:start + batch_size])
        for n, v in zip(relus, vals if isinstance(vals, (list, tuple)) else [vals]):
            stats[n].update(np.asarray(v))
    return stats


def quantize(model, bits=8, x=None, y=None, epochs: int = 2, *, batch_size: int = 64, seed: int = 0,
             learning_rate: float = 1e-3, fold_batchnorm: bool = True, int_bits: int | None = None,
             bias_bits: int | None = None, input_bits: int = 8, input_type=None, teacher=None,
             temperature: float = 4.0, alpha: float = 0.5):
    """QKeras version of ``model``; widths from ``bits`` (int, ``{layer: bits}`` or ``"range"``).

    ``x`` (optional) sets the ReLU integer bits (and, for ``"range"``, the widths) from
    observed activations; labels are not needed for that. With ``y`` too, the model is
    fine-tuned quantization-aware for ``epochs`` epochs on ``x`` snapped to the
    ``input_bits`` input grid. Without ``y`` it is a post-training conversion. The result
    outputs logits (a final softmax is removed). Deterministic for a given ``seed``.
    ``input_type`` (an ``InputSpec``) fixes the input grid; pass the same one to ``generate``.
    With a float ``teacher`` (classification labels only), QAT is distilled from it (see
    ``fpgacnn.distill``), which keeps the quantized model's decisions close to the float one's.
    ``bias_bits`` sets the bias width for int/dict policies (default: the layer's width).
    """
    from tensorflow import keras

    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0 \
            or isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError("epochs must be an integer >= 0 and batch_size an integer >= 1")
    parse_bits(bits)  # a bad policy fails before any work
    check_input_shape(model)
    check_model_weights(model, "quantize")
    x, y = _check_xy(model, x, y)
    in_name, ops, output = model_ops(model, fold_batchnorm)
    if not any(op.kind in LINEAR for op in ops):
        raise InputError("model has no Conv2D/Dense layer to quantize")
    keras.utils.set_random_seed(int(seed))
    acts = calibrate(model, in_name, ops, output, x)
    widths = choose_widths(ops, bits, acts, int_bits=int_bits, bias_bits=bias_bits)
    qmodel = build_model(model.name, model.input_shape[1:], in_name, ops, output, widths)
    if y is not None and epochs > 0 and len(x) > 0:
        import tensorflow as tf

        try:
            tf.config.experimental.enable_op_determinism()
        except Exception:  # older TF or already enabled
            pass
        loss, yt = _loss_for(y, int(qmodel.output_shape[-1]))
        xt = snap_inputs(x, spec=input_type, bits=input_bits)
        if teacher is not None and yt.ndim == 1:
            from ..distill import finetune

            finetune(qmodel, xt, yt, teacher=teacher, teacher_input=x, epochs=int(epochs),
                     batch_size=int(batch_size), learning_rate=learning_rate, seed=int(seed),
                     temperature=temperature, alpha=alpha)
        else:
            qmodel.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss)
            qmodel.fit(xt, yt, epochs=int(epochs), batch_size=int(batch_size), shuffle=True, verbose=0)
    return qmodel
