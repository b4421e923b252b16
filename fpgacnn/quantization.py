"""Public home of the quantization API; the implementation lives in ``fpgacnn.quant``.

See ``fpgacnn.quant.convert`` for what ``quantize`` does and ``fpgacnn.quant.policy`` for
the bit-width policies (uniform, per-layer, ``"range"``).
"""
from __future__ import annotations

from .quant import (DEFAULT_BITS, DEFAULT_RELU_INT_BITS, RANGE_RESOLUTION_BITS, fold_batchnorm, layer_chain,
                    layer_graph, quantize, snap_inputs)

__all__ = ["quantize", "fold_batchnorm", "snap_inputs", "layer_chain", "layer_graph", "DEFAULT_BITS",
           "DEFAULT_RELU_INT_BITS", "RANGE_RESOLUTION_BITS"]
