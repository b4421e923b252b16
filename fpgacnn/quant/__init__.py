"""Quantization: float Keras CNN -> QKeras model with a bit-exact fixed-point mapping.

``graph`` walks the model (chains and DAGs), ``ops`` folds BatchNorm into float ops,
``policy`` picks per-tensor widths, ``build`` rebuilds the model with QKeras quantizers and
``convert`` ties them together (calibration and quantization-aware training).
"""
from __future__ import annotations

from .convert import fold_batchnorm, quantize, snap_inputs
from .graph import ModelGraph, Node, layer_chain, layer_graph
from .policy import DEFAULT_BITS, DEFAULT_RELU_INT_BITS, RANGE_RESOLUTION_BITS

__all__ = ["quantize", "fold_batchnorm", "snap_inputs", "layer_chain", "layer_graph", "ModelGraph", "Node",
           "DEFAULT_BITS", "DEFAULT_RELU_INT_BITS", "RANGE_RESOLUTION_BITS"]
