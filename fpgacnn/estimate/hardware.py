"""Reuse factors and strategies that make a QKeras model meet a frame rate on a part.

In an io_stream design every layer is a dataflow stage and the image rate is set by
the slowest stage: a conv layer reading ``P`` input pixels with reuse factor ``R``
needs about ``P * R`` cycles per image. For a target initiation interval ``T`` each
layer therefore gets the *largest* valid reuse factor with ``P * R <= T``: layers
that see few pixels (deep, pooled ones) are slowed down to the pace of the slowest
stage, which costs no throughput and divides their multipliers by ``R`` (slowest
layer first: the layer that limits ``T`` keeps the smallest reuse factor).

Per layer, reuse factor 1 uses the Latency strategy (constant weights: zeros vanish,
small constants become shift-adds). For ``R > 1`` both strategies are estimated and
each layer takes the cheaper one, measured against the part: Latency multiplexes
constant weights in LUTs, Resource keeps them in BRAM. The smallest ``T`` that fits
is found by bisection over ``T_min * 2^k`` up to the frame budget (``fastest=True``);
feasibility alone needs only the budget itself.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from fpgacnn.errors import InputError
from fpgacnn.estimate.design import Design, estimate_design, mult_geometry, prepare
from fpgacnn.estimate.estimator import RESOURCE_KEYS, Estimate
from fpgacnn.estimate.parts import Part

_PIPELINE_SLACK = 8  # cycles of a layer's pipeline depth beyond its pixel loop


def valid_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """Reuse factors hls4ml accepts for an ``n_in x n_out`` kernel (the Vivado/Vitis
    backends' ``_validate_reuse_factor``), without its loop over every integer."""
    n = int(n_in) * int(n_out)
    divisors = sorted({d for i in range(1, math.isqrt(n) + 1) if n % i == 0 for d in (i, n // i)})
    valid = []
    for rf in divisors:
        multiplier_limit = math.ceil(n / min(n_in, rf))
        if not (multiplier_limit % n_out == 0 or rf >= n_in):
            continue
        if not (rf % n_in == 0 or rf < n_in):
            continue
        valid.append(rf)
    return valid


def _stage_cycles(pixels: int, rf: int, is_conv: bool) -> int:
    return (pixels + 1) * rf if is_conv else pixels + rf


def reuse_for_target(geometry: dict, target_ii: int, reuse_grid=None) -> dict:
    """``{layer: reuse factor}``: per layer the largest valid factor (from ``reuse_grid``
    when given) whose stage still meets ``target_ii`` cycles; 1 when none does."""
    reuse = {}
    for name, (n_in, n_out, pixels) in geometry.items():
        valid = valid_reuse_factors(n_in, n_out)
        if reuse_grid:
            grid = [r for r in valid if r in set(int(g) for g in reuse_grid)]
            valid = grid or [1]
        is_conv = pixels > 1
        ok = [r for r in valid if _stage_cycles(pixels, r, is_conv) + _PIPELINE_SLACK <= target_ii]
        reuse[name] = max(ok) if ok else 1
    return reuse


def _layer_cost(row: dict, budget: dict) -> float:
    return sum(row[k] / budget[k] if budget[k] else (math.inf if row[k] else 0.0) for k in RESOURCE_KEYS)


@dataclass
class HardwareChoice:
    """A hardware configuration and its estimate; ``fits`` = under every cap and on time."""

    design: Design
    estimate: Estimate
    fits: bool
    budget_ii: int
    conversions: int


def _fits(est: Estimate, part: Part, max_utilization: float, budget_ii: int) -> bool:
    return est.fits(part, max_utilization) and est.total["ii_cycles"] <= budget_ii


class HardwareSearch:
    """Configurations of one QKeras model on one part, estimated on demand."""

    def __init__(self, qmodel, part: Part, clock_mhz: float, fps: float, max_utilization: float = 0.8, *,
                 reuse_grid=None, io_type: str = "io_stream", backend: str = "Vitis", x=None,
                 input_bits: int = 8, input_type=None):
        if io_type != "io_stream":
            raise InputError("the reuse-factor search models io_stream designs only (one image per "
                             "pixels x reuse factor cycles); got io_type=" + repr(io_type))
        self.check_options(fps, clock_mhz, max_utilization)
        self.qmodel, self.part, self.clock_mhz = qmodel, part, float(clock_mhz)
        self.max_utilization = float(max_utilization)
        self.budget_ii = int(math.floor(self.clock_mhz * 1e6 / float(fps)))
        self.reuse_grid = tuple(reuse_grid) if reuse_grid else None
        self.io_type, self.backend = io_type, backend
        self.prepared = prepare(qmodel, x=x, input_bits=input_bits, input_type=input_type)
        self.geometry = mult_geometry(qmodel)
        self.budget = {k: self.part.capacity()[k] * self.max_utilization for k in RESOURCE_KEYS}
        self.conversions = 0

    @staticmethod
    def check_options(fps, clock_mhz, max_utilization) -> None:
        for what, v in (("fps", fps), ("clock_mhz", clock_mhz)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v <= 0:
                raise InputError(f"{what} must be a positive number, got {v!r}")
        if isinstance(max_utilization, bool) or not isinstance(max_utilization, numbers.Real) \
                or not 0 < max_utilization <= 1:
            raise InputError(f"max_utilization must be in (0, 1], got {max_utilization!r}")

    def _estimate(self, reuse: dict, strategy: dict) -> tuple[Design, Estimate]:
        design = Design(part=self.part.name, clock_mhz=self.clock_mhz, io_type=self.io_type, backend=self.backend,
                        strategy="Latency", reuse_factor=1, layer_reuse=dict(reuse), layer_strategy=dict(strategy))
        self.conversions += 1
        return design, estimate_design(self.prepared, design, part=self.part)

    def at(self, target_ii: int) -> HardwareChoice:
        """The cheapest configuration whose stages meet ``target_ii`` cycles per image."""
        reuse = reuse_for_target(self.geometry, target_ii, self.reuse_grid)
        latency = {n: "Latency" for n in reuse}
        design, est = self._estimate(reuse, latency)
        shared = [n for n, r in reuse.items() if r > 1]
        if shared:
            mixed = dict(latency, **{n: "Resource" for n in shared})
            d_res, e_res = self._estimate(reuse, mixed)
            rows_lat = {r.get("keras_name"): r for r in est.layers}
            rows_res = {r.get("keras_name"): r for r in e_res.layers}
            pick = dict(latency)
            for n in shared:
                if n in rows_lat and n in rows_res and \
                        _layer_cost(rows_res[n], self.budget) < _layer_cost(rows_lat[n], self.budget):
                    pick[n] = "Resource"
            if pick == mixed:
                design, est = d_res, e_res
            elif pick != latency:
                design, est = self._estimate(reuse, pick)
        return HardwareChoice(design, est, _fits(est, self.part, self.max_utilization, self.budget_ii),
                              self.budget_ii, self.conversions)

    def feasible(self) -> HardwareChoice:
        """The configuration for the frame budget itself: the fewest resources that still meet it."""
        return self.at(self.budget_ii)

    def fastest(self) -> HardwareChoice:
        """The smallest initiation interval (``T_min * 2^k`` steps, bisected) that still fits."""
        loosest = self.feasible()
        if not loosest.fits:
            return loosest
        t_min = max([_stage_cycles(p, 1, p > 1) + _PIPELINE_SLACK for _, _, p in self.geometry.values()] or [1])
        targets = []
        t = t_min
        while t < self.budget_ii:
            targets.append(t)
            t *= 2
        best = loosest
        lo, hi = 0, len(targets) - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            choice = self.at(targets[mid])
            if choice.fits:
                best, hi = choice, mid - 1
            else:
                lo = mid + 1
        best.conversions = self.conversions
        return best
