"""fpgacnn: from a trained Keras CNN to a trimmed, quantized, bit-exact hls4ml project.

The pipeline is a chain of small stages, each a function from one artifact to the next::

    relevance_scores(model, x) -> {layer: scores}
    trim(model, x, keep)       -> smaller keras.Model
    quantize(model, bits)      -> QKeras model
    generate(qmodel, out_dir)  -> Project (hls4ml C++ + our templates)
    csim(project)              -> CsimResult (g++ testbench, bit-exact check)

Imports are lazy so that ``fpgacnn --help`` does not pay for TensorFlow.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "relevance_scores": "fpgacnn.trimming",
    "trim": "fpgacnn.trimming",
    "trim_schedule": "fpgacnn.trimming",
    "quantize": "fpgacnn.quantization",
    "generate": "fpgacnn.hls.generate",
    "Project": "fpgacnn.hls.project",
    "csim": "fpgacnn.hls.csim",
    "CsimResult": "fpgacnn.hls.csim",
    "FpgacnnError": "fpgacnn.errors",
    "fit": "fpgacnn.estimate.fit",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fpgacnn' has no attribute {name!r}")
