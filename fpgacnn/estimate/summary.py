"""An estimate in the shapes other parts of fpgacnn need: the project manifest block, the
README table and the terminal table of ``fpgacnn estimate``.

The manifest block is the contract with report.json and the plots: ``total`` (DSP,
BRAM_18K, LUT, FF, latency_cycles, ii_cycles), ``capacity`` (the part's DSP, BRAM_18K,
LUT, FF, or null for a part outside the catalogue), ``performance`` (latency_ms, fps,
clock_mhz) and ``part``. Generation must never fail because of the estimate, so
``manifest_block`` turns any failure into an ``error`` entry instead of raising.
"""
from __future__ import annotations

from fpgacnn.estimate.estimator import RESOURCE_KEYS, TOTAL_KEYS, Estimate

SOURCE = "fpgacnn estimator (not vendor synthesis)"


def block_from_estimate(est: Estimate, part_code: str | None = None) -> dict:
    """The manifest's ``estimate`` entry for ``est``; rows the estimator could not model are
    listed under ``notes``."""
    cap = est.part.capacity() if est.part is not None else None
    notes = [f"{r['name']}: {r['note']}" for r in est.layers if r.get("note")]
    block = {
        "source": SOURCE,
        "part": est.part.name if est.part is not None else (part_code or None),
        "total": {k: int(est.total[k]) for k in TOTAL_KEYS},
        "capacity": {k: int(cap[k]) for k in RESOURCE_KEYS} if cap else None,
        "utilization": ({k: round(est.total[k] / cap[k], 6) if cap[k] else None for k in RESOURCE_KEYS}
                        if cap else None),
        "performance": {"latency_ms": round(est.total["latency_cycles"] / (est.clock_mhz * 1e3), 9),
                        "fps": round(est.throughput_fps, 3), "clock_mhz": float(est.clock_mhz)},
        "io_type": est.io_type,
        "notes": notes,
    }
    return block


def manifest_block(hls_model, part_code: str, clock_mhz: float) -> dict:
    """Estimate a converted hls4ml model for the manifest; never raises.

    A part outside the catalogue (a custom board) gives an estimate without capacity.
    """
    from fpgacnn.errors import InputError
    from fpgacnn.estimate.estimator import estimate_resources
    from fpgacnn.estimate.parts import get_part

    try:
        try:
            part = get_part(part_code)
        except InputError:
            part = None
        est = estimate_resources(hls_model, part=part, clock_mhz=clock_mhz)
        return block_from_estimate(est, part_code)
    except Exception as exc:  # noqa: BLE001 - the estimate is advisory; generation goes on
        return {"source": SOURCE, "part": part_code, "error": f"{type(exc).__name__}: {exc}"[:300],
                "total": None, "capacity": None, "performance": None}


def _fmt(n) -> str:
    return f"{int(n):,}"


def readme_context(block) -> dict | None:
    """Pre-formatted rows for the README's "Resource estimate" section (strings only, so
    the template needs no arithmetic); None when there is nothing to show."""
    if not isinstance(block, dict) or not isinstance(block.get("total"), dict):
        return None
    total, cap = block["total"], block.get("capacity") or {}
    rows = []
    for k in RESOURCE_KEYS:
        used = total.get(k)
        if not isinstance(used, (int, float)):
            return None
        c = cap.get(k) if isinstance(cap, dict) else None
        pct = f"{100.0 * used / c:.1f}%" if isinstance(c, (int, float)) and c else "n/a"
        rows.append({"resource": k, "used": _fmt(used), "capacity": _fmt(c) if c else "n/a", "percent": pct})
    perf = block.get("performance") or {}
    try:
        latency = f"{float(perf['latency_ms']):.4g} ms ({_fmt(total['latency_cycles'])} cycles)"
        throughput = f"{float(perf['fps']):,.1f} images/s (one image every {_fmt(total['ii_cycles'])} cycles)"
        clock = f"{float(perf['clock_mhz']):g} MHz"
    except (KeyError, TypeError, ValueError):
        return None
    return {"part": str(block.get("part") or "unknown part"), "rows": rows, "latency": latency,
            "throughput": throughput, "clock": clock, "has_capacity": bool(cap),
            "notes": [str(n) for n in block.get("notes") or []]}


def capacity_table(est: Estimate, max_utilization: float | None = None) -> str:
    """Per-layer table, totals, and the totals against the part's capacity (terminal output)."""
    lines = [est.summary()]
    if est.part is None:
        lines.append("part outside the catalogue: no capacity to compare with")
        return "\n".join(lines)
    cap = est.part.capacity()
    lines.append("")
    lines.append(f"{'part ' + est.part.name:24s} {'used':>9s} {'capacity':>9s} {'used %':>7s}")
    for k in RESOURCE_KEYS:
        pct = 100.0 * est.total[k] / cap[k] if cap[k] else float("inf")
        flag = ""
        if max_utilization is not None and pct > 100.0 * max_utilization:
            flag = f"  over {max_utilization:.0%}"
        lines.append(f"{k:24s} {est.total[k]:9,d} {cap[k]:9,d} {pct:6.1f}%{flag}")
    return "\n".join(lines)
