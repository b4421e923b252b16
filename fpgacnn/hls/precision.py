"""hls4ml precisions that make the C++ design compute exactly what the QKeras model computes.

Policy (every layer gets an explicit type; nothing is left to hls4ml's ``auto``):

* Input: see ``fpgacnn.hls.fixed`` (``ap_ufixed<8,0>`` for camera pixels ``p / 256``).
* Weights / biases: exactly the QKeras ``quantized_bits(b, i)`` grid, ``ap_fixed<b, i+1>``.
* Conv/Dense accumulator = result: signed, fractional bits ``max(F_in + F_w, F_b)``, integer
  bits from the worst-case sum ``max_o(sum_j |w_jo| * max|x|) + |b_o|`` of the actual quantized
  weights (never overflows; with default types this is at most in_bits + w_bits +
  ceil(log2(fan_in)) + 1 bits). Sums of fixed-point values in such a type are exact.
  SeparableConv2D: the depthwise step gets its own exact type (per-channel bound), the
  pointwise step an exact accumulator over it.
* ``quantized_relu(b, i)`` -> ``ap_ufixed<b, i, AP_RND_CONV, AP_SAT>``: QKeras rounds with
  ``tf.round`` (half to even) and clips to ``[0, 2^i - 2^(i-b)]``, which is what
  convergent rounding plus saturation does. ``quantized_bits`` activations likewise
  (``ap_fixed<b, i+1, AP_RND_CONV, AP_SAT>``). A Conv/Dense read only by such an activation
  outputs the activation's type itself (its accumulator stays exact) and hls4ml's
  activation process, then the identity, is removed (``fpgacnn.hls.fuse``).
* MaxPooling, GlobalMaxPooling, ZeroPadding and Flatten keep their input type.
  AveragePooling (power-of-two area ``2^k``, ``valid`` padding only) and
  GlobalAveragePooling (power-of-two ``H*W = 2^k``) sum in a type with ``k`` more integer
  and ``k`` more fractional bits and divide by ``2^k`` there, which is exact.
* Add: fractional bits ``max(F_a, F_b)``, integer bits ``max(I_a, I_b) + 1`` (an unsigned
  input counts one bit more when the other is signed): every sum fits exactly.
  Concatenate: the same without the extra bit (each value must fit, nothing is summed).
* Softmax (only when generated in hardware): see ``fpgacnn.hls.softmax``; its output is
  compared by argmax, the logits before it stay exact.

QKeras itself computes in float32, so its logits equal the exact fixed-point values as long
as every accumulator fits in 24 significant bits; ``LayerPrecision.float32_exact`` records
whether the policy above guarantees that (it is a bound: in practice sums are far smaller).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, UnsupportedLayerError
from .fixed import PIXEL_BITS, Fixed, InputSpec, input_spec, signed_for
from .softmax import softmax_types

__all__ = ["Fixed", "InputSpec", "input_spec", "signed_for", "PIXEL_BITS", "LayerPrecision", "layer_precisions",
           "hls_config", "merge_type"]

_STAGE = "generate"


def _f32_exact(t: Fixed) -> bool:
    """Values of type ``t`` (and sums landing in it) are exact in float32's 24-bit significand."""
    return t.width - (1 if t.signed else 0) <= 24


# --------------------------------------------------------------------------------------
# Per-layer precisions
# --------------------------------------------------------------------------------------
@dataclass
class LayerPrecision:
    name: str  # the (already safe) layer name hls4ml sees
    cls: str
    result: Fixed
    weight: Fixed | None = None
    bias: Fixed | None = None
    accum: Fixed | None = None
    float32_exact: bool = True
    extra: dict = field(default_factory=dict)  # further hls4ml Precision entries (e.g. pointwise)
    hls: dict = field(default_factory=dict)  # further hls4ml layer config keys (softmax tables)
    info: dict = field(default_factory=dict)  # for the manifest only

    def manifest(self, original_name: str) -> dict:
        def s(t):
            return t.cpp() if t is not None else None

        out = {"name": original_name, "hls_name": self.name, "class": self.cls, "weight": s(self.weight),
               "bias": s(self.bias), "result": s(self.result), "accum": s(self.accum)}
        out.update({k: s(v) for k, v in self.extra.items()})
        out.update(self.info)
        return out


def _quantizer_type(q, layer, what: str) -> tuple[Fixed, object]:
    """Fixed type of a QKeras ``quantized_bits`` weight quantizer (alpha 1/None only)."""
    from qkeras.quantizers import get_quantizer, quantized_bits

    if q is None:
        raise UnsupportedLayerError(layer.name, type(layer).__name__, _STAGE,
                                    f"{what} has no quantizer; quantize the model with fpgacnn.quantize() first")
    q = get_quantizer(q) if not callable(q) else q
    if not isinstance(q, quantized_bits):
        raise UnsupportedLayerError(layer.name, type(layer).__name__, _STAGE,
                                    f"{what} quantizer {q} is not quantized_bits")
    alpha = q.alpha
    if not (alpha is None or (not isinstance(alpha, str) and float(alpha) == 1.0)) or not q.keep_negative \
            or q.symmetric or q.use_stochastic_rounding:
        raise UnsupportedLayerError(layer.name, type(layer).__name__, _STAGE,
                                    f"{what} quantizer must be quantized_bits(bits, integer, alpha=1) "
                                    "(keep_negative, not symmetric, no stochastic rounding)")
    return Fixed(int(q.bits), int(q.integer) + 1, True), q


def _relu_type(layer) -> Fixed:
    from qkeras.quantizers import quantized_bits, quantized_relu

    q = layer.quantizer
    cls = type(layer).__name__
    if isinstance(q, quantized_relu):
        if q.negative_slope or q.use_sigmoid or q.use_stochastic_rounding or not q.is_quantized_clip:
            raise UnsupportedLayerError(layer.name, cls, _STAGE,
                                        "only quantized_relu(bits, integer) without slope/sigmoid/stochastic")
        return Fixed(int(q.bits), int(q.integer), False, "AP_RND_CONV", "AP_SAT")
    if isinstance(q, quantized_bits):
        _quantizer_type(q, layer, "activation")
        return Fixed(int(q.bits), int(q.integer) + 1, True, "AP_RND_CONV", "AP_SAT")
    raise UnsupportedLayerError(layer.name, cls, _STAGE, f"activation {q} is not supported bit-exactly")


def _linear(layer, inp: Fixed) -> LayerPrecision:
    cls = type(layer).__name__
    kq = layer.depthwise_quantizer if cls == "QDepthwiseConv2D" else layer.kernel_quantizer
    wt, wq = _quantizer_type(kq, layer, "kernel")
    w = layer.get_weights()
    kernel = np.abs(np.asarray(wq(np.asarray(w[0], np.float32)), np.float64))
    if layer.use_bias:
        bt, bq = _quantizer_type(layer.bias_quantizer, layer, "bias")
        bias = np.abs(np.asarray(bq(np.asarray(w[1], np.float32)), np.float64))
    else:
        bt, bias = None, np.zeros(1)
    if cls == "QDepthwiseConv2D":  # (kh, kw, C, 1): per channel
        per_out = kernel.reshape(-1, kernel.shape[2] * kernel.shape[3]).sum(axis=0)
    else:
        per_out = kernel.reshape(-1, kernel.shape[-1]).sum(axis=0)
    bound = float(np.max(per_out * inp.max_abs + bias))
    frac = max(inp.frac + wt.frac, bt.frac if bt is not None else 0)
    acc = signed_for(bound, frac)
    return LayerPrecision(layer.name, cls, result=acc, weight=wt, bias=bt or Fixed(1, 1, True), accum=acc,
                          float32_exact=acc.width <= 25)



def _separable(layer, inp: Fixed) -> LayerPrecision:
    """QSeparableConv2D: exact depthwise result, exact pointwise accumulator over it."""
    cls = type(layer).__name__
    dt, dq = _quantizer_type(layer.depthwise_quantizer, layer, "depthwise kernel")
    pt, pq = _quantizer_type(layer.pointwise_quantizer, layer, "pointwise kernel")
    w = layer.get_weights()
    dw = np.abs(np.asarray(dq(np.asarray(w[0], np.float32)), np.float64))  # (kh, kw, C, 1)
    pw = np.abs(np.asarray(pq(np.asarray(w[1], np.float32)), np.float64))  # (1, 1, C, F)
    if layer.use_bias:
        bt, bq = _quantizer_type(layer.bias_quantizer, layer, "bias")
        bias = np.abs(np.asarray(bq(np.asarray(w[2], np.float32)), np.float64))
    else:
        bt, bias = None, np.zeros(1)
    dw_bound = dw.reshape(-1, dw.shape[2] * dw.shape[3]).sum(axis=0) * inp.max_abs  # per channel
    dw_t = signed_for(float(np.max(dw_bound)), inp.frac + dt.frac)
    pw_bound = float(np.max(pw.reshape(-1, pw.shape[-1]).T @ dw_bound + bias))
    acc = signed_for(pw_bound, max(dw_t.frac + pt.frac, bt.frac if bt is not None else 0))
    return LayerPrecision(layer.name, cls, result=acc, weight=dt, bias=bt or Fixed(1, 1, True), accum=acc,
                          float32_exact=_f32_exact(acc) and _f32_exact(dw_t),
                          extra={"pointwise": pt, "depthwise_accum": dw_t, "depthwise_result": dw_t,
                                 "pointwise_accum": acc, "dw_output": dw_t})


def merge_type(types: list[Fixed], add: bool) -> Fixed:
    """A type holding every input exactly (``add=False``) or their sum (``add=True``)."""
    signed = any(t.signed for t in types)
    frac = max(t.frac for t in types)
    integer = max(t.integer + (1 if signed and not t.signed else 0) for t in types) + (1 if add else 0)
    return Fixed(integer + frac, integer, signed)


def _pool_sum_type(cur: Fixed, area: int, layer, cls: str) -> Fixed:
    if area & (area - 1):
        raise UnsupportedLayerError(layer.name, cls, _STAGE, f"{cls} is only bit-exact with a power-of-two area")
    k = area.bit_length() - 1
    integer = cur.integer + k + (0 if cur.signed else 1)
    return Fixed(integer + cur.frac + k, integer, True)


def _node_precision(ly, ins: list[Fixed], softmax: bool, softmax_logits=None) -> LayerPrecision:
    from tensorflow import keras

    L = keras.layers
    cls = type(ly).__name__
    cur = ins[0]
    if cls in ("QConv2D", "QDense", "QDepthwiseConv2D", "QSeparableConv2D"):
        if getattr(ly.activation, "__name__", "linear") != "linear":
            raise UnsupportedLayerError(ly.name, cls, _STAGE, "fused activations are not supported; "
                                        "use a separate QActivation")
        return _separable(ly, cur) if cls == "QSeparableConv2D" else _linear(ly, cur)
    if cls == "QActivation":
        return LayerPrecision(ly.name, cls, result=_relu_type(ly))
    if cls in ("Activation", "Softmax") and (cls == "Softmax" or ly.get_config().get("activation") == "softmax"):
        if not softmax:
            raise UnsupportedLayerError(ly.name, cls, _STAGE, "the design emits logits; use "
                                        "generate(..., softmax='hardware') for a softmax in hardware")
        n = int(ly.output_shape[-1])
        st = softmax_types(cur, n, softmax_logits)
        return LayerPrecision(ly.name, cls, result=st.result, accum=st.accum, hls=st.hls_layer_config(),
                              info={"softmax": st.manifest()})
    if isinstance(ly, (L.MaxPooling2D, L.GlobalMaxPooling2D)):
        return LayerPrecision(ly.name, cls, result=cur, accum=cur)
    if isinstance(ly, L.AveragePooling2D):
        cfg = ly.get_config()
        if cfg.get("padding") != "valid":
            raise UnsupportedLayerError(ly.name, cls, _STAGE, "AveragePooling2D is only bit-exact with "
                                        "padding='valid'")
        acc = _pool_sum_type(cur, int(np.prod(cfg["pool_size"])), ly, cls)
        return LayerPrecision(ly.name, cls, result=acc, accum=acc, float32_exact=_f32_exact(acc))
    if isinstance(ly, L.GlobalAveragePooling2D):
        acc = _pool_sum_type(cur, int(np.prod(ly.input_shape[1:3])), ly, cls)
        return LayerPrecision(ly.name, cls, result=acc, accum=acc, float32_exact=_f32_exact(acc))
    if isinstance(ly, (L.Flatten, L.Dropout, L.ZeroPadding2D)):
        return LayerPrecision(ly.name, cls, result=cur)
    if isinstance(ly, (L.Add, L.Concatenate)):
        if len(ins) != 2:
            raise UnsupportedLayerError(ly.name, cls, _STAGE, "hls4ml merges exactly two inputs")
        t = merge_type(ins, add=isinstance(ly, L.Add))
        return LayerPrecision(ly.name, cls, result=t, float32_exact=_f32_exact(t))
    if isinstance(ly, (L.Conv2D, L.Dense, L.DepthwiseConv2D, L.SeparableConv2D)):
        raise UnsupportedLayerError(ly.name, cls, _STAGE, "float layer; quantize the model first")
    raise UnsupportedLayerError(ly.name, cls, _STAGE, "no bit-exact HLS mapping for this layer")


def layer_precisions(model, inp: Fixed, softmax: bool = False, softmax_logits=None,
                     fold_activations: bool = True) -> list[LayerPrecision]:
    """Explicit precision for every layer of the QKeras ``model`` (or a list of chained layers).

    ``inp`` is the input type. ``softmax``: the model ends in a softmax that runs in
    hardware (``generate`` appends it); ``softmax_logits`` (test logits) feed its tables.
    ``fold_activations``: a Conv/Dense read only by a QActivation outputs the activation's
    type directly (``fpgacnn.hls.fuse``; models only, not layer lists).
    """
    from ..quant.graph import layer_graph
    from .fuse import foldable_activations, fold_activation_types

    pairs = {}
    if isinstance(model, (list, tuple)):
        layers, sources, in_name = list(model), [], "input"
        prev = in_name
        for ly in layers:
            sources.append([prev])
            prev = ly.name
    else:
        graph = layer_graph(model, _STAGE)
        layers, sources, in_name = [n.layer for n in graph.nodes], [n.inputs for n in graph.nodes], graph.input.name
        pairs = foldable_activations(graph) if fold_activations else {}
    types = {in_name: inp.plain()}
    out: list[LayerPrecision] = []
    for ly, srcs in zip(layers, sources):
        last = len(out) == len(layers) - 1
        lp = _node_precision(ly, [types[s] for s in srcs], softmax and last, softmax_logits)
        out.append(lp)
        types[ly.name] = lp.result.plain()
    return fold_activation_types(out, pairs)


def hls_config(model, inp: InputSpec, precisions: list[LayerPrecision], backend: str = "Vitis",
               strategy: str = "Latency", reuse_factor: int = 1) -> dict:
    """hls4ml config (granularity 'name') with every precision set explicitly."""
    import hls4ml

    if strategy not in ("Latency", "Resource"):
        raise InputError(f"strategy must be 'Latency' or 'Resource', got {strategy!r}")
    if not isinstance(reuse_factor, (int, np.integer)) or reuse_factor < 1:
        raise InputError(f"reuse_factor must be a positive integer, got {reuse_factor!r}")
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend,
                                               default_reuse_factor=int(reuse_factor))
    cfg["Model"]["Strategy"] = strategy
    cfg["Model"]["ReuseFactor"] = int(reuse_factor)
    by_name = {lp.name: lp for lp in precisions}
    input_name = model.layers[0].name
    layers = cfg["LayerName"]
    for key in list(layers):
        lc = layers[key]
        prec = lc.setdefault("Precision", {})
        if key == input_name:
            prec["result"] = inp.precision
            continue
        lp = by_name.get(key)
        if lp is None and key.endswith("_linear") and key[: -len("_linear")] in by_name:
            prec["result"] = by_name[key[: -len("_linear")]].result.cpp()
            continue
        if lp is None:
            raise UnsupportedLayerError(key, "hls4ml layer", _STAGE, "hls4ml created a layer fpgacnn has no "
                                        "precision for")
        prec["result"] = lp.result.cpp()
        if "accum" in prec or lp.accum is not None:
            prec["accum"] = (lp.accum if lp.accum is not None else lp.result).cpp()
        if lp.weight is not None:
            prec["weight"] = lp.weight.cpp()
            if "depthwise" in prec:
                prec["depthwise"] = lp.weight.cpp()
        if lp.bias is not None and "bias" in prec:
            prec["bias"] = lp.bias.cpp()
        for k, t in lp.extra.items():
            prec[k] = t.cpp()
        for k, v in lp.hls.items():
            if k == "Precision":
                prec.update(v)
            else:
                lc[k] = v
        for k in ("ReuseFactor", "DepthwiseReuseFactor", "PointwiseReuseFactor"):
            if k in lc:
                lc[k] = int(reuse_factor)
    return cfg
