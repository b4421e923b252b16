"""hls4ml precisions that make the C++ design compute exactly what the QKeras model computes.

Policy (every layer gets an explicit type; nothing is left to hls4ml's ``auto``):

* Input: ``ap_ufixed<B,I>`` for non-negative data (``I = max(0, ceil(log2(max x)))``, so
  images scaled to [0, 1] get ``ap_ufixed<8,0>``: pixel ``p`` of an 8-bit camera is
  ``p / 256`` exactly), ``ap_fixed<B,I+1>`` for signed data. Test inputs are snapped to this
  grid (round half to even, saturate) before anything is computed, so both sides see the
  same numbers.
* Weights / biases: exactly the QKeras ``quantized_bits(b, i)`` grid, ``ap_fixed<b, i+1>``.
* Conv/Dense accumulator = result: signed, fractional bits ``max(F_in + F_w, F_b)``, integer
  bits from the worst-case sum ``max_o(sum_j |w_jo| * max|x|) + |b_o|`` of the actual quantized
  weights (never overflows; with default types this is at most in_bits + w_bits +
  ceil(log2(fan_in)) + 1 bits). Sums of fixed-point values in such a type are exact.
* ``quantized_relu(b, i)`` -> ``ap_ufixed<b, i, AP_RND_CONV, AP_SAT>``: QKeras rounds with
  ``tf.round`` (half to even) and clips to ``[0, 2^i - 2^(i-b)]``, which is what
  convergent rounding plus saturation does. ``quantized_bits`` activations likewise
  (``ap_fixed<b, i+1, AP_RND_CONV, AP_SAT>``).
* MaxPooling / Flatten keep their input type. AveragePooling (power-of-two area ``2^k``,
  ``valid`` padding only) sums in a type with ``k`` more integer and ``k`` more fractional
  bits and divides by ``2^k`` there, which is exact; other areas are refused.

QKeras itself computes in float32, so its logits equal the exact fixed-point values as long
as every accumulator fits in 24 significant bits; ``LayerPrecision.float32_exact`` records
whether the policy above guarantees that (it is a bound: in practice sums are far smaller).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, UnsupportedLayerError

_STAGE = "generate"
PIXEL_BITS = 8


# --------------------------------------------------------------------------------------
# Fixed-point types
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fixed:
    """``ap_[u]fixed<width, integer[, rounding, saturation]>``; ``integer`` includes the sign bit."""

    width: int
    integer: int
    signed: bool = True
    rounding: str | None = None
    saturation: str | None = None

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return 2.0 ** -self.frac

    @property
    def max(self) -> float:
        top = self.integer - 1 if self.signed else self.integer
        return 2.0 ** top - self.lsb

    @property
    def min(self) -> float:
        return -(2.0 ** (self.integer - 1)) if self.signed else 0.0

    @property
    def max_abs(self) -> float:
        return max(abs(self.min), self.max)

    def cpp(self) -> str:
        base = "ap_fixed" if self.signed else "ap_ufixed"
        args = [str(self.width), str(self.integer)]
        if self.rounding or self.saturation:
            args += [self.rounding or "AP_TRN", self.saturation or "AP_WRAP"]
        return f"{base}<{','.join(args)}>"

    def plain(self) -> "Fixed":
        return Fixed(self.width, self.integer, self.signed)

    def snap(self, x) -> np.ndarray:
        """``x`` rounded (half to even) to the grid and saturated; float32, exactly representable."""
        x = np.asarray(x, dtype=np.float64)
        q = np.round(x * 2.0 ** self.frac) * self.lsb
        return np.clip(q, self.min, self.max).astype(np.float32)


def signed_for(max_abs: float, frac: int) -> Fixed:
    """Smallest signed type with ``frac`` fractional bits that holds [-max_abs, max_abs]."""
    if max_abs <= 0:
        integer = 1
    else:
        integer = math.floor(math.log2(max_abs)) + 2  # 2^(I-1) > max_abs
    integer = max(integer, 1)
    return Fixed(integer + frac, integer, True)


# --------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputSpec:
    """The input type and how an 8-bit camera pixel maps onto it."""

    type: Fixed

    @property
    def precision(self) -> str:
        return self.type.cpp()

    @property
    def scale(self) -> float:
        span = 2.0 ** self.type.integer  # unsigned [0, 2^I) or signed [-2^(I-1), 2^(I-1))
        return span / 2 ** PIXEL_BITS

    @property
    def offset(self) -> float:
        return self.type.min

    def snap(self, x) -> np.ndarray:
        return self.type.snap(x)

    def manifest(self) -> dict:
        return {
            "precision": self.precision,
            "bits": self.type.width,
            "scale": self.scale,
            "offset": self.offset,
            "note": (f"an {PIXEL_BITS}-bit camera pixel p maps to x = p*scale + offset, then x is rounded "
                     f"(half to even) to the {self.precision} grid (step {self.type.lsb!r}) and saturated "
                     f"to [{self.type.min!r}, {self.type.max!r}]"),
        }


def input_spec(x=None, bits: int = 8) -> InputSpec:
    """Input type for data like ``x`` (default: images in [0, 1] -> ``ap_ufixed<bits,0>``)."""
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 32:
        raise InputError(f"input_bits must be an integer in [2, 32], got {bits!r}")
    bits = int(bits)
    if x is None or np.size(x) == 0:
        return InputSpec(Fixed(bits, 0, False))
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise InputError("inputs contain NaN or infinity")
    lo, hi = float(x.min()), float(x.max())
    signed = lo < 0
    # The fewest integer bits whose range holds the data's extremes: [0, 1) fits
    # ap_ufixed<B,0> (camera pixel p as p/256), but data reaching 1.0 needs one more bit.
    for integer in range(0, bits + 1):
        t = Fixed(bits, integer, signed)
        step = 2.0 ** (integer - bits)
        top = 2.0 ** (integer - (1 if signed else 0)) - step
        bottom = -(2.0 ** (integer - 1)) if signed else 0.0
        if hi <= top + step / 2 and lo >= bottom - step / 2:  # rounds into range, no saturation
            return InputSpec(t)
    return InputSpec(Fixed(bits, bits, signed))


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
    extra: dict = field(default_factory=dict)

    def manifest(self, original_name: str) -> dict:
        def s(t):
            return t.cpp() if t is not None else None

        return {"name": original_name, "hls_name": self.name, "class": self.cls, "weight": s(self.weight),
                "bias": s(self.bias), "result": s(self.result), "accum": s(self.accum)}


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


def layer_precisions(chain, inp: Fixed) -> list[LayerPrecision]:
    """Explicit precision for every layer of the (QKeras) chain, input type ``inp``."""
    from tensorflow import keras

    L = keras.layers
    out: list[LayerPrecision] = []
    cur = inp.plain()
    for ly in chain:
        cls = type(ly).__name__
        if cls in ("QConv2D", "QDense", "QDepthwiseConv2D"):
            if getattr(ly.activation, "__name__", "linear") != "linear":
                raise UnsupportedLayerError(ly.name, cls, _STAGE, "fused activations are not supported; "
                                            "use a separate QActivation")
            lp = _linear(ly, cur)
        elif cls == "QActivation":
            lp = LayerPrecision(ly.name, cls, result=_relu_type(ly))
        elif isinstance(ly, L.MaxPooling2D):
            lp = LayerPrecision(ly.name, cls, result=cur, accum=cur)
        elif isinstance(ly, L.AveragePooling2D):
            cfg = ly.get_config()
            area = int(np.prod(cfg["pool_size"]))
            if area & (area - 1) or cfg.get("padding") != "valid":
                raise UnsupportedLayerError(ly.name, cls, _STAGE, "AveragePooling2D is only bit-exact with a "
                                            "power-of-two pool area and padding='valid'")
            k = area.bit_length() - 1
            integer = cur.integer + k + (0 if cur.signed else 1)
            acc = Fixed(integer + cur.frac + k, integer, True)
            lp = LayerPrecision(ly.name, cls, result=acc, accum=acc, float32_exact=acc.width <= 25)
        elif isinstance(ly, (L.Flatten, L.Dropout)):
            lp = LayerPrecision(ly.name, cls, result=cur)
        elif isinstance(ly, (L.Conv2D, L.Dense, L.DepthwiseConv2D)):
            raise UnsupportedLayerError(ly.name, cls, _STAGE, "float layer; quantize the model first")
        else:
            raise UnsupportedLayerError(ly.name, cls, _STAGE, "no bit-exact HLS mapping for this layer")
        out.append(lp)
        cur = lp.result.plain()
    return out


def _hls(t: Fixed) -> str:
    return t.cpp()


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
            prec["result"] = _hls(by_name[key[: -len("_linear")]].result)
            continue
        if lp is None:
            raise UnsupportedLayerError(key, "hls4ml layer", _STAGE, "hls4ml created a layer fpgacnn has no "
                                        "precision for")
        prec["result"] = _hls(lp.result)
        if "accum" in prec or lp.accum is not None:
            prec["accum"] = _hls(lp.accum if lp.accum is not None else lp.result)
        if lp.weight is not None:
            prec["weight"] = _hls(lp.weight)
            if "depthwise" in prec:
                prec["depthwise"] = _hls(lp.weight)
        if lp.bias is not None and "bias" in prec:
            prec["bias"] = _hls(lp.bias)
        if "ReuseFactor" in lc:
            lc["ReuseFactor"] = int(reuse_factor)
    return cfg
