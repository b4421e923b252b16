"""Float Keras CNN -> QKeras model that hls4ml turns into bit-exact fixed-point C++.

What ``quantize`` does, in order:

1. Walks the model as a single chain of layers (Sequential or a functional chain) and
   rejects anything else with ``UnsupportedLayerError(stage="quantize")``.
2. Folds every BatchNormalization into the Conv2D / DepthwiseConv2D / Dense right before
   it (exact float math: ``w' = w * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v + eps) + beta``),
   so hls4ml never sees a BN layer. ``fold_batchnorm(model)`` exposes that step alone.
3. Drops Dropout, linear activations and a final softmax (the design emits logits; the
   host applies softmax when it wants probabilities).
4. Rebuilds the chain with QKeras: Conv2D -> QConv2D, DepthwiseConv2D -> QDepthwiseConv2D,
   Dense -> QDense (kernel and bias ``quantized_bits(bits, I, alpha=1)``), ReLU -> QActivation
   ``quantized_relu(bits, I)``. Pooling and Flatten stay Keras layers.
5. Optionally fine-tunes (quantization-aware) on ``(x, y)``.

Integer-bit policy (when ``int_bits`` is None); ``I`` never goes below 0 and never above ``bits - 1``:

* kernel: ``I = ceil(log2(max|w|))`` of the folded kernel; bias: the same on the bias alone
  (they are separate quantizers because folded biases are often much larger than weights);
* ReLU outputs: ``I = ceil(log2(max activation))`` of the folded float model on ``x``
  (the maximum over all of ``x``: no saturation on the data we were given);
  without ``x``, ``I = min(3, bits - 1)``, i.e. a range of [0, 8).

``int_bits`` given: every quantizer uses it.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import DataError, InputError, UnsupportedLayerError

__all__ = ["quantize", "fold_batchnorm", "snap_inputs", "layer_chain", "DEFAULT_RELU_INT_BITS"]

DEFAULT_RELU_INT_BITS = 3
_STAGE = "quantize"


# --------------------------------------------------------------------------------------
# Walking the model
# --------------------------------------------------------------------------------------
def layer_chain(model, stage: str = _STAGE) -> list:
    """The model's layers in order, without the InputLayer, after checking it is one chain.

    A functional model qualifies when every layer takes exactly the previous layer's output.
    """
    from tensorflow import keras

    if not isinstance(model, keras.Model):
        raise InputError(f"expected a keras.Model, got {type(model).__name__}")
    if not model.built or not model.inputs or not model.outputs:
        raise InputError(f"model '{model.name}' is not built; give it an Input shape first")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedLayerError(model.name, "multi-input/output model", stage,
                                    "only single-input, single-output chains are supported")
    layers = [ly for ly in model.layers if not isinstance(ly, keras.layers.InputLayer)]
    if isinstance(model, keras.Sequential):
        return layers
    prev = model.inputs[0]
    for ly in layers:
        if isinstance(ly, keras.Model):
            raise UnsupportedLayerError(ly.name, "nested Model", stage, "flatten nested models first")
        inp = ly.input
        if isinstance(inp, (list, tuple)) or inp is not prev or len(ly._inbound_nodes) != 1:
            raise UnsupportedLayerError(ly.name, type(ly).__name__, stage,
                                        "branches and merges are not supported; the model must be a chain")
        prev = ly.output
    if prev is not model.outputs[0]:
        raise UnsupportedLayerError(model.name, "non-chain graph", stage, "the model must be a chain")
    return layers


def _act_name(act) -> str:
    from tensorflow import keras

    name = act if isinstance(act, str) else keras.activations.serialize(act)
    if isinstance(name, dict):
        name = name.get("config", {}).get("name", name.get("class_name", "?"))
    return str(name)


def _ops(model, fold_bn: bool = True) -> list[dict]:
    """The chain as a list of small op dicts with folded float weights."""
    from tensorflow import keras

    L = keras.layers
    layers = layer_chain(model)
    ops: list[dict] = []
    n = len(layers)
    for k, ly in enumerate(layers):
        last = k == n - 1 or all(isinstance(t, L.Dropout) for t in layers[k + 1:])
        cls = type(ly).__name__
        cfg = ly.get_config()
        if cfg.get("data_format", "channels_last") not in (None, "channels_last"):
            raise UnsupportedLayerError(ly.name, cls, _STAGE, "only channels_last is supported")
        if isinstance(ly, (L.Conv2D, L.DepthwiseConv2D, L.Dense)) and not isinstance(ly, L.Conv2DTranspose) \
                and cls in ("Conv2D", "DepthwiseConv2D", "Dense"):
            w = ly.get_weights()
            kernel = np.asarray(w[0], np.float64)
            if ly.use_bias:
                bias = np.asarray(w[1], np.float64)
            else:
                nout = kernel.shape[-2] * kernel.shape[-1] if cls == "DepthwiseConv2D" else kernel.shape[-1]
                bias = np.zeros(nout, np.float64)
            if cls == "Dense" and len(ly.input_shape) != 2:
                raise UnsupportedLayerError(ly.name, cls, _STAGE, "Dense must follow Flatten (2-D input)")
            if cls == "DepthwiseConv2D" and int(cfg.get("depth_multiplier", 1)) != 1:
                raise UnsupportedLayerError(ly.name, cls, _STAGE, "depth_multiplier must be 1")
            if cls != "Dense" and tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
                raise UnsupportedLayerError(ly.name, cls, _STAGE, "dilation_rate must be 1")
            op = {"kind": cls, "name": ly.name, "kernel": kernel, "bias": bias, "cfg": cfg}
            ops.append(op)
            act = _act_name(cfg.get("activation", "linear"))
            _append_activation(ops, act, ly, cls, last, f"{ly.name}_relu")
        elif isinstance(ly, L.BatchNormalization):
            if not fold_bn:
                raise UnsupportedLayerError(ly.name, cls, _STAGE,
                                            "BatchNormalization is only supported folded (fold_batchnorm=True)")
            prev = ops[-1] if ops else None
            if prev is None or prev["kind"] not in ("Conv2D", "DepthwiseConv2D", "Dense") or prev.get("bn"):
                raise UnsupportedLayerError(ly.name, cls, _STAGE,
                                            "BatchNormalization can only be folded into a Conv2D/Dense "
                                            "directly before it (with a linear activation)")
            axis = cfg.get("axis", -1)
            axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
            if axis not in (-1, len(ly.input_shape) - 1):
                raise UnsupportedLayerError(ly.name, cls, _STAGE, "only last-axis BatchNormalization can be folded")
            _fold_into(prev, ly)
        elif isinstance(ly, L.ReLU):
            if (cfg.get("max_value") is not None or float(cfg.get("negative_slope", 0.0)) != 0.0
                    or float(cfg.get("threshold", 0.0)) != 0.0):
                raise UnsupportedLayerError(ly.name, cls, _STAGE, "only plain ReLU (no max_value/slope/threshold)")
            ops.append({"kind": "relu", "name": ly.name})
        elif isinstance(ly, L.Activation):
            _append_activation(ops, _act_name(cfg.get("activation")), ly, cls, last, ly.name)
        elif isinstance(ly, L.Softmax):
            if not last:
                raise UnsupportedLayerError(ly.name, cls, _STAGE, "softmax is only supported as the last layer")
        elif isinstance(ly, (L.MaxPooling2D, L.AveragePooling2D)):
            pool = tuple(cfg["pool_size"])
            if isinstance(ly, L.AveragePooling2D):
                area = pool[0] * pool[1]
                if area & (area - 1) or cfg.get("padding", "valid") != "valid":
                    raise UnsupportedLayerError(ly.name, cls, _STAGE,
                                                "AveragePooling2D is only bit-exact with a power-of-two pool "
                                                "area and padding='valid'")
            ops.append({"kind": cls, "name": ly.name, "cfg": cfg})
        elif isinstance(ly, L.Flatten):
            ops.append({"kind": "Flatten", "name": ly.name, "cfg": cfg})
        elif isinstance(ly, L.Dropout):
            continue
        else:
            raise UnsupportedLayerError(ly.name, cls, _STAGE,
                                        "supported: Conv2D, DepthwiseConv2D, Dense, BatchNormalization, "
                                        "ReLU/Activation('relu'), MaxPooling2D, AveragePooling2D, Flatten, Dropout")
    used = {model.layers[0].name} if isinstance(model.layers[0], L.InputLayer) else {"input"}
    for op in ops:  # fused activations get new names: keep every name unique
        name = op["name"]
        while name in used:
            name += "_"
        used.add(name)
        op["name"] = name
    return ops


def _append_activation(ops, act, ly, cls, last, relu_name):
    if act == "linear":
        return
    if act == "relu":
        ops.append({"kind": "relu", "name": relu_name})
    elif act == "softmax" and last:
        return  # logits out; softmax runs on the host
    elif act == "softmax":
        raise UnsupportedLayerError(ly.name, cls, _STAGE, "softmax is only supported as the last layer")
    else:
        raise UnsupportedLayerError(ly.name, f"{cls}(activation={act})", _STAGE, "only relu/linear activations")


def _fold_into(op, bn) -> None:
    cfg = bn.get_config()
    params = dict(zip([w.name.split("/")[-1].split(":")[0] for w in bn.weights], bn.get_weights()))
    nch = op["bias"].shape[0]
    gamma = np.asarray(params.get("gamma", np.ones(nch)), np.float64)
    beta = np.asarray(params.get("beta", np.zeros(nch)), np.float64)
    mean = np.asarray(params["moving_mean"], np.float64)
    var = np.asarray(params["moving_variance"], np.float64)
    scale = gamma / np.sqrt(var + float(cfg.get("epsilon", 1e-3)))
    if op["kind"] == "DepthwiseConv2D":  # kernel (kh, kw, C, 1)
        op["kernel"] = op["kernel"] * scale.reshape(1, 1, -1, 1)
    else:  # (kh, kw, Cin, Cout) or (Nin, Nout)
        op["kernel"] = op["kernel"] * scale
    op["bias"] = (op["bias"] - mean) * scale + beta
    op["bn"] = bn.name


# --------------------------------------------------------------------------------------
# Building models from ops
# --------------------------------------------------------------------------------------
def _linear_kwargs(op) -> dict:
    cfg = op["cfg"]
    if op["kind"] == "Dense":
        return {"units": int(cfg["units"])}
    kw = {"kernel_size": tuple(cfg["kernel_size"]), "strides": tuple(cfg["strides"]), "padding": cfg["padding"]}
    if op["kind"] == "Conv2D":
        kw["filters"] = int(cfg["filters"])
    return kw


def _set_linear_weights(layer, op) -> None:
    kernel = op["kernel"].astype(np.float32)
    layer.set_weights([kernel, op["bias"].astype(np.float32)])


def _build(model, ops, quant: dict | None):
    """Float (quant=None) or QKeras model from ops; quant maps op name -> quantizer settings."""
    from tensorflow import keras

    L = keras.layers
    inp = keras.Input(shape=model.input_shape[1:], name=model.layers[0].name
                      if isinstance(model.layers[0], L.InputLayer) else "input")
    h = inp
    pending = []
    for op in ops:
        name = op["name"]
        kind = op["kind"]
        if kind in ("Conv2D", "DepthwiseConv2D", "Dense"):
            kw = _linear_kwargs(op)
            if quant is None:
                ly = getattr(L, kind)(name=name, **kw)
            else:
                from qkeras import QConv2D, QDense, QDepthwiseConv2D, quantized_bits

                b = quant["bits"]
                qk = quantized_bits(b, quant["layers"][name]["kernel"], alpha=1)
                qb = quantized_bits(b, quant["layers"][name]["bias"], alpha=1)
                if kind == "Conv2D":
                    ly = QConv2D(name=name, kernel_quantizer=qk, bias_quantizer=qb, **kw)
                elif kind == "DepthwiseConv2D":
                    ly = QDepthwiseConv2D(name=name, depthwise_quantizer=qk, bias_quantizer=qb, **kw)
                else:
                    ly = QDense(name=name, kernel_quantizer=qk, bias_quantizer=qb, **kw)
            h = ly(h)
            pending.append((ly, op))
        elif kind == "relu":
            if quant is None:
                ly = L.Activation("relu", name=name)
            else:
                from qkeras import QActivation, quantized_relu

                ly = QActivation(quantized_relu(quant["bits"], quant["layers"][name]["act"]), name=name)
            h = ly(h)
        elif kind == "MaxPooling2D":
            c = op["cfg"]
            h = L.MaxPooling2D(pool_size=tuple(c["pool_size"]), strides=tuple(c["strides"]), padding=c["padding"],
                               name=name)(h)
        elif kind == "AveragePooling2D":
            c = op["cfg"]
            h = L.AveragePooling2D(pool_size=tuple(c["pool_size"]), strides=tuple(c["strides"]),
                                   padding=c["padding"], name=name)(h)
        elif kind == "Flatten":
            h = L.Flatten(name=name)(h)
    out = keras.Model(inp, h, name=model.name)
    for ly, op in pending:
        _set_linear_weights(ly, op)
    return out


def fold_batchnorm(model):
    """The float model with BatchNormalization folded away and Dropout/final softmax removed.

    Same function as ``model`` up to float rounding (and logits instead of softmax).
    """
    return _build(model, _ops(model, True), None)


# --------------------------------------------------------------------------------------
# Integer bits
# --------------------------------------------------------------------------------------
def _int_bits_for(max_abs: float, bits: int) -> int:
    if not np.isfinite(max_abs) or max_abs <= 0:
        return 0
    return int(min(max(0, math.ceil(math.log2(max_abs))), bits - 1))


def _choose_int_bits(model, ops, bits, x, int_bits) -> dict:
    quant: dict = {"bits": bits, "layers": {}}
    relus = [op["name"] for op in ops if op["kind"] == "relu"]
    act_max: dict = {}
    if int_bits is None and x is not None and relus:
        from tensorflow import keras

        fm = _build(model, ops, None)
        outs = keras.Model(fm.inputs, [fm.get_layer(n).output for n in relus])
        vals = outs.predict(x, batch_size=256, verbose=0)
        vals = vals if isinstance(vals, list) else [vals]
        act_max = {n: float(np.max(v)) for n, v in zip(relus, vals)}
    for op in ops:
        if op["kind"] in ("Conv2D", "DepthwiseConv2D", "Dense"):
            if int_bits is not None:
                quant["layers"][op["name"]] = {"kernel": int(int_bits), "bias": int(int_bits)}
            else:
                quant["layers"][op["name"]] = {"kernel": _int_bits_for(float(np.max(np.abs(op["kernel"]))), bits),
                                     "bias": _int_bits_for(float(np.max(np.abs(op["bias"]), initial=0.0)), bits)}
        elif op["kind"] == "relu":
            if int_bits is not None:
                ib = int(int_bits)
            elif op["name"] in act_max:
                ib = _int_bits_for(act_max[op["name"]], bits)
            else:
                ib = min(DEFAULT_RELU_INT_BITS, bits - 1)
            quant["layers"][op["name"]] = {"act": ib}
    return quant


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------
def snap_inputs(x, spec=None, bits: int = 8):
    """Map float inputs onto the fixed-point input grid the generated design uses.

    ``spec`` is an ``InputSpec`` (see ``fpgacnn.hls.precision.input_spec``); without it one
    is derived from ``x`` and ``bits``. Values are rounded to the nearest grid point (ties to
    even) and saturated to the type's range. Returns float32 values that are exactly
    representable in the input type.
    """
    from .hls.precision import input_spec

    x = np.asarray(x)
    spec = spec or input_spec(x, bits)
    return spec.snap(x)


def _check_xy(model, x, y):
    if x is None:
        if y is not None:
            raise DataError("labels y given without inputs x")
        return None, None
    x = np.asarray(x, dtype=np.float32)
    want = tuple(model.input_shape[1:])
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise DataError(f"inputs have shape {x.shape[1:]}, the model wants {want}")
    if not np.all(np.isfinite(x)):
        raise DataError("inputs contain NaN or infinity")
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise DataError(f"{len(x)} inputs but {len(y)} labels")
    return x, y


def _loss_for(y, n_out):
    from tensorflow import keras

    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        if np.issubdtype(y.dtype, np.integer) or np.all(np.equal(np.mod(y, 1), 0)):
            if int(np.max(y)) >= n_out or int(np.min(y)) < 0:
                raise DataError(f"labels must lie in [0, {n_out}), got [{np.min(y)}, {np.max(y)}]")
            return keras.losses.SparseCategoricalCrossentropy(from_logits=True), y.reshape(-1).astype(np.int64)
    if y.ndim == 2 and y.shape[1] == n_out:
        if np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
            return keras.losses.CategoricalCrossentropy(from_logits=True), y.astype(np.float32)
        return keras.losses.MeanSquaredError(), y.astype(np.float32)
    raise DataError(f"labels of shape {y.shape} do not fit a model with {n_out} outputs")


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------
def quantize(model, bits: int = 8, x=None, y=None, epochs: int = 2, *, batch_size: int = 64, seed: int = 0,
             learning_rate: float = 1e-3, fold_batchnorm: bool = True, int_bits: int | None = None,
             input_bits: int = 8, input_type=None, teacher=None, temperature: float = 4.0,
             alpha: float = 0.5):
    """QKeras version of ``model`` with ``bits``-bit weights, biases and ReLU outputs.

    ``x`` (optional) sets the ReLU integer bits from observed activations; with ``y`` too,
    the model is fine-tuned quantization-aware for ``epochs`` epochs on ``x`` snapped to the
    ``input_bits`` input grid. Without ``y`` it is a post-training conversion. The result
    outputs logits (a final softmax is removed). Deterministic for a given ``seed``.
    ``input_type`` (an ``InputSpec``) fixes the input grid; pass the same one to ``generate``.
    With a float ``teacher`` (classification labels only), QAT is distilled from it (see
    ``fpgacnn.distill``), which keeps the quantized model's decisions close to the float one's.
    """
    from tensorflow import keras

    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 2 <= bits <= 32:
        raise InputError(f"bits must be an integer in [2, 32], got {bits!r}")
    if int_bits is not None and (not isinstance(int_bits, (int, np.integer)) or not 0 <= int_bits < bits):
        raise InputError(f"int_bits must be an integer in [0, bits), got {int_bits!r}")
    if epochs < 0 or batch_size < 1:
        raise InputError("epochs must be >= 0 and batch_size >= 1")
    bits = int(bits)
    x, y = _check_xy(model, x, y)
    ops = _ops(model, fold_batchnorm)
    if not any(op["kind"] in ("Conv2D", "DepthwiseConv2D", "Dense") for op in ops):
        raise InputError("model has no Conv2D/Dense layer to quantize")
    keras.utils.set_random_seed(int(seed))
    quant = _choose_int_bits(model, ops, bits, x, int_bits)
    qmodel = _build(model, ops, quant)
    if y is not None and epochs > 0 and len(x) > 0:
        import tensorflow as tf

        try:
            tf.config.experimental.enable_op_determinism()
        except Exception:  # older TF or already enabled
            pass
        loss, yt = _loss_for(y, int(qmodel.output_shape[-1]))
        xt = snap_inputs(x, spec=input_type, bits=input_bits)
        if teacher is not None and yt.ndim == 1:
            from .distill import finetune

            finetune(qmodel, xt, yt, teacher=teacher, teacher_input=x, epochs=int(epochs),
                     batch_size=int(batch_size), learning_rate=learning_rate, seed=int(seed),
                     temperature=temperature, alpha=alpha)
        else:
            qmodel.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss)
            qmodel.fit(xt, yt, epochs=int(epochs), batch_size=int(batch_size), shuffle=True, verbose=0)
    return qmodel
