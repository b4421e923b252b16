"""Ops -> a Keras model again: float (for calibration and ``fold_batchnorm``) or QKeras.

The QKeras mapping is the one hls4ml turns into fixed-point C++ bit-exactly:
Conv2D -> QConv2D, DepthwiseConv2D -> QDepthwiseConv2D, SeparableConv2D -> QSeparableConv2D,
Dense -> QDense (weights and bias ``quantized_bits(bits, integer, alpha=1)``, each tensor
with its own quantizer), relu -> QActivation(``quantized_relu(bits, integer)``). Pooling,
padding, Flatten, Add and Concatenate stay Keras layers: on values that are already on a
fixed-point grid they compute exactly (see ``fpgacnn.hls.precision`` for the types).
"""
from __future__ import annotations

import numpy as np

from .ops import Op

__all__ = ["build_model", "Widths"]

# op name -> {"kernel" | "pointwise" | "bias" | "act": (bits, integer)}
Widths = dict


def _linear_kwargs(op: Op) -> dict:
    cfg = op.cfg
    if op.kind == "Dense":
        return {"units": int(cfg["units"])}
    kw = {"kernel_size": tuple(cfg["kernel_size"]), "strides": tuple(cfg["strides"]), "padding": cfg["padding"]}
    if op.kind in ("Conv2D", "SeparableConv2D"):
        kw["filters"] = int(cfg["filters"])
    return kw


def _weights(op: Op) -> list:
    ws = [op.kernel] + ([op.pointwise] if op.kind == "SeparableConv2D" else []) + [op.bias]
    return [np.asarray(w, np.float32) for w in ws]


def _linear_layer(op: Op, widths: Widths | None):
    from tensorflow import keras

    kw = _linear_kwargs(op)
    if widths is None:
        return getattr(keras.layers, op.kind)(name=op.name, **kw)
    from qkeras import QConv2D, QDense, QDepthwiseConv2D, QSeparableConv2D, quantized_bits

    w = widths[op.name]

    def q(what):
        bits, integer = w[what]
        return quantized_bits(int(bits), int(integer), alpha=1)

    if op.kind == "Conv2D":
        return QConv2D(name=op.name, kernel_quantizer=q("kernel"), bias_quantizer=q("bias"), **kw)
    if op.kind == "DepthwiseConv2D":
        return QDepthwiseConv2D(name=op.name, depthwise_quantizer=q("kernel"), bias_quantizer=q("bias"), **kw)
    if op.kind == "SeparableConv2D":
        return QSeparableConv2D(name=op.name, depthwise_quantizer=q("kernel"), pointwise_quantizer=q("pointwise"),
                                bias_quantizer=q("bias"), **kw)
    return QDense(name=op.name, kernel_quantizer=q("kernel"), bias_quantizer=q("bias"), **kw)


def _plain_layer(op: Op):
    from tensorflow import keras

    L, c = keras.layers, op.cfg
    if op.kind in ("MaxPooling2D", "AveragePooling2D"):
        return getattr(L, op.kind)(pool_size=tuple(c["pool_size"]), strides=tuple(c["strides"]),
                                   padding=c["padding"], name=op.name)
    if op.kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return getattr(L, op.kind)(name=op.name)
    if op.kind == "ZeroPadding2D":
        return L.ZeroPadding2D(padding=tuple(tuple(p) for p in c["padding"]), name=op.name)
    if op.kind == "Flatten":
        return L.Flatten(name=op.name)
    if op.kind == "Add":
        return L.Add(name=op.name)
    if op.kind == "Concatenate":
        return L.Concatenate(axis=int(c["axis"]), name=op.name)
    raise AssertionError(f"no layer for op kind {op.kind}")


def build_model(name: str, input_shape, input_name: str, ops: list[Op], output: str, widths: Widths | None = None):
    """Float model (``widths=None``) or QKeras model computing ``ops``; output is op ``output``."""
    from tensorflow import keras

    inp = keras.Input(shape=tuple(input_shape), name=input_name)
    tensors = {input_name: inp}
    linear = []
    for op in ops:
        args = [tensors[s] for s in op.inputs]
        arg = args if op.kind in ("Add", "Concatenate") else args[0]
        if op.kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"):
            layer = _linear_layer(op, widths)
            linear.append((layer, op))
        elif op.kind == "relu":
            if widths is None:
                layer = keras.layers.Activation("relu", name=op.name)
            else:
                from qkeras import QActivation, quantized_relu

                bits, integer = widths[op.name]["act"]
                layer = QActivation(quantized_relu(int(bits), int(integer)), name=op.name)
        else:
            layer = _plain_layer(op)
        tensors[op.name] = layer(arg)
    model = keras.Model(inp, tensors[output], name=name)
    for layer, op in linear:
        layer.set_weights(_weights(op))
    return model
