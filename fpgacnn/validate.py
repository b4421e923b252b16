"""Checks every entry point applies before it does any work.

A bad input should fail in the first second with a message naming the problem, not after
minutes of fine-tuning with a TypeError from deep inside TensorFlow or hls4ml, and not by
producing a project that computes garbage (NaN weights quantize to NaN without an error).
The stages call the pieces they need (``check_model_weights`` in trim, quantize and
generate; ``check_input_shape`` in generate); ``run_pipeline`` calls ``check_options``,
``check_pipeline_model`` and ``check_split`` up front, so an unsupported layer, a typo in
the part name or single-class data is reported before training starts.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import DataError, InputError

__all__ = ["check_hls_support", "check_input_shape", "check_model_weights", "check_options", "check_part",
           "check_pipeline_model", "check_split", "PIPELINE_BITS"]

# Above 16 bits the fixed-point sums can exceed float32's 24-bit mantissa, so QKeras (which
# computes in float32) is no longer an exact reference and csim could not be bit-exact.
PIPELINE_BITS = (2, 16)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_model_weights(model, what: str = "model") -> None:
    """Every weight finite: NaN/Inf weights (a diverged or corrupt model) quantize silently to garbage."""
    for layer in model.layers:
        for var in layer.weights:
            w = np.asarray(var.numpy() if hasattr(var, "numpy") else var)
            if w.dtype.kind in "fc" and not np.all(np.isfinite(w)):
                bad = "NaN" if np.isnan(w).any() else "infinite"
                raise InputError(f"{what}: layer '{layer.name}' has {bad} weights ({var.name}); "
                                 "the model is corrupt or its training diverged")


def check_input_shape(model) -> tuple[int, ...]:
    """The model's per-sample input shape, every dimension known (hardware has fixed buffers)."""
    from tensorflow import keras

    if not isinstance(model, keras.Model):
        raise InputError(f"expected a keras.Model, got {type(model).__name__}")
    if not model.built or not model.inputs:
        raise InputError(f"model '{model.name}' is not built; give it an Input shape first")
    for t in model.inputs:
        dims = tuple(t.shape[1:])
        if not dims or any(d is None for d in dims):
            shown = "(" + ", ".join("None" if d is None else str(d) for d in t.shape) + ")"
            raise InputError(f"model input shape {shown} has unknown dimensions; the hardware needs a fixed "
                             "input size: rebuild the model with keras.Input(shape=(height, width, channels))")
    return tuple(int(d) for d in model.inputs[0].shape[1:])


def check_part(part) -> None:
    """The part must be in the catalogue: a typo would otherwise surface only at synthesis time."""
    from .estimate.parts import get_part

    get_part(part)


def check_options(opts) -> None:
    """``PipelineOptions`` fields: types and ranges, checked before any work."""
    keep = opts.keep
    if isinstance(keep, bool) or not isinstance(keep, (int, float, np.integer, np.floating)) \
            or not 0.0 < float(keep) <= 1.0:
        raise InputError(f"keep must be a fraction in (0, 1], got {keep!r}")
    lo, hi = PIPELINE_BITS
    if not _is_int(opts.bits) or not lo <= opts.bits <= hi:
        raise InputError(f"bits must be an integer in [{lo}, {hi}], got {opts.bits!r}")
    for field in ("finetune_epochs", "qat_epochs", "seed"):
        v = getattr(opts, field)
        if not _is_int(v) or v < 0:
            raise InputError(f"{field} must be an integer >= 0, got {v!r}")
    for field in ("representative", "batch_size"):
        v = getattr(opts, field)
        if not _is_int(v) or v < 1:
            raise InputError(f"{field} must be a positive integer, got {v!r}")
    if opts.csim_samples is not None and (not _is_int(opts.csim_samples) or opts.csim_samples < 1):
        raise InputError(f"csim_samples must be a positive integer or None, got {opts.csim_samples!r}")
    for field in ("clock_period_ns", "learning_rate"):
        v = getattr(opts, field)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(v) or v <= 0:
            raise InputError(f"{field} must be a positive number, got {v!r}")
    if opts.backend not in ("Vitis", "Vivado"):
        raise InputError(f"backend must be Vitis or Vivado, got {opts.backend!r}")
    if opts.io_type not in ("io_stream", "io_parallel"):
        raise InputError(f"io_type must be io_stream or io_parallel, got {opts.io_type!r}")
    if not isinstance(opts.name, str) or not opts.name.strip():
        raise InputError(f"name must be a non-empty string, got {opts.name!r}")
    criterion = getattr(opts, "criterion", "relevance")
    from .trimming.relevance import CRITERIA

    if criterion not in CRITERIA:
        raise InputError(f"unknown trim criterion {criterion!r} (choose from {', '.join(CRITERIA)})")
    from .distill import AUGMENTATIONS, LR_SCHEDULES
    from .hls.fifo import check_fifo_depth

    check_fifo_depth(getattr(opts, "fifo_depth", "auto"))

    augment = getattr(opts, "augment", None)
    if augment is not None and augment not in AUGMENTATIONS:
        raise InputError(f"unknown augmentation {augment!r} (choose from {', '.join(AUGMENTATIONS)} or None)")
    if getattr(opts, "lr_schedule", "constant") not in LR_SCHEDULES:
        raise InputError(f"unknown learning-rate schedule {opts.lr_schedule!r} (choose from {', '.join(LR_SCHEDULES)})")
    check_part(opts.part)


def check_hls_support(model, io_type: str = "io_stream") -> None:
    """Layers hls4ml converts without complaint but computes differently from Keras.

    Found by fuzzing (``benchmarks/fuzz_long.py``): hls4ml's pooling pads the borders it
    adds for ``padding='same'`` differently from Keras (io_parallel: wrong values,
    io_stream: an assertion fails in the testbench), and its io_stream pooling only handles
    windows that do not overlap or skip (``strides == pool_size``).
    """
    from tensorflow import keras

    from .errors import UnsupportedLayerError

    L = keras.layers
    for ly in model.layers:
        if not isinstance(ly, (L.MaxPooling2D, L.AveragePooling2D)):
            continue
        cfg = ly.get_config()
        pool, strides = tuple(cfg["pool_size"]), tuple(cfg["strides"] or cfg["pool_size"])
        cls = type(ly).__name__
        if cfg.get("padding") == "same":
            size = tuple(ly.input_shape[1:3])
            pads = [max((math.ceil(n / s) - 1) * s + p - n, 0) for n, s, p in zip(size, strides, pool)]
            if any(pads):
                raise UnsupportedLayerError(
                    ly.name, cls, "generate",
                    f"padding='same' pads its {size[0]}x{size[1]} input, and hls4ml pools padded borders "
                    "differently from Keras; use padding='valid' or an input size divisible by the stride")
        if io_type == "io_stream" and pool != strides:
            raise UnsupportedLayerError(
                ly.name, cls, "generate",
                f"pool_size {pool} with strides {strides}: hls4ml's io_stream pooling needs strides equal to "
                "pool_size (use io_parallel, or pool_size == strides)")


def check_pipeline_model(model, io_type: str = "io_stream") -> None:
    """A model every stage can take: fixed input size, one logits vector out, finite weights,
    and only layers the quantizer supports (it is the most restrictive stage)."""
    from .quantization import fold_batchnorm

    check_input_shape(model)
    check_model_weights(model)
    fold_batchnorm(model)  # raises UnsupportedLayerError naming the first layer it cannot take
    check_hls_support(model, io_type)
    out = model.outputs[0].shape
    if len(out) != 2:
        raise InputError(f"the model output must be a vector of class scores, got shape {tuple(out)}")
    if out[-1] is None or int(out[-1]) < 2:
        raise InputError(f"the model has {out[-1]} output; a classifier needs at least 2")


def check_split(split, model):
    """The split's arrays checked against the model: ``(x_train, y_train, x_val, y_val, x_test, y_test)``.

    Besides shapes, dtypes and label ranges (``fpgacnn.data``), training needs at least two
    classes, and the class names must match the model's outputs.
    """
    from .data import check_images, check_labels

    in_shape = tuple(model.inputs[0].shape[1:])
    n_out = int(model.outputs[0].shape[-1])
    x_train = check_images(split.x_train, in_shape, "training images")
    y_train = check_labels(split.y_train, len(x_train), n_out, "training labels")
    x_test = check_images(split.x_test, in_shape, "test images")
    y_test = check_labels(split.y_test, len(x_test), n_out, "test labels")
    present = np.unique(y_train)
    if len(present) < 2:
        raise DataError(f"training labels hold a single class ({int(present[0])}); need at least two")
    x_val, y_val = split.x_val, split.y_val
    if x_val is not None and len(x_val):
        x_val = check_images(x_val, in_shape, "validation images")
        y_val = check_labels(y_val, len(x_val), n_out, "validation labels")
    if split.classes is not None and len(split.classes) != n_out:
        raise DataError(f"the data names {len(split.classes)} classes but the model has {n_out} outputs")
    return x_train, y_train, x_val, y_val, x_test, y_test
