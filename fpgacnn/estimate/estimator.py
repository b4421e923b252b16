"""Resource and latency estimate of an hls4ml design without running the vendor tools.

``estimate_resources(hls_model)`` walks a converted hls4ml ``ModelGraph`` (conversion
only: nothing is written or compiled), applies the per-layer rules of
:mod:`fpgacnn.estimate.rules` (arithmetic in :mod:`fpgacnn.estimate.layers`), adds the
io_stream FIFOs and combines the rows into totals and dataflow timing.
``estimate_keras(model)`` converts first.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from fpgacnn.errors import InputError
from fpgacnn.estimate import layers as L
from fpgacnn.estimate.parts import Part, get_part
from fpgacnn.estimate.rules import Context, dataflow_latency, estimate_layer, input_variable, shape_of

RESOURCE_KEYS = ("DSP", "BRAM_18K", "LUT", "FF")
TOTAL_KEYS = RESOURCE_KEYS + ("latency_cycles", "ii_cycles")


@dataclass
class Estimate:
    """Per-layer rows and design totals.

    ``total`` holds ``DSP, BRAM_18K, LUT, FF, latency_cycles, ii_cycles``; ``layers`` a
    list of dicts with the same keys plus layer details.
    """

    layers: list = field(default_factory=list)
    total: dict = field(default_factory=dict)
    part: Part | None = None
    clock_mhz: float = 100.0
    io_type: str = "io_stream"

    # ---- timing ----
    @property
    def latency_us(self) -> float:
        return self.total["latency_cycles"] / self.clock_mhz

    @property
    def throughput_fps(self) -> float:
        return self.clock_mhz * 1e6 / max(1, self.total["ii_cycles"])

    # ---- against a part ----
    def _part(self, part) -> Part:
        if part is None:
            if self.part is None:
                raise InputError("no part given and the estimate was made without one")
            return self.part
        return get_part(part)

    def utilization(self, part=None) -> dict:
        """Fraction of the part's DSP, BRAM_18K, LUT and FF the design uses."""
        cap = self._part(part).capacity()
        return {k: (self.total[k] / cap[k] if cap[k] else (math.inf if self.total[k] else 0.0))
                for k in RESOURCE_KEYS}

    def fits(self, part=None, max_utilization: float = 0.8) -> bool:
        if not 0 < max_utilization <= 1.0:
            raise InputError(f"max_utilization must be in (0, 1], got {max_utilization}")
        return all(u <= max_utilization for u in self.utilization(part).values())

    def bottleneck(self, part=None, max_utilization: float = 0.8) -> dict:
        """The most used resource: name, used, budget (``max_utilization`` x capacity),
        utilization and ``shortfall`` (units over budget, 0 when it fits)."""
        p = self._part(part)
        util = self.utilization(p)
        name = max(util, key=util.get)
        cap = p.capacity()[name]
        budget = math.floor(cap * max_utilization)
        used = self.total[name]
        return {"resource": name, "used": used, "available": cap, "budget": budget,
                "utilization": util[name], "shortfall": max(0, math.ceil(used - budget)),
                "fits": self.fits(p, max_utilization)}

    # ---- serialisation ----
    def to_dict(self) -> dict:
        return {"part": self.part.to_dict() if self.part else None, "clock_mhz": self.clock_mhz,
                "io_type": self.io_type, "total": dict(self.total),
                "latency_us": self.latency_us, "throughput_fps": self.throughput_fps,
                "layers": [dict(r) for r in self.layers]}

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict) -> "Estimate":
        part = Part(**d["part"]) if d.get("part") else None
        return cls(layers=[dict(r) for r in d["layers"]], total=dict(d["total"]), part=part,
                   clock_mhz=d["clock_mhz"], io_type=d["io_type"])

    def summary(self) -> str:
        lines = [f"{'layer':24s} {'DSP':>7s} {'BRAM18':>7s} {'LUT':>9s} {'FF':>9s} {'lat':>7s} {'II':>7s}"]
        for r in self.layers:
            lines.append(f"{r['name'][:24]:24s} {r['DSP']:7d} {r['BRAM_18K']:7d} {r['LUT']:9d} {r['FF']:9d} "
                         f"{r['latency_cycles']:7d} {r['ii_cycles']:7d}")
        t = self.total
        lines.append(f"{'TOTAL':24s} {t['DSP']:7d} {t['BRAM_18K']:7d} {t['LUT']:9d} {t['FF']:9d} "
                     f"{t['latency_cycles']:7d} {t['ii_cycles']:7d}")
        lines.append(f"latency {self.latency_us:.2f} us at {self.clock_mhz:g} MHz, {self.throughput_fps:,.0f} fps")
        return "\n".join(lines)


def _catalogue_part(code):
    """The catalogue entry of the model's own part setting, or None for a part we do not
    know (a custom board): the estimate is still made, only without capacity."""
    if not code:
        return None
    try:
        return get_part(str(code))
    except InputError:
        return None


def estimate_resources(hls_model, part=None, clock_mhz=None) -> Estimate:
    """Estimate DSP, BRAM_18K, LUT, FF, latency and II of a converted hls4ml model.

    ``part`` (name, ordering code or ``Part``) and ``clock_mhz`` default to the model's
    own ``Part`` and ``ClockPeriod`` settings; an unknown part given explicitly is an
    error, an unknown part in the model's settings gives an estimate without a part.
    """
    if not hasattr(hls_model, "get_layers") or not hasattr(hls_model, "config"):
        raise InputError("estimate_resources needs an hls4ml ModelGraph (hls4ml.converters.convert_from_*_model)")
    cfg = hls_model.config
    io_type = str(cfg.get_config_value("IOType") or "io_parallel")
    if part is None:
        p = _catalogue_part(cfg.get_config_value("Part"))
    else:
        p = get_part(part)
    if clock_mhz is None:
        period = float(cfg.get_config_value("ClockPeriod") or 5)
        clock_mhz = 1000.0 / period
    if clock_mhz <= 0:
        raise InputError(f"clock_mhz must be positive, got {clock_mhz}")
    ctx = Context(io_type, 1000.0 / clock_mhz, p)
    output_names = set(getattr(hls_model, "outputs", []) or [])
    rows = []
    for layer in hls_model.get_layers():
        r = estimate_layer(layer, ctx)
        # reading time of the layer's input stream (for the dataflow drain model)
        if ctx.stream and r["latency_cycles"]:
            iv = input_variable(layer)
            shape = shape_of(iv)
            r["_read_cycles"] = max(1, int(math.prod(shape)) // max(1, shape[-1])) * int(r.get("reuse_factor", 1))
        fifo = {"BRAM_18K": 0, "FF": 0, "LUT": 0}
        ov = layer.get_output_variable() if layer.class_name not in ("Reshape", "Flatten") else None
        pragma = getattr(ov, "pragma", None) if ov is not None else None
        if (ctx.stream and isinstance(pragma, tuple) and pragma[0] == "stream" and layer.name not in output_names
                and layer.class_name not in ("InputLayer", "Input")):
            width = L.prec_info(ov.type.precision)["width"]
            fifo = L.fifo_cost(int(pragma[1]), width, shape_of(ov)[-1])
        r["fifo"] = fifo
        for k in ("BRAM_18K", "FF", "LUT"):
            r[k] = r[k] + fifo[k]
        if r["latency_cycles"] or r["DSP"] or r["LUT"]:
            r["LUT"] += L.LAYER_LUT_OVERHEAD
            r["FF"] += L.LAYER_FF_OVERHEAD
        for k in RESOURCE_KEYS:
            r[k] = int(round(r[k]))
        rows.append(r)
    total = {k: int(sum(r[k] for r in rows)) for k in RESOURCE_KEYS}
    timed = [r for r in rows if r["ii_cycles"] > 0]
    if ctx.stream:
        total["ii_cycles"] = int(max([r["ii_cycles"] for r in timed], default=1)) + 1
        total["latency_cycles"] = int(dataflow_latency(timed))
    else:
        total["ii_cycles"] = int(max([r["ii_cycles"] for r in timed], default=1))
        total["latency_cycles"] = int(sum(r["latency_cycles"] for r in rows))
    for r in rows:
        r.pop("_read_cycles", None)
    return Estimate(layers=rows, total=total, part=p, clock_mhz=float(clock_mhz), io_type=io_type)


def estimate_keras(model, config=None, io_type="io_stream", strategy="Latency", reuse_factor=1,
                   part="xc7z020clg400-1", clock_mhz=100.0, backend="Vivado") -> Estimate:
    """Convert a Keras model with hls4ml (no files written) and estimate it."""
    import hls4ml  # heavy import, only here

    if io_type not in ("io_stream", "io_parallel"):
        raise InputError(f"io_type must be io_stream or io_parallel, got {io_type!r}")
    if str(strategy).lower() not in ("latency", "resource"):
        raise InputError(f"strategy must be Latency or Resource, got {strategy!r}")
    if int(reuse_factor) < 1:
        raise InputError(f"reuse_factor must be >= 1, got {reuse_factor}")
    p = get_part(part)
    if config is None:
        config = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
        config.setdefault("Model", {})
        config["Model"]["Strategy"] = strategy
        config["Model"]["ReuseFactor"] = int(reuse_factor)
        for lc in config.get("LayerName", {}).values():
            lc["Strategy"] = strategy
            lc["ReuseFactor"] = int(reuse_factor)
    part_str = part if isinstance(part, str) else p.name
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fpgacnn-est-") as tmp:
        hls_model = hls4ml.converters.convert_from_keras_model(
            model, hls_config=config, io_type=io_type, backend=backend, part=part_str,
            clock_period=1000.0 / clock_mhz, output_dir=tmp)
        return estimate_resources(hls_model, part=p, clock_mhz=clock_mhz)
