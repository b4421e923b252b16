"""Design points of a fit: one table row per (trim level, bit width) tried, the Pareto
front, and the message that says why nothing fits.

A row records the hardware configuration found for the point (reuse factors from
``fpgacnn.estimate.hardware``), its estimate against the part, and, where measured,
validation accuracy right after post-training quantization (``accuracy_ptq``, a cheap
ranking signal) and after fine-tuning with quantization-aware training (``accuracy``).
"""
from __future__ import annotations

import math

from fpgacnn.estimate.estimator import RESOURCE_KEYS
from fpgacnn.estimate.parts import Part


def overshoot(row: dict) -> tuple[float, str]:
    """``(ratio, what)``: how far the row is from fitting (<= 1 fits) and which limit binds."""
    ratios = {k: row["used"][k] / row["budget"][k] if row["budget"][k] else
              (math.inf if row["used"][k] else 0.0) for k in RESOURCE_KEYS}
    ratios["throughput"] = row["ii_cycles"] / row["budget_ii"] if row["budget_ii"] else math.inf
    what = max(ratios, key=ratios.get)
    return ratios[what], what


def make_row(keep: float, bits: int, stage: str, choice, part: Part, max_utilization: float,
             params: int | None = None, macs: int | None = None) -> dict:
    """Table row of a ``HardwareChoice``."""
    est = choice.estimate
    cap = part.capacity()
    used = {k: int(est.total[k]) for k in RESOURCE_KEYS}
    budget = {k: int(math.floor(cap[k] * max_utilization)) for k in RESOURCE_KEYS}
    row = {
        "keep": float(keep), "bits": int(bits), "stage": stage, "fits": bool(choice.fits),
        "params": params, "macs": macs, "used": used, "budget": budget,
        "utilization": {k: (used[k] / cap[k] if cap[k] else None) for k in RESOURCE_KEYS},
        "ii_cycles": int(est.total["ii_cycles"]), "latency_cycles": int(est.total["latency_cycles"]),
        "budget_ii": int(choice.budget_ii), "fps": float(est.throughput_fps),
        "latency_ms": float(est.total["latency_cycles"] / (est.clock_mhz * 1e3)),
        "accuracy_ptq": None, "accuracy": None, "pareto": False,
        "reuse": dict(choice.design.layer_reuse), "strategy": dict(choice.design.layer_strategy),
    }
    ratio, what = overshoot(row)
    row["bottleneck"] = what
    row["peak"] = ratio
    return row


def skipped_row(keep: float, bits: int, because: tuple) -> dict:
    return {"keep": float(keep), "bits": int(bits), "stage": "skipped", "fits": False,
            "note": f"not estimated: the smaller point keep {because[0]:g}, {because[1]} bits does not fit",
            "accuracy_ptq": None, "accuracy": None, "pareto": False}


def dominated_by(point: tuple, others) -> tuple | None:
    """An ``(keep, bits)`` point in ``others`` no larger than ``point`` in both, if any."""
    k, b = point
    for ok, ob in others:
        if ok <= k and ob <= b and (ok, ob) != (k, b):
            return ok, ob
    return None


def maximal(points):
    """Points not exceeded in both keep and bits by another point of the set."""
    pts = list(points)
    return [p for p in pts if not any(q != p and q[0] >= p[0] and q[1] >= p[1] for q in pts)]


def screening_order(rows: list[dict], n_classes: int, n_val: int) -> list[dict]:
    """Screened rows, most promising for fine-tuning first.

    Post-training accuracy ranks a point only where it is clearly above chance (more
    than two standard errors of guessing on ``n_val`` images): a deeply trimmed network
    often scores at chance before fine-tuning even with re-estimated batch-norm
    statistics, and differences between chance-level scores are noise. Those points,
    after the informative ones, go by kept kernels, then bits, the capacity that
    fine-tuning can recover.
    """
    chance = 1.0 / max(1, int(n_classes))
    noise = 2.0 * math.sqrt(chance * (1.0 - chance) / max(1, int(n_val)))

    def key(r):
        acc = r["accuracy_ptq"]
        informative = acc is not None and acc > chance + noise
        return (not informative, -(acc if informative else 0.0), -r["keep"], -r["bits"])

    return sorted(rows, key=key)


def mark_pareto(rows: list[dict]) -> None:
    """Flag the fine-tuned designs that fit and that no other fitting one beats on both
    validation accuracy (higher) and peak utilization of the part (lower)."""
    cand = [r for r in rows if r["stage"] == "finetuned" and r["fits"] and r["accuracy"] is not None]
    for r in rows:
        r["pareto"] = False
    for r in cand:
        r["pareto"] = not any(
            o is not r and o["accuracy"] >= r["accuracy"] and o["peak"] <= r["peak"]
            and (o["accuracy"] > r["accuracy"] or o["peak"] < r["peak"]) for o in cand)


def budget_message(rows: list[dict], part: Part, fps: float, clock_mhz: float, max_utilization: float) -> str:
    """One line: which limit the closest point misses and by how much."""
    measured = [r for r in rows if "used" in r]
    if not measured:
        return f"no design point could be estimated for {part.name}"
    best = min(measured, key=lambda r: overshoot(r)[0])
    ratio, what = overshoot(best)
    where = f"closest point: keep {best['keep']:g}, {best['bits']} bits"
    head = f"no design fits {part.name} at {fps:g} fps, {clock_mhz:g} MHz, {max_utilization:.0%} utilization"
    if what == "throughput":
        got = clock_mhz * 1e6 / max(1, best["ii_cycles"])
        detail = (f"throughput: needs {best['ii_cycles']:,} cycles per image ({got:,.1f} fps), {fps:g} fps allows "
                  f"{best['budget_ii']:,}: {ratio:.1f}x over")
    else:
        cap = part.capacity()[what]
        detail = (f"{what}: needs {best['used'][what]:,}, part allows {best['budget'][what]:,} "
                  f"({max_utilization:.0%} of {cap:,}): {ratio:.1f}x over")
    return f"{head}; {detail} ({where})"


def table_text(rows: list[dict]) -> str:
    """Fixed-width table of the points tried."""
    head = (f"{'keep':>5s} {'bits':>4s} {'stage':9s} {'fits':4s} {'DSP':>6s} {'BRAM':>6s} {'LUT':>8s} "
            f"{'FF':>8s} {'fps':>9s} {'bottleneck':10s} {'acc_ptq':>7s} {'acc':>6s} pareto")
    lines = [head]
    for r in rows:
        if "used" not in r:
            lines.append(f"{r['keep']:5.3g} {r['bits']:4d} {r['stage']:9s} {'-':4s}  {r.get('note', '')}")
            continue
        u = r["used"]
        ptq = f"{r['accuracy_ptq']:.4f}" if r["accuracy_ptq"] is not None else "-"
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "-"
        lines.append(f"{r['keep']:5.3g} {r['bits']:4d} {r['stage']:9s} {'yes' if r['fits'] else 'no':4s} "
                     f"{u['DSP']:6d} {u['BRAM_18K']:6d} {u['LUT']:8d} {u['FF']:8d} {r['fps']:9.1f} "
                     f"{r['bottleneck']:10s} {ptq:>7s} {acc:>6s} {'*' if r['pareto'] else ''}")
    return "\n".join(lines)
