"""Resource/latency estimator for hls4ml designs, FPGA parts catalogue, vendor report parsing.

Fitting a network to a part lives in ``fpgacnn.estimate.fit`` (``fit``, ``fits_part``;
also ``fpgacnn.fit``), imported on demand because it pulls in TensorFlow.
"""
from fpgacnn.estimate.estimator import Estimate, estimate_keras, estimate_resources
from fpgacnn.estimate.parts import PARTS, Part, get_part, known_parts
from fpgacnn.estimate.vendor_reports import parse_report

__all__ = ["Estimate", "estimate_keras", "estimate_resources", "Part", "PARTS", "get_part", "known_parts",
           "parse_report"]
