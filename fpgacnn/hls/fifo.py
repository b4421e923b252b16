"""Stream FIFO depths of io_stream designs.

hls4ml sizes every io_stream FIFO to hold a whole feature map (depth = pixels), and
every channel of a layer output gets its own FIFO. Deeper than 16 entries, Vivado/Vitis
HLS builds each one from a BRAM_18K plus about a hundred LUTs of control, however
narrow it is: in a trimmed VGG on a Zynq-7020 these FIFOs are most of the BRAM and
about half of the LUTs, more than the arithmetic.

A chain of dataflow processes (every layer one input stream, every stream one reader)
joined by blocking FIFOs cannot deadlock whatever the depths: a writer waits only for
a reader that is itself making progress. Shallow FIFOs there only cost throughput when
a producer bursts faster than its consumer drains, e.g. a line-buffered convolution
at the end of a row. hls4ml's own remedy, FIFO depth optimization, measures the
occupancy of every FIFO in RTL co-simulation, which needs the vendor tools; for chains
we set one shallow depth instead. Graphs with branches (Add, Concatenate, the Clone
layers hls4ml inserts to fork a stream) keep hls4ml's depths: a skip path must buffer
everything the long path holds in its line buffers, or the design deadlocks.
"""
from __future__ import annotations

import numbers

from fpgacnn.errors import InputError

FIFO_DEPTH_MODES = ("auto", "full")
SHALLOW_DEPTH = 16  # the deepest FIFO Vivado/Vitis HLS still builds from shift registers


def check_fifo_depth(fifo_depth) -> None:
    """``"auto"`` (shallow in chains, hls4ml's elsewhere), ``"full"`` (hls4ml's) or a depth >= 1."""
    if isinstance(fifo_depth, str):
        if fifo_depth not in FIFO_DEPTH_MODES:
            raise InputError(f"unknown fifo_depth '{fifo_depth}' (choose from {', '.join(FIFO_DEPTH_MODES)} "
                             "or a positive integer)")
        return
    if isinstance(fifo_depth, bool) or not isinstance(fifo_depth, numbers.Integral) or fifo_depth < 1:
        raise InputError(f"fifo_depth must be 'auto', 'full' or a positive integer, got {fifo_depth!r}")


def is_chain(hls_model) -> bool:
    """True when every layer reads at most one stream and every stream has at most one reader."""
    readers: dict[str, int] = {}
    for layer in hls_model.get_layers():
        if layer.class_name == "Clone" or len(layer.inputs) > 1:
            return False
        for name in layer.inputs:
            readers[name] = readers.get(name, 0) + 1
    return all(n <= 1 for n in readers.values())


def stream_variables(hls_model) -> list:
    """The io_stream FIFOs between layers (model inputs and outputs are ports, not FIFOs)."""
    ports = {v.name for v in hls_model.get_input_variables()} | {v.name for v in hls_model.get_output_variables()}
    return [v for v in hls_model.output_vars.values()
            if isinstance(getattr(v, "pragma", None), tuple) and v.pragma[0] == "stream" and v.name not in ports]


def set_fifo_depths(hls_model, fifo_depth="auto") -> int:
    """Set the depth of every inter-layer FIFO of ``hls_model`` before it is written or
    estimated; returns how many FIFOs changed. ``"auto"`` caps chains at ``SHALLOW_DEPTH``
    (never deepening a FIFO) and leaves branching graphs alone; an integer sets that depth
    everywhere, which the caller must know to be safe for branches."""
    check_fifo_depth(fifo_depth)
    if fifo_depth == "full" or hls_model.config.get_config_value("IOType") != "io_stream":
        return 0
    if fifo_depth == "auto" and not is_chain(hls_model):
        return 0
    changed = 0
    for v in stream_variables(hls_model):
        depth = int(v.pragma[1])
        new = min(depth, SHALLOW_DEPTH) if fifo_depth == "auto" else int(fifo_depth)
        if new != depth:
            v.pragma = (v.pragma[0], new)
            changed += 1
    return changed


def fifo_depths(hls_model) -> dict[str, int]:
    """``{stream name: depth}`` of the inter-layer FIFOs, for the manifest."""
    return {v.name: int(v.pragma[1]) for v in stream_variables(hls_model)}
