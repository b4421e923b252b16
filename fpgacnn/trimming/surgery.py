"""Physical removal of kernels: rebuild a smaller model and copy the sliced weights.

We never edit layers in place (Keras layers cannot change their weight shapes once
built). Instead the model's ``get_config()`` is edited -- new ``filters``/``units``
for trimmed producers, stale ``build_config`` shapes dropped -- and a fresh model is
built from it with the same layer names, so it saves and reloads like any other. Each
layer's weights are then sliced with the boolean masks the ``ChannelGraph`` derives
for its input and output channels.

``masked_copy`` is the reference for the surgery: same architecture, but the input
weights that read removed channels are zeroed. Both must compute the same function.
"""
from __future__ import annotations

import copy

import numpy as np

from fpgacnn.trimming.graph import BATCHNORM, DEPTHWISE, PRODUCERS, SEPARABLE, ChannelGraph


def custom_objects() -> dict:
    """QKeras layers and quantizers, so quantized models rebuild and stay quantized."""
    try:
        from qkeras.utils import _add_supported_quantized_objects
    except ImportError:  # pragma: no cover - qkeras is a hard dependency
        return {}
    objs: dict = {}
    _add_supported_quantized_objects(objs)
    return objs


def rebuild(model, graph: ChannelGraph, keep: dict[int, np.ndarray]):
    """New model with only the kept kernels; ``keep`` maps group id -> bool mask."""
    from tensorflow import keras

    config = copy.deepcopy(model.get_config())
    sequential = type(model).__name__ == "Sequential"
    for ly in config["layers"]:
        ly.pop("build_config", None)
        name = ly["config"]["name"]
        if name in graph.group_of:
            gid = graph.find(graph.group_of[name])
            if gid in keep:
                key = "units" if "units" in ly["config"] else "filters"
                ly["config"][key] = int(keep[gid].sum())
    with keras.utils.custom_object_scope(custom_objects()):
        cls = keras.Sequential if sequential else keras.Model
        new = cls.from_config(config)
    for name, node in graph.nodes.items():
        old = graph.layers[name]
        if not old.get_weights():
            continue
        in_mask = graph.mask(node.in_specs[0], keep) if node.in_specs else None
        out_mask = graph.mask(node.out_spec, keep)
        new.get_layer(name).set_weights(slice_weights(node.class_name, old.get_weights(), in_mask, out_mask))
    return new


def trimmed_size(graph: ChannelGraph, keep: dict[int, np.ndarray]) -> tuple[int, int]:
    """``(parameters, MACs)`` that ``rebuild(graph.model, graph, keep)`` would have, without building it.

    Schedules call this many times per round to choose a keep ratio for a parameter or
    MAC target. It slices zero-stride stand-ins of the weights with the same
    ``slice_weights`` as the surgery, so the two cannot disagree on shapes.
    """
    params = macs = 0
    for name, node in graph.nodes.items():
        layer = graph.layers[name]
        if not layer.weights:
            continue
        in_mask = graph.mask(node.in_specs[0], keep) if node.in_specs else None
        out_mask = graph.mask(node.out_spec, keep)
        ghosts = [np.broadcast_to(np.float32(0), tuple(w.shape)) for w in layer.weights]
        ws = slice_weights(node.class_name, ghosts, in_mask, out_mask)
        params += sum(int(w.size) for w in ws)
        if node.class_name in PRODUCERS | DEPTHWISE | SEPARABLE:
            out_shape = layer.output_shape
            positions = int(np.prod([d for d in out_shape[1:-1]], dtype=np.int64))
            kernels = ws[:2] if node.class_name in SEPARABLE else ws[:1]
            macs += positions * sum(int(k.size) for k in kernels)
    return int(params), int(macs)


def slice_weights(class_name: str, ws: list[np.ndarray], in_mask, out_mask) -> list[np.ndarray]:
    """A layer's weights ``ws`` restricted to kept input positions and kept output kernels."""
    if class_name in PRODUCERS:
        kernel = np.compress(out_mask, np.compress(in_mask, ws[0], axis=-2), axis=-1)
        return [kernel] + [np.compress(out_mask, b, axis=0) for b in ws[1:]]
    if class_name in BATCHNORM:
        return [np.compress(in_mask, w, axis=0) for w in ws]
    if class_name in DEPTHWISE:
        return [np.compress(in_mask, ws[0], axis=2)] + [np.compress(out_mask, b, axis=0) for b in ws[1:]]
    if class_name in SEPARABLE:
        mult = ws[0].shape[3]
        dw = np.compress(in_mask, ws[0], axis=2)
        pw = np.compress(out_mask, np.compress(np.repeat(in_mask, mult), ws[1], axis=2), axis=3)
        return [dw, pw] + [np.compress(out_mask, b, axis=0) for b in ws[2:]]
    return ws  # weightless pass-through layers never get here with weights


def masked_copy(model, graph: ChannelGraph, keep: dict[int, np.ndarray]):
    """Same architecture and weights, with the reads of removed channels zeroed.

    Producers (and the pointwise part of separable convolutions) are the only layers
    that mix channels, so zeroing their input rows is enough to cut removed channels
    out of the computation; everything else that touches a removed channel only
    feeds removed channels.
    """
    from tensorflow import keras

    with keras.utils.custom_object_scope(custom_objects()):
        clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for name, node in graph.nodes.items():
        if node.class_name not in PRODUCERS | SEPARABLE:
            continue
        in_mask = graph.mask(node.in_specs[0], keep)
        ws = clone.get_layer(name).get_weights()
        if node.class_name in PRODUCERS:
            idx = [slice(None)] * ws[0].ndim
            idx[-2] = ~in_mask
            ws[0][tuple(idx)] = 0.0
        else:
            ws[1][:, :, ~np.repeat(in_mask, ws[0].shape[3]), :] = 0.0
        clone.get_layer(name).set_weights(ws)
    return clone


def count_macs(model) -> int:
    """Multiply-accumulates of one inference (conv, depthwise, separable and dense layers)."""
    total = 0
    for layer in model.layers:
        cname = type(layer).__name__
        if not layer.weights:
            continue
        out_shape = layer.output_shape
        in_shape = layer.input_shape
        if isinstance(in_shape, list) or isinstance(out_shape, list):
            continue
        positions = int(np.prod([d for d in out_shape[1:-1]], dtype=np.int64))
        if cname in ("Dense", "QDense"):
            total += positions * int(in_shape[-1]) * int(out_shape[-1])
        elif cname in ("Conv1D", "Conv2D", "Conv3D", "QConv1D", "QConv2D"):
            k = layer.kernel.shape
            total += positions * int(np.prod(k[:-1])) * int(k[-1])
        elif cname in DEPTHWISE:
            total += positions * int(np.prod(layer.depthwise_kernel.shape))
        elif cname in SEPARABLE or cname == "QSeparableConv2D":
            dw = layer.depthwise_kernel.shape
            total += positions * (int(np.prod(dw)) + int(dw[2] * dw[3]) * int(layer.pointwise_kernel.shape[-1]))
    return int(total)
