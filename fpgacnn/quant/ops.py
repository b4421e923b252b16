"""Keras layers -> a list of small ops with folded float weights (BatchNorm gone).

Every op reads the outputs of earlier ops (or the model input) by name, so the list is a
DAG in topological order. What happens to each layer:

* Conv2D / DepthwiseConv2D / SeparableConv2D / Dense -> one linear op (float kernel and
  bias, zeros when there is no bias), plus a ``relu`` op when the activation is fused;
* BatchNormalization -> folded into the linear op that produces its input (exact float
  math: ``w' = w * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v + eps) + beta``); only
  allowed when that op's output feeds nothing but the BN (possibly through Dropout);
* ReLU / Activation('relu') -> ``relu``; Dropout, linear activations and a softmax at the
  model output disappear (the design emits logits);
* pooling, padding, Flatten, Add and Concatenate keep their configuration.

Anything else raises ``UnsupportedLayerError(stage="quantize")`` naming the layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UnsupportedLayerError
from .graph import layer_graph

__all__ = ["Op", "LINEAR", "model_ops"]

STAGE = "quantize"
LINEAR = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")
_SUPPORTED = ("Conv2D, DepthwiseConv2D, SeparableConv2D, Dense, BatchNormalization, ReLU/Activation('relu'), "
              "MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, ZeroPadding2D, "
              "Flatten, Dropout, Add, Concatenate")


@dataclass
class Op:
    """One operation of the folded model. ``source`` is the Keras layer it came from."""

    kind: str
    name: str
    inputs: list[str]
    source: str
    cfg: dict = field(default_factory=dict)
    kernel: np.ndarray | None = None  # depthwise kernel for SeparableConv2D
    pointwise: np.ndarray | None = None  # SeparableConv2D only
    bias: np.ndarray | None = None
    bn: str | None = None  # the BatchNormalization folded into it


def _act_name(act) -> str:
    from tensorflow import keras

    name = act if isinstance(act, str) else keras.activations.serialize(act)
    if isinstance(name, dict):
        name = name.get("config", {}).get("name", name.get("class_name", "?"))
    return str(name)


def _power_of_two_area(ly, cls: str, area: int, padding: str = "valid") -> None:
    if area & (area - 1) or padding != "valid":
        raise UnsupportedLayerError(ly.name, cls, STAGE, f"{cls} is only bit-exact with a power-of-two pool "
                                    "area and padding='valid'")


def _linear_op(ly, cls: str, cfg: dict, inputs: list[str]) -> Op:
    w = ly.get_weights()
    if cls == "Dense" and len(ly.input_shape) != 2:
        raise UnsupportedLayerError(ly.name, cls, STAGE, "Dense must follow Flatten or global pooling (2-D input)")
    if cls in ("DepthwiseConv2D", "SeparableConv2D") and int(cfg.get("depth_multiplier", 1)) != 1:
        raise UnsupportedLayerError(ly.name, cls, STAGE, "depth_multiplier must be 1")
    if cls != "Dense" and tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
        raise UnsupportedLayerError(ly.name, cls, STAGE, "dilation_rate must be 1")
    kernel = np.asarray(w[0], np.float64)
    pointwise = np.asarray(w[1], np.float64) if cls == "SeparableConv2D" else None
    if cls == "SeparableConv2D":
        nout = pointwise.shape[-1]
    elif cls == "DepthwiseConv2D":
        nout = kernel.shape[-2] * kernel.shape[-1]
    else:
        nout = kernel.shape[-1]
    bias = np.asarray(w[-1], np.float64) if ly.use_bias else np.zeros(nout, np.float64)
    return Op(cls, ly.name, inputs, ly.name, cfg, kernel, pointwise, bias)


def _fold_into(op: Op, bn) -> None:
    cfg = bn.get_config()
    params = dict(zip([w.name.split("/")[-1].split(":")[0] for w in bn.weights], bn.get_weights()))
    nch = op.bias.shape[0]
    gamma = np.asarray(params.get("gamma", np.ones(nch)), np.float64)
    beta = np.asarray(params.get("beta", np.zeros(nch)), np.float64)
    mean = np.asarray(params["moving_mean"], np.float64)
    var = np.asarray(params["moving_variance"], np.float64)
    scale = gamma / np.sqrt(var + float(cfg.get("epsilon", 1e-3)))
    if op.kind == "DepthwiseConv2D":  # kernel (kh, kw, C, 1)
        op.kernel = op.kernel * scale.reshape(1, 1, -1, 1)
    elif op.kind == "SeparableConv2D":  # the BN scales the pointwise outputs
        op.pointwise = op.pointwise * scale
    else:  # (kh, kw, Cin, Cout) or (Nin, Nout)
        op.kernel = op.kernel * scale
    op.bias = (op.bias - mean) * scale + beta
    op.bn = bn.name


class _Walker:
    """Turns graph nodes into ops; ``out[layer]`` is the op whose output is that layer's output."""

    def __init__(self, model, fold_bn: bool):
        self.graph = layer_graph(model, STAGE)
        self.fold_bn = fold_bn
        self.consumers = self.graph.consumers()
        self.layer_of = {n.name: n for n in self.graph.nodes}
        self.out: dict[str, str] = {self.graph.input.name: self.graph.input.name}
        self.ops: list[Op] = []
        self.by_name: dict[str, Op] = {}
        self.taken = {self.graph.input.name} | set(self.layer_of)  # op names are unique

    def fresh(self, name: str) -> str:
        while name in self.taken:
            name += "_"
        self.taken.add(name)
        return name

    def add(self, op: Op) -> None:
        self.ops.append(op)
        self.by_name[op.name] = op

    def final(self, name: str) -> bool:
        """Whether ``name``'s output reaches the model output through nothing but Dropout."""
        from tensorflow import keras

        while True:
            users = self.consumers[name]
            if users == [None]:
                return True
            if len(users) != 1 or users[0] is None or not isinstance(self.layer_of[users[0]].layer,
                                                                     keras.layers.Dropout):
                return False
            name = users[0]

    def sole_producer(self, name: str):
        """The linear op behind layer ``name`` if its output (through Dropout) goes nowhere else."""
        from tensorflow import keras

        while True:
            if len(self.consumers[name]) != 1:
                return None
            node = self.layer_of.get(name)
            if node is None:
                return None
            if isinstance(node.layer, keras.layers.Dropout):
                name = node.inputs[0]
                continue
            op = self.by_name.get(self.out[name])
            return op if op is not None and op.kind in LINEAR and op.name == name else None

    def activation(self, act: str, ly, cls: str, src: str, relu_name: str) -> str:
        """Appends the op for a fused/standalone activation; returns the op now holding the output."""
        if act == "linear":
            return src
        if act == "relu":
            self.add(Op("relu", relu_name, [src], ly.name))
            return relu_name
        if act == "softmax" and self.final(ly.name):
            return src  # logits out; softmax runs on the host or is added by generate()
        if act == "softmax":
            raise UnsupportedLayerError(ly.name, cls, STAGE, "softmax is only supported as the last layer")
        raise UnsupportedLayerError(ly.name, f"{cls}(activation={act})", STAGE, "only relu/linear activations")

    def visit(self, node) -> None:
        from tensorflow import keras

        L = keras.layers
        ly, cls = node.layer, node.class_name
        cfg = ly.get_config()
        srcs = [self.out[s] for s in node.inputs]
        if cfg.get("data_format", "channels_last") not in (None, "channels_last"):
            raise UnsupportedLayerError(ly.name, cls, STAGE, "only channels_last is supported")
        if cls in LINEAR:
            self.add(_linear_op(ly, cls, cfg, srcs))
            act = _act_name(cfg.get("activation", "linear"))
            out = self.activation(act, ly, cls, ly.name, self.fresh(f"{ly.name}_relu") if act == "relu" else "")
        elif cls == "BatchNormalization":
            out = self._batchnorm(node, ly, cls, cfg)
        elif cls == "ReLU":
            if (cfg.get("max_value") is not None or float(cfg.get("negative_slope", 0.0)) != 0.0
                    or float(cfg.get("threshold", 0.0)) != 0.0):
                raise UnsupportedLayerError(ly.name, cls, STAGE, "only plain ReLU (no max_value/slope/threshold)")
            self.add(Op("relu", ly.name, srcs, ly.name))
            out = ly.name
        elif cls == "Activation":
            out = self.activation(_act_name(cfg.get("activation")), ly, cls, srcs[0], ly.name)
        elif cls == "Softmax":
            if not self.final(ly.name):
                raise UnsupportedLayerError(ly.name, cls, STAGE, "softmax is only supported as the last layer")
            out = srcs[0]
        elif cls in ("MaxPooling2D", "AveragePooling2D"):
            if cls == "AveragePooling2D":
                _power_of_two_area(ly, cls, int(np.prod(cfg["pool_size"])), cfg.get("padding", "valid"))
            out = self._plain(cls, ly, srcs, cfg)
        elif cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            if cfg.get("keepdims"):
                raise UnsupportedLayerError(ly.name, cls, STAGE, "keepdims=True is not supported")
            if cls == "GlobalAveragePooling2D":
                _power_of_two_area(ly, cls, int(np.prod(ly.input_shape[1:3])))
            out = self._plain(cls, ly, srcs, cfg)
        elif cls in ("ZeroPadding2D", "Flatten"):
            out = self._plain(cls, ly, srcs, cfg)
        elif cls == "Add":
            if len(srcs) != 2:
                raise UnsupportedLayerError(ly.name, cls, STAGE, "only two-input Add is supported")
            out = self._plain(cls, ly, srcs, cfg)
        elif cls == "Concatenate":
            rank = len(ly.output_shape)
            if len(srcs) != 2 or cfg.get("axis") not in (-1, rank - 1):
                raise UnsupportedLayerError(ly.name, cls, STAGE, "only two-input Concatenate on the channel "
                                            "(last) axis is supported")
            out = self._plain(cls, ly, srcs, cfg)
        elif cls == "Dropout":
            out = srcs[0]
        else:
            raise UnsupportedLayerError(ly.name, cls, STAGE, f"supported: {_SUPPORTED}")
        self.out[ly.name] = out

    def _plain(self, cls, ly, srcs, cfg) -> str:
        self.add(Op(cls, ly.name, srcs, ly.name, cfg))
        return ly.name

    def _batchnorm(self, node, ly, cls, cfg) -> str:
        if not self.fold_bn:
            raise UnsupportedLayerError(ly.name, cls, STAGE,
                                        "BatchNormalization is only supported folded (fold_batchnorm=True)")
        prev = self.sole_producer(node.inputs[0])
        if prev is None or prev.bn:
            raise UnsupportedLayerError(ly.name, cls, STAGE, "BatchNormalization can only be folded into a "
                                        "Conv2D/Dense directly before it (linear activation, no other consumer)")
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if axis not in (-1, len(ly.input_shape) - 1):
            raise UnsupportedLayerError(ly.name, cls, STAGE, "only last-axis BatchNormalization can be folded")
        _fold_into(prev, ly)
        return prev.name


def model_ops(model, fold_bn: bool = True) -> tuple[str, list[Op], str]:
    """``(input name, ops in topological order, name of the op producing the output)``."""
    w = _Walker(model, fold_bn)
    for node in w.graph.nodes:
        w.visit(node)
    return w.graph.input.name, w.ops, w.out[w.graph.output]
