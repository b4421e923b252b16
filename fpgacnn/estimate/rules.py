"""Per-layer rules: one resource/latency row for each hls4ml layer of a converted model.

Dispatch on the hls4ml layer class; the arithmetic of each rule (constant multipliers,
FIFOs, BRAM aspect ratios) is in :mod:`fpgacnn.estimate.layers`, the totals and the
dataflow timing in :mod:`fpgacnn.estimate.estimator`.
"""
from __future__ import annotations

import math

from fpgacnn.estimate import layers as L

_NO_COST = {"InputLayer", "Input", "Reshape", "Flatten", "Dropout", "Transpose"}
_ELEMENTWISE = {"Activation", "ReLU", "LeakyReLU", "ThresholdedReLU", "ELU", "PReLU", "HardActivation",
                "ParametrizedActivation", "TernaryTanh", "BinaryTanh"}
_TABLE_ACTS = {"sigmoid", "tanh", "elu", "selu", "softplus", "softsign", "gelu", "swish", "exp"}
_MERGE = {"Merge", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot"}


# ---------------------------------------------------------------------------------
class Context:
    """What every rule needs to know about the design: io type, clock period and DSP type."""

    def __init__(self, io_type, clock_ns, part):
        self.io_type = io_type
        self.stream = io_type == "io_stream"
        self.clock_ns = clock_ns
        self.part = part
        self.dsp_type = part.dsp_type if part else "DSP48E2"


def _attr(layer, name, default=None):
    try:
        v = layer.get_attr(name, default)
    except Exception:  # noqa: BLE001 - hls4ml raises for some attribute kinds
        return default
    return default if v is None else v


def _type_info(layer, key):
    t = layer.types.get(key) if hasattr(layer, "types") else None
    return L.prec_info(t.precision) if t is not None else None


def input_variable(layer):
    """The layer's input variable, or None where hls4ml has none (input layers)."""
    try:
        return layer.get_input_variable()
    except Exception:  # noqa: BLE001
        return None


def shape_of(var):
    """Shape of an hls4ml variable as ints ([1] when there is none)."""
    return [int(s) for s in var.shape] if var is not None else [1]


def _row(layer, **kw):
    r = {"name": layer.name, "class_name": layer.class_name, "DSP": 0, "BRAM_18K": 0, "LUT": 0.0, "FF": 0.0,
         "latency_cycles": 0, "ii_cycles": 1}
    r.update(kw)
    return r


def _strategy(layer):
    s = str(_attr(layer, "strategy", "latency")).lower()
    return "resource" if "resource" in s else "latency"


def _mac(layer, ctx, wkey="weight", n_out=None, n_copies=1, n_in_override=None, pipe=1.0):
    """Multiply-accumulate kernel with the weights ``wkey`` (dense / conv per-pixel kernel)."""
    W = layer.weights[wkey]
    winfo = L.prec_info(W.type.precision)
    q = L.quantize_weights(W.data, winfo)
    iv = input_variable(layer)
    ainfo = L.prec_info(iv.type.precision) if iv is not None else {"width": 16, "signed": True}
    a = L.signed_width(ainfo)
    acc = _type_info(layer, "accum_t") or L.prec_info(layer.get_output_variable().type.precision)
    n_total = q.size
    n_out = n_out or max(1, n_total // max(1, n_in_override or 1))
    n_in = max(1, n_total // n_out)
    rf = max(1, int(_attr(layer, "reuse_factor", 1)))
    strategy = _strategy(layer)
    res = {"n_mult": n_total, "reuse_factor": rf, "strategy": strategy, "input_bits": a,
           "weight_bits": winfo["width"]}
    bram = 0
    if rf == 1:
        cm = L.constant_multipliers(q, a, ctx.dsp_type)
        n_nz = cm["n_nonzero"]
        dsp, mult_lut = cm["DSP"], cm["mult_LUT"]
        avg_prod = cm["product_bits_sum"] / max(1, n_nz)
        res.update({k: cm[k] for k in ("n_nonzero", "n_dsp_mult", "n_lut_mult", "n_shift")})
        n_adders = max(0, n_nz - n_out)
        regs_bits = cm["product_bits_sum"]
    else:
        n_nz = int((q != 0).sum())
        n_units = math.ceil((n_total if strategy == "resource" else n_nz) / rf)
        b = L.signed_width(winfo)
        if winfo["kind"] in ("po2", "binary"):
            dsp, mult_lut = 0, n_units * a * 1.0
        elif L.uses_dsp(a, b):
            dsp, mult_lut = n_units * L.dsp_per_multiplier(a, b, ctx.dsp_type), 0.0
        else:
            dsp, mult_lut = 0, n_units * a * b * 0.6
        avg_prod = a + b
        res.update({"n_nonzero": n_nz, "n_multipliers": n_units})
        n_adders = n_units  # accumulate into n_out partial sums per cycle
        regs_bits = n_units * avg_prod
        if strategy == "resource":
            bram = L.bram18_for(n_units * winfo["width"], rf)  # ROM_nP_BRAM, depth = RF
        else:
            mult_lut += n_total * winfo["width"] / 8.0  # constants muxed per cycle
    add_bits = min(acc["width"], avg_prod + math.ceil(math.log2(max(2, n_in))))
    lut = mult_lut + n_adders * add_bits * L.ADD_LUT_PER_BIT
    out = L.prec_info(layer.get_output_variable().type.precision)
    if out.get("rnd") or out.get("sat"):  # an activation folded into the output cast (fpgacnn.hls.fuse)
        lut += n_out * L.cast_lut(acc["width"], out["width"])
    ff = regs_bits * L.MUL_FF_PER_BIT * pipe + n_out * acc["width"]
    depth = L.adder_tree_depth(max(1, n_nz // n_out), ctx.clock_ns)
    res.update({"DSP": int(dsp) * n_copies, "BRAM_18K": int(bram), "LUT": lut * n_copies, "FF": ff * n_copies,
                "compute_depth": depth + rf - 1})
    return res


def _conv(layer, ctx):
    is1d = "1D" in layer.class_name
    n_chan = int(_attr(layer, "n_chan", 1))
    n_filt = int(_attr(layer, "n_filt", 1))
    fh = 1 if is1d else int(_attr(layer, "filt_height", 1))
    fw = int(_attr(layer, "filt_width", 1))
    in_h = 1 if is1d else int(_attr(layer, "in_height", 1))
    in_w = int(_attr(layer, "in_width", 1))
    out_px = (1 if is1d else int(_attr(layer, "out_height", 1))) * int(_attr(layer, "out_width", 1))
    depthwise = "Depthwise" in layer.class_name
    iv = input_variable(layer)
    in_bits = L.prec_info(iv.type.precision)["width"] if iv is not None else 16
    rf = max(1, int(_attr(layer, "reuse_factor", 1)))
    if depthwise:
        n_out = n_chan
    else:
        n_out = n_filt
    copies = 1
    if not ctx.stream:
        n_part = int(_attr(layer, "n_partitions", out_px) or out_px)
        copies = max(1, out_px // max(1, n_part))
    if "Separable" in layer.class_name and "depthwise" in layer.weights:
        dw = _mac(layer, ctx, "depthwise", n_out=n_chan, n_copies=copies)
        pw = _mac(layer, ctx, "pointwise", n_out=n_filt, n_copies=copies)
        m = {k: (dw[k] + pw[k] if isinstance(dw[k], (int, float)) and k not in ("reuse_factor",) else dw[k])
             for k in dw}
        m["compute_depth"] = dw["compute_depth"] + pw["compute_depth"]
    else:
        m = _mac(layer, ctx, "weight", n_out=n_out, n_copies=copies, pipe=2.0)
    if ctx.stream:
        px_in = in_h * in_w
        lat = px_in * rf + m["compute_depth"]
        ii = lat
        # line buffer: (fh-1) rows of ap_shift_reg per channel (SRL), window registers (FF)
        lb_lut = (fh - 1) * n_chan * in_bits * math.ceil(in_w / L.SRL_PER_BITS)
        m["LUT"] += lb_lut
        m["FF"] += fh * fw * n_chan * in_bits + 1000
        m["line_buffer_LUT"] = lb_lut
    else:
        n_part = int(_attr(layer, "n_partitions", out_px) or out_px)
        lat = n_part * rf + m["compute_depth"]
        ii = n_part * rf
    m.pop("compute_depth", None)
    return _row(layer, **m, latency_cycles=int(lat), ii_cycles=int(ii))


def _dense(layer, ctx):
    n_in = int(_attr(layer, "n_in", 1))
    n_out = int(_attr(layer, "n_out", 1))
    m = _mac(layer, ctx, "weight", n_out=n_out)
    rf = m["reuse_factor"]
    if ctx.stream:
        iv = input_variable(layer)
        beats = max(1, n_in // max(1, shape_of(iv)[-1]))
        lat = beats + m["compute_depth"] - 1
        ii = max(lat, 1)
    else:
        lat = m["compute_depth"]
        ii = rf
    m.pop("compute_depth", None)
    return _row(layer, **m, latency_cycles=int(lat), ii_cycles=int(ii))


def _pixels_and_lanes(layer, ctx):
    shape = shape_of(layer.get_output_variable())
    n = int(math.prod(shape))
    lanes = shape[-1] if ctx.stream else n
    return max(1, n // max(1, shape[-1])), max(1, lanes)


def _elementwise(layer, ctx):
    iv = input_variable(layer)
    ain = L.prec_info(iv.type.precision) if iv is not None else {"width": 16}
    out = L.prec_info(layer.get_output_variable().type.precision)
    px, lanes = _pixels_and_lanes(layer, ctx)
    act = str(_attr(layer, "activation", layer.class_name)).lower()
    bram = 0
    if act in _TABLE_ACTS or layer.class_name == "ELU":
        tsize = int(_attr(layer, "table_size", 1024))
        tinfo = _type_info(layer, "table_t") or {"width": 18}
        bram = math.ceil(lanes / 2) * L.bram18_for(tinfo["width"], tsize)
        lut_lane = 2 * ain["width"] + 20
        base_lat = 1
    elif act in ("linear",):
        lut_lane, base_lat = out["width"] * 0.5, 0
    else:
        lut_lane = 3 * ain["width"]
        if out.get("rnd") or out.get("sat"):
            lut_lane += L.cast_lut(ain["width"], out["width"])
        if layer.class_name in ("LeakyReLU", "PReLU", "ELU"):
            lut_lane += 2 * ain["width"]
        base_lat = 0
    if ctx.stream:
        lat = px + 2 if px > 1 else base_lat
    else:
        lat = base_lat
    ff = (lanes if px > 1 else 0) + (lanes * out["width"] if base_lat else 0)
    return _row(layer, BRAM_18K=bram, LUT=lut_lane * lanes, FF=ff,
                latency_cycles=int(lat), ii_cycles=int(max(1, lat)))


def _softmax(layer, ctx):
    px, lanes = _pixels_and_lanes(layer, ctx)
    n = int(_attr(layer, "n_in", lanes)) if not ctx.stream else lanes
    n = max(1, min(n, lanes))
    copies = max(1, lanes // n)
    exp_info = _type_info(layer, "exp_table_t") or {"width": 18}
    tsize = int(_attr(layer, "exp_table_size", _attr(layer, "table_size", 1024)))
    bram = (math.ceil(n / 4) + 1) * L.bram18_for(exp_info["width"], tsize) * copies
    lat = 3 + math.ceil(math.log2(max(2, n))) + (px - 1 if ctx.stream else 0)
    return _row(layer, DSP=n * copies, BRAM_18K=bram, LUT=300.0 * n * copies, FF=78.0 * n * copies,
                latency_cycles=int(lat), ii_cycles=int(lat if ctx.stream else 1))


def _batchnorm(layer, ctx):
    if "scale" not in layer.weights:
        return _row(layer, note="no scale weights")
    W = layer.weights["scale"]
    winfo = L.prec_info(W.type.precision)
    q = L.quantize_weights(W.data, winfo)
    iv = input_variable(layer)
    a = L.signed_width(L.prec_info(iv.type.precision)) if iv is not None else 16
    px, lanes = _pixels_and_lanes(layer, ctx)
    reps = max(1, lanes // max(1, q.size))
    cm = L.constant_multipliers(q, a, ctx.dsp_type)
    out = L.prec_info(layer.get_output_variable().type.precision)
    lut = (cm["mult_LUT"] + q.size * out["width"] * L.ADD_LUT_PER_BIT) * reps
    ff = q.size * out["width"] * reps
    lat = (px + 1) if ctx.stream and px > 1 else 1
    return _row(layer, DSP=cm["DSP"] * reps, LUT=lut, FF=ff, latency_cycles=int(lat), ii_cycles=int(lat),
                n_dsp_mult=cm["n_dsp_mult"] * reps)


def _pooling(layer, ctx):
    iv = input_variable(layer)
    ain = L.prec_info(iv.type.precision)["width"] if iv is not None else 16
    aout = L.prec_info(layer.get_output_variable().type.precision)["width"]
    is1d = "1D" in layer.class_name
    ph = 1 if is1d else int(_attr(layer, "pool_height", 2))
    pw = int(_attr(layer, "pool_width", _attr(layer, "pool_size", 2)))
    window = max(1, ph * pw)
    n_filt = int(_attr(layer, "n_filt", shape_of(iv)[-1]))
    in_w = int(_attr(layer, "in_width", 1))
    in_h = 1 if is1d else int(_attr(layer, "in_height", 1))
    if "Global" in layer.class_name:
        window = in_h * in_w
    avg = "Average" in str(_attr(layer, "pool_op", layer.class_name))
    if ctx.stream:
        lanes = n_filt
        lut_lane = 2.6 * ain * min(window - 1, 15) / 3 + 7 * aout + (4 * aout if avg else 0)
        lb = (ph - 1) * ain * math.ceil(in_w / L.SRL_PER_BITS) if "Global" not in layer.class_name else 0
        lut = lanes * (lut_lane + lb)
        ff = lanes * (3.15 * ain * min(window, 16) / 4 + 4.66 * aout)
        lat = in_h * in_w + 3
        ii = lat
    else:
        _, lanes = _pixels_and_lanes(layer, ctx)
        lut = lanes * ((window - 1) * ain * 1.0 + aout)
        ff = lanes * aout
        lat, ii = 1, 1
    return _row(layer, LUT=lut, FF=ff, latency_cycles=int(lat), ii_cycles=int(ii))


def _merge(layer, ctx):
    out = L.prec_info(layer.get_output_variable().type.precision)
    px, lanes = _pixels_and_lanes(layer, ctx)
    op = str(_attr(layer, "op", layer.class_name)).lower()
    lut_lane = 0.5 * out["width"] if "concat" in op else out["width"]
    dsp = lanes if "mul" in op and out["width"] > 10 else 0
    lat = px + 1 if ctx.stream and px > 1 else 1
    return _row(layer, DSP=dsp, LUT=lut_lane * lanes, FF=lanes * out["width"] * 0.5, latency_cycles=int(lat),
                ii_cycles=int(lat))


def _padding(layer, ctx):
    px, lanes = _pixels_and_lanes(layer, ctx)
    return _row(layer, LUT=2.0 * lanes, FF=float(lanes), latency_cycles=int(px if ctx.stream else 0),
                ii_cycles=int(max(1, px if ctx.stream else 1)))


def estimate_layer(layer, ctx):
    cls = layer.class_name
    if cls in _NO_COST:
        return _row(layer, ii_cycles=0)
    if "Conv" in cls and "weight" in layer.weights or cls.startswith("SeparableConv") or cls.startswith("Depthwise"):
        return _conv(layer, ctx)
    if cls in ("Dense", "QDense", "DenseBatchnorm") or (cls.endswith("Dense") and "weight" in layer.weights):
        return _dense(layer, ctx)
    if cls == "Softmax" or str(_attr(layer, "activation", "")).lower() == "softmax":
        return _softmax(layer, ctx)
    if cls in ("BatchNormalization", "ApplyAlpha"):
        return _batchnorm(layer, ctx)
    if "Pooling" in cls:
        return _pooling(layer, ctx)
    if cls in _ELEMENTWISE or cls.endswith("Activation"):
        return _elementwise(layer, ctx)
    if cls in _MERGE or cls.startswith("Merge"):
        return _merge(layer, ctx)
    if "ZeroPadding" in cls or "Cropping" in cls:
        return _padding(layer, ctx)
    return _row(layer, ii_cycles=0, note=f"layer type {cls} not modelled (counted as zero)")


def dataflow_latency(rows):
    """First input in to last output out of a dataflow chain: the slowest stage plus the
    drain time (latency beyond its input-reading time) of every stage after it."""
    timed = [r for r in rows if r["ii_cycles"] > 0 or r["latency_cycles"] > 0]
    if not timed:
        return 0
    i_max = max(range(len(timed)), key=lambda i: timed[i]["latency_cycles"])
    total = timed[i_max]["latency_cycles"]
    for r in timed[i_max + 1:]:
        total += max(0, r["latency_cycles"] - r.get("_read_cycles", r["latency_cycles"]))
    return total
