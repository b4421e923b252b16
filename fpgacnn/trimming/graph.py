"""Channel dependency graph of a Keras model: which slices must shrink together.

Removing a kernel (a conv filter or a dense unit) is only correct if every tensor
slice that carries its channel shrinks with it: the BatchNormalization entries right
after it, the pass-through layers (activations, pooling, padding, dropout), the rows
of a Dense layer behind a Flatten and the input channels of the next convolution.
Residual ``Add`` layers tie several producers together, ``Concatenate`` places them
side by side. Following Torch-Pruning's dependency graph, we model this explicitly:

* every *producer* (a layer whose kernels define output channels) owns a
  ``ChannelGroup``; model inputs own a group that can never shrink;
* walking the graph in topological order, every layer output gets a *channel spec*:
  for each position of its last axis, the ``(group, index)`` of the kernel that
  produced it. Pass-through layers copy the spec, ``Concatenate`` appends specs,
  ``Flatten`` repeats it once per spatial position (channels_last flattening gives
  flat index ``(h*W + w)*C + c``, i.e. position ``f`` carries channel ``f % C``),
  depthwise convolutions repeat each channel ``depth_multiplier`` times;
* element-wise merges (``Add`` ...) unify the groups of their inputs (union-find), so
  all inputs lose the same channels;
* groups that reach a model output, or pass through an op that mixes channels
  (softmax), are *fixed*: they keep every kernel.

Surgery then only needs, for each layer, a boolean mask over its input positions and
its output positions, which is ``keep[group][index]`` looked up through the spec.
Layers we do not understand raise ``UnsupportedLayerError`` instead of producing a
silently wrong model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fpgacnn.errors import InputError, UnsupportedLayerError

STAGE = "trim"

# Layer kinds by class name. Class names (not isinstance) on purpose: a subclass of
# Conv2D with extra semantics must be rejected, not trimmed as if it were a Conv2D.
PRODUCERS = {"Conv2D", "Dense", "QConv2D", "QDense"}
SEPARABLE = {"SeparableConv2D"}
DEPTHWISE = {"DepthwiseConv2D", "QDepthwiseConv2D"}
BATCHNORM = {"BatchNormalization", "QBatchNormalization"}
ACTIVATIONS = {"Activation", "ReLU", "LeakyReLU", "QActivation"}
PASS_THROUGH = ACTIVATIONS | {
    "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D", "Cropping2D", "UpSampling2D",
    "GlobalAveragePooling2D", "GlobalMaxPooling2D",
}
CHANNEL_MIXING = {"Softmax"}  # pass the spec but fix the groups: softmax couples channels
MERGES = {"Add", "Subtract", "Average", "Maximum", "Minimum", "Multiply"}
CONCAT = {"Concatenate"}
FLATTEN = {"Flatten"}
INPUT = {"InputLayer"}
SUPPORTED = (PRODUCERS | SEPARABLE | DEPTHWISE | BATCHNORM | PASS_THROUGH | CHANNEL_MIXING
             | MERGES | CONCAT | FLATTEN | INPUT)


@dataclass
class ChannelGroup:
    """Channels that are kept or removed together (one producer, or several tied by Add)."""

    id: int
    size: int
    producers: list[str] = field(default_factory=list)
    fixed: str = ""  # why it may not shrink; empty when trimmable

    @property
    def trimmable(self) -> bool:
        return not self.fixed and bool(self.producers)


@dataclass
class LayerNode:
    name: str
    class_name: str
    inputs: list[str]
    in_specs: list[np.ndarray] = field(default_factory=list)  # one (n, 2) array per input
    out_spec: np.ndarray | None = None


class ChannelGraph:
    """Nodes in topological order, their channel specs and the resolved groups."""

    def __init__(self, model):
        self.model = model
        self.nodes: dict[str, LayerNode] = {}
        self._parent: list[int] = []
        self._size: list[int] = []
        self._producers: list[list[str]] = []
        self._fixed: list[str] = []
        self.group_of: dict[str, int] = {}  # producer name -> raw group id
        self.consumers: dict[str, list[str]] = {}
        self.outputs: list[str] = []
        self._build()

    # ---- union-find over raw group ids -------------------------------------------
    def _new_group(self, size: int, producer: str | None, fixed: str = "") -> int:
        gid = len(self._parent)
        self._parent.append(gid)
        self._size.append(int(size))
        self._producers.append([producer] if producer else [])
        self._fixed.append(fixed)
        return gid

    def find(self, gid: int) -> int:
        while self._parent[gid] != gid:
            self._parent[gid] = self._parent[self._parent[gid]]
            gid = self._parent[gid]
        return gid

    def _union(self, a: int, b: int, where: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self._size[ra] != self._size[rb]:  # cannot tie them kernel by kernel: keep both whole
            reason = f"'{where}' merges channel groups of different sizes"
            self._fixed[ra] = self._fixed[ra] or reason
            self._fixed[rb] = self._fixed[rb] or reason
            return
        self._parent[rb] = ra
        self._producers[ra] += self._producers[rb]
        self._fixed[ra] = self._fixed[ra] or self._fixed[rb]

    def _fix(self, spec: np.ndarray, reason: str) -> None:
        for gid in np.unique(spec[:, 0]) if len(spec) else []:
            root = self.find(int(gid))
            self._fixed[root] = self._fixed[root] or reason

    # ---- public view -----------------------------------------------------------
    @property
    def groups(self) -> list[ChannelGroup]:
        roots = sorted({self.find(g) for g in range(len(self._parent))})
        return [ChannelGroup(r, self._size[r], list(self._producers[r]), self._fixed[r]) for r in roots]

    def group(self, producer: str) -> ChannelGroup:
        root = self.find(self.group_of[producer])
        return ChannelGroup(root, self._size[root], list(self._producers[root]), self._fixed[root])

    @property
    def producers(self) -> list[str]:
        return list(self.group_of)

    def mask(self, spec: np.ndarray, keep: dict[int, np.ndarray]) -> np.ndarray:
        """Boolean mask over a spec's positions; groups missing from ``keep`` keep all."""
        out = np.ones(len(spec), dtype=bool)
        for i, (gid, idx) in enumerate(spec):
            k = keep.get(self.find(int(gid)))
            if k is not None:
                out[i] = bool(k[idx])
        return out

    # ---- construction ------------------------------------------------------------
    def _build(self) -> None:
        model = self.model
        cls = type(model).__name__
        if cls not in ("Sequential", "Functional", "Model"):
            raise UnsupportedLayerError(model.name, cls, STAGE,
                                        "only Sequential and functional models can be trimmed")
        if not model.built or not model.inputs:
            raise InputError(f"model '{model.name}' is not built: give it an input shape first")
        self.layers = layer_map(model)
        topo = _topology(model)
        for name, inputs in topo:
            layer = self.layers[name]
            self.nodes[name] = LayerNode(name, type(layer).__name__, inputs)
            for src in inputs:
                self.consumers.setdefault(src, []).append(name)
        self.outputs = [t._keras_history.layer.name for t in model.outputs]
        for name, node in self.nodes.items():
            self._visit(node, self.layers[name])
        for out in self.outputs:
            self._fix(self.nodes[out].out_spec, "reaches a model output")

    def _visit(self, node: LayerNode, layer) -> None:
        cname = node.class_name
        if cname not in SUPPORTED:
            raise UnsupportedLayerError(node.name, cname, STAGE,
                                        "no rule for which channels it keeps; remove it or trim "
                                        "before adding it")
        cfg = layer.get_config()
        if cfg.get("data_format", "channels_last") == "channels_first":
            raise UnsupportedLayerError(node.name, cname, STAGE,
                                        "channels_first layout; convert the model to channels_last")
        node.in_specs = [self.nodes[src].out_spec for src in node.inputs]
        spec = node.in_specs[0] if node.in_specs else None

        if cname in INPUT:
            width = int(layer.output_shape[0][-1] if isinstance(layer.output_shape, list)
                        else layer.output_shape[-1])
            gid = self._new_group(width, None, "model input")
            node.out_spec = _range_spec(gid, width)
            return
        if len(node.inputs) != 1 and cname not in MERGES | CONCAT:
            raise UnsupportedLayerError(node.name, cname, STAGE, "expected exactly one input")
        if cname in PRODUCERS | SEPARABLE:
            if cfg.get("groups", 1) != 1:
                raise UnsupportedLayerError(node.name, cname, STAGE, "grouped convolution")
            width = int(cfg.get("filters") or cfg.get("units"))
            gid = self._new_group(width, node.name)
            self.group_of[node.name] = gid
            node.out_spec = _range_spec(gid, width)
            if _mixes_channels(cfg.get("activation")):
                self._fix(node.out_spec, f"'{node.name}' has a channel-mixing activation")
        elif cname in DEPTHWISE:
            node.out_spec = np.repeat(spec, int(cfg.get("depth_multiplier", 1)), axis=0)
        elif cname in BATCHNORM:
            axis = cfg.get("axis", -1)
            axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
            if axis not in (-1, len(layer.input_shape) - 1):
                raise UnsupportedLayerError(node.name, cname, STAGE,
                                            f"normalises axis {axis}, not the channel axis")
            node.out_spec = spec
        elif cname in PASS_THROUGH:
            node.out_spec = spec
            if cname in ACTIVATIONS and _mixes_channels(cfg.get("activation")):
                self._fix(spec, f"'{node.name}' mixes channels")
        elif cname in CHANNEL_MIXING:
            node.out_spec = spec
            self._fix(spec, f"'{node.name}' mixes channels")
        elif cname in FLATTEN:
            in_shape = layer.input_shape
            positions = int(np.prod([d for d in in_shape[1:-1]], dtype=np.int64)) if len(in_shape) > 2 else 1
            node.out_spec = np.tile(spec, (positions, 1))
        elif cname in CONCAT:
            axis = cfg.get("axis", -1)
            if axis not in (-1, len(layer.output_shape) - 1):
                raise UnsupportedLayerError(node.name, cname, STAGE,
                                            f"concatenates axis {axis}, not the channel axis")
            node.out_spec = np.concatenate(node.in_specs, axis=0)
        elif cname in MERGES:
            self._merge(node)
        if len(node.out_spec) != int(layer.output_shape[-1]) and cname not in FLATTEN:
            raise UnsupportedLayerError(node.name, cname, STAGE, "channel bookkeeping mismatch")

    def _merge(self, node: LayerNode) -> None:
        """Element-wise merge: position i of every input is one channel, so tie the groups."""
        specs = node.in_specs
        widest = max(specs, key=len)
        if any(len(s) == 1 for s in specs) and len(widest) > 1:
            # one channel broadcast over all others: every output channel depends on it
            for s in specs:
                self._fix(s, f"'{node.name}' broadcasts a single channel")
            node.out_spec = widest
            return
        first = specs[0]
        if any(len(s) != len(first) for s in specs):
            raise UnsupportedLayerError(node.name, node.class_name, STAGE,
                                        "inputs have different channel counts")
        if any(np.any(s[:, 1] != first[:, 1]) for s in specs):
            # e.g. a concatenation added to a single producer: the channels of one
            # group land on parts of several others. Correct but conservative: keep them all.
            for s in specs:
                self._fix(s, f"'{node.name}' merges channel groups that do not line up")
        else:
            for other in specs[1:]:
                for a, b in {(int(x), int(y)) for x, y in zip(first[:, 0], other[:, 0])}:
                    self._union(a, b, node.name)
        node.out_spec = first


def _range_spec(gid: int, width: int) -> np.ndarray:
    return np.stack([np.full(width, gid, dtype=np.int64), np.arange(width, dtype=np.int64)], axis=1)


def _mixes_channels(activation) -> bool:
    return isinstance(activation, str) and "softmax" in activation.lower()


def layer_map(model) -> dict:
    """Every layer by name, including the InputLayer that Sequential.layers hides."""
    out = {t._keras_history.layer.name: t._keras_history.layer for t in model.inputs}
    out.update({layer.name: layer for layer in model.layers})
    return out


def _topology(model) -> list[tuple[str, list[str]]]:
    """(layer name, names of the layers feeding it) in topological order."""
    layers = model.get_config()["layers"]
    sequential = type(model).__name__ == "Sequential"
    out, prev = [], None
    for ly in layers:
        name = ly["config"]["name"] if sequential else ly["name"]
        if ly["class_name"] in ("Sequential", "Functional", "Model"):
            raise UnsupportedLayerError(name, ly["class_name"], STAGE, "nested models")
        if sequential:
            out.append((name, [prev] if prev else []))
            prev = name
            continue
        nodes = ly.get("inbound_nodes") or []
        if len(nodes) > 1:
            raise UnsupportedLayerError(name, ly["class_name"], STAGE, "layer is shared (called twice)")
        inputs = []
        for entry in nodes[0] if nodes else []:
            if entry[1] != 0 or entry[2] != 0:
                raise UnsupportedLayerError(name, ly["class_name"], STAGE, "multi-output or shared input")
            inputs.append(entry[0])
        out.append((name, inputs))
    if sequential and (not layers or layers[0]["class_name"] != "InputLayer"):
        in_name = model.inputs[0]._keras_history.layer.name
        out = [(in_name, [])] + [(n, ins or [in_name]) for n, ins in out]
    return out
