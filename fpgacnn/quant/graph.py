"""The model as a small dataflow graph: layers in topological order and who feeds whom.

Quantization and HLS generation both walk a Keras model node by node. Sequential models
and functional chains are the common case, but residual ``Add`` and ``Concatenate``
blocks make the graph a DAG. ``layer_graph`` returns one ``Node`` per layer (the input
included) in an order where every node comes after the nodes it reads, and refuses what
neither stage can express: several inputs or outputs, nested models, shared layers (one
layer called twice) and layers with several outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError, UnsupportedLayerError

__all__ = ["Node", "ModelGraph", "layer_graph", "layer_chain"]


@dataclass
class Node:
    """One layer of the model and the names of the layers whose outputs it reads."""

    name: str
    layer: object
    inputs: list[str]

    @property
    def class_name(self) -> str:
        return type(self.layer).__name__


@dataclass
class ModelGraph:
    input: Node
    nodes: list[Node]  # topological order, without the input
    output: str  # name of the node whose output is the model output

    def consumers(self) -> dict[str, list[str]]:
        """Node name -> names of the nodes reading its output (the model output counts as ``None``)."""
        out: dict[str, list] = {self.input.name: []}
        out.update({n.name: [] for n in self.nodes})
        for n in self.nodes:
            for src in n.inputs:
                out[src].append(n.name)
        out[self.output].append(None)
        return out

    def is_chain(self) -> bool:
        prev = self.input.name
        for n in self.nodes:
            if n.inputs != [prev]:
                return False
            prev = n.name
        return prev == self.output


def _check_model(model, stage: str):
    from tensorflow import keras

    if not isinstance(model, keras.Model):
        raise InputError(f"expected a keras.Model, got {type(model).__name__}")
    if not model.built or not model.inputs or not model.outputs:
        raise InputError(f"model '{model.name}' is not built; give it an Input shape first")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedLayerError(model.name, "multi-input/output model", stage,
                                    "only single-input, single-output models are supported")


def layer_graph(model, stage: str = "quantize") -> ModelGraph:
    """The model's layers in topological order with their inbound layer names."""
    from tensorflow import keras

    _check_model(model, stage)
    in_layer = model.inputs[0]._keras_history.layer
    layers = {ly.name: ly for ly in model.layers}
    layers[in_layer.name] = in_layer
    for ly in model.layers:
        if isinstance(ly, keras.Model):
            raise UnsupportedLayerError(ly.name, "nested Model", stage, "flatten nested models first")
    config = model.get_config()
    entries = config["layers"]
    inp = Node(in_layer.name, in_layer, [])
    nodes: list[Node] = []
    if isinstance(model, keras.Sequential):
        prev = in_layer.name
        for entry in entries:
            if entry["class_name"] == "InputLayer":
                continue
            name = entry["config"]["name"]
            nodes.append(Node(name, layers[name], [prev]))
            prev = name
        return ModelGraph(inp, nodes, prev)
    seen = {in_layer.name}
    for entry in entries:
        name = entry["name"]
        if entry["class_name"] == "InputLayer":
            continue
        inbound = entry.get("inbound_nodes") or []
        if len(inbound) != 1:
            raise UnsupportedLayerError(name, entry["class_name"], stage,
                                        "the layer is shared (called more than once); give each call its own layer")
        srcs = []
        for ref in inbound[0]:
            src, node_index, tensor_index = ref[0], ref[1], ref[2]
            if tensor_index != 0 or node_index != 0:
                raise UnsupportedLayerError(name, entry["class_name"], stage,
                                            f"reads output {tensor_index} of call {node_index} of '{src}'; "
                                            "only single-output, unshared layers are supported")
            if src not in seen:
                raise UnsupportedLayerError(name, entry["class_name"], stage, f"reads '{src}' before it is computed")
            srcs.append(src)
        nodes.append(Node(name, layers[name], srcs))
        seen.add(name)
    outs = config.get("output_layers") or []
    if len(outs) != 1 or outs[0][1] != 0 or outs[0][2] != 0:
        raise UnsupportedLayerError(model.name, "multi-output model", stage, "the model must have one output")
    return ModelGraph(inp, nodes, outs[0][0])


def layer_chain(model, stage: str = "quantize") -> list:
    """The model's layers in order, without the InputLayer, after checking it is one chain."""
    graph = layer_graph(model, stage)
    if not graph.is_chain():
        for n in graph.nodes:
            if len(n.inputs) != 1:
                raise UnsupportedLayerError(n.name, n.class_name, stage,
                                            "branches and merges are not supported here; the model must be a chain")
        raise UnsupportedLayerError(model.name, "non-chain graph", stage, "the model must be a chain")
    return [n.layer for n in graph.nodes]
