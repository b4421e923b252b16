"""Read Vivado/Vitis HLS and Vivado synthesis reports into the estimator's structure.

``parse_report(path)`` dispatches on the file: ``csynth.rpt`` (HLS text report),
``csynth.xml`` (HLS XML report), ``vivado_synth.rpt`` (``report_utilization``) or an
hls4ml baseline JSON (``{"CSynthesisReport": {...}}``). Each returns a dict with
``total`` (``DSP, BRAM_18K, LUT, FF, latency_cycles, ii_cycles``; ``None`` where the
report has no such figure) and ``instances`` (per-instance rows of the HLS report).
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from fpgacnn.errors import InputError

TOTAL_KEYS = ("DSP", "BRAM_18K", "LUT", "FF", "latency_cycles", "ii_cycles")


def _num(s):
    s = str(s).strip().replace(",", "")
    if s in ("", "-", "N/A", "undef"):
        return None
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return None


def _table_rows(lines, start):
    """Rows (list of cells) of the ``+---+`` table beginning at or after ``start``."""
    rows, i, seps = [], start, 0
    while i < len(lines) and not lines[i].strip().startswith("+-"):
        i += 1
    while i < len(lines):
        s = lines[i].strip()
        if s.startswith("+-"):
            seps += 1
        elif s.startswith("|"):
            rows.append([c.strip() for c in s.strip("|").split("|")])
        else:
            break
        i += 1
    return rows


def _find(lines, pattern, start=0):
    rx = re.compile(pattern)
    for i in range(start, len(lines)):
        if rx.search(lines[i]):
            return i
    return -1


def parse_csynth_rpt(path) -> dict:
    text = Path(path).read_text(errors="replace")
    lines = text.splitlines()
    out = {"source": str(path), "kind": "csynth.rpt", "total": dict.fromkeys(TOTAL_KEYS), "instances": []}
    m = re.search(r"Target device:\s*(\S+)", text)
    out["part"] = m.group(1) if m else None
    m = re.search(r"\|ap_clk\s*\|\s*([\d.]+)\s*ns\s*\|\s*([\d.]+)\s*ns", text)
    if m:
        out["clock_target_ns"], out["clock_estimated_ns"] = float(m.group(1)), float(m.group(2))
    # latency summary: first data row after "+ Latency:"
    i = _find(lines, r"^\s*\+ Latency:")
    if i >= 0:
        for row in _table_rows(lines, i):
            vals = [_num(c) for c in row]
            if len(row) >= 6 and vals[0] is not None:
                out["total"]["latency_cycles"] = vals[1]
                out["total"]["ii_cycles"] = vals[5]
                break
    # per-instance latency
    lat = {}
    i = _find(lines, r"^\s*\* Instance:", max(i, 0))
    u = _find(lines, r"== Utilization Estimates")
    if 0 <= i < (u if u >= 0 else len(lines)):
        for row in _table_rows(lines, i):
            if len(row) >= 8 and _num(row[2]) is not None:
                lat[row[0]] = {"module": row[1], "latency_cycles": _num(row[3]), "ii_cycles": _num(row[7]),
                               "pipeline": row[8] if len(row) > 8 else ""}
    # utilization summary
    if u >= 0:
        rows = _table_rows(lines, u)
        header = next((r for r in rows if r and r[0] == "Name"), None)
        if header:
            col = {name: k for k, name in enumerate(header)}
            for r in rows:
                if r and r[0] == "Total":
                    def g(*names):
                        for n in names:
                            if n in col:
                                return _num(r[col[n]])
                        return None
                    out["total"]["BRAM_18K"] = g("BRAM_18K")
                    out["total"]["DSP"] = g("DSP48E", "DSP")
                    out["total"]["FF"] = g("FF")
                    out["total"]["LUT"] = g("LUT")
                    out["total"]["URAM"] = g("URAM")
                    break
        # section breakdown (FIFO, Instance, ...)
        out["sections"] = {}
        if header:
            for r in rows:
                if r and r[0] in ("DSP", "Expression", "FIFO", "Instance", "Memory", "Multiplexer", "Register"):
                    out["sections"][r[0]] = {h: _num(v) for h, v in zip(header[1:], r[1:])}
        # per-instance resources
        j = _find(lines, r"^\s*\* Instance:", u)
        if j >= 0:
            rows = _table_rows(lines, j)
            hdr = rows[0] if rows else []
            hcol = {name: k for k, name in enumerate(hdr)}
            for r in rows[1:]:
                if not r or r[0] in ("Total", "") or len(r) < len(hdr):
                    continue
                name = r[0]
                row = {"instance": name, "module": r[1],
                       "BRAM_18K": _num(r[hcol.get("BRAM_18K", 2)]),
                       "DSP": _num(r[hcol["DSP48E"]] if "DSP48E" in hcol else r[hcol.get("DSP", 3)]),
                       "FF": _num(r[hcol.get("FF", 4)]), "LUT": _num(r[hcol.get("LUT", 5)])}
                row.update({k: v for k, v in lat.get(name, {}).items() if k != "module"})
                out["instances"].append(row)
        # FIFO rows
        j = _find(lines, r"^\s*\* FIFO:", u)
        out["fifos"] = []
        if j >= 0:
            rows = _table_rows(lines, j)
            for r in rows[1:]:
                if r and r[0] != "Total" and len(r) >= 7:
                    out["fifos"].append({"name": r[0], "BRAM_18K": _num(r[1]), "FF": _num(r[2]),
                                         "LUT": _num(r[3]), "depth": _num(r[5]), "bits": _num(r[6])})
    return out


def parse_csynth_xml(path) -> dict:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise InputError(f"cannot parse HLS XML report '{path}': {e}") from e
    out = {"source": str(path), "kind": "csynth.xml", "total": dict.fromkeys(TOTAL_KEYS), "instances": []}

    def txt(node, p):
        n = node.find(p)
        return _num(n.text) if n is not None and n.text is not None else None

    perf = root.find("PerformanceEstimates/SummaryOfOverallLatency")
    if perf is not None:
        out["total"]["latency_cycles"] = txt(perf, "Worst-caseLatency") or txt(perf, "Best-caseLatency")
        out["total"]["ii_cycles"] = txt(perf, "Interval-max") or txt(perf, "Interval-min")
    res = root.find("AreaEstimates/Resources")
    if res is not None:
        out["total"]["BRAM_18K"] = txt(res, "BRAM_18K")
        out["total"]["DSP"] = txt(res, "DSP48E") if res.find("DSP48E") is not None else txt(res, "DSP")
        out["total"]["FF"] = txt(res, "FF")
        out["total"]["LUT"] = txt(res, "LUT")
        out["total"]["URAM"] = txt(res, "URAM")
    dev = root.find("UserAssignments/Part")
    out["part"] = dev.text if dev is not None else None
    for inst in root.iter("Instance"):
        name = inst.findtext("InstName") or inst.get("name")
        if not name:
            continue
        row = {"instance": name, "module": inst.findtext("ModuleName")}
        ares = inst.find("AreaEstimates/Resources")
        for key, tags in (("BRAM_18K", ("BRAM_18K",)), ("DSP", ("DSP48E", "DSP")), ("FF", ("FF",)), ("LUT", ("LUT",))):
            row[key] = next((txt(ares, t) for t in tags if ares is not None and ares.find(t) is not None), None)
        out["instances"].append(row)
    return out


def parse_vivado_utilization(path) -> dict:
    text = Path(path).read_text(errors="replace")
    out = {"source": str(path), "kind": "vivado_synth.rpt", "total": dict.fromkeys(TOTAL_KEYS), "instances": []}

    def used(label):
        m = re.search(r"^\|\s*" + re.escape(label) + r"\s*\|\s*([\d.]+)\s*\|", text, re.M)
        return _num(m.group(1)) if m else None

    out["total"]["LUT"] = used("CLB LUTs*") if used("CLB LUTs*") is not None else used("Slice LUTs*") or used("Slice LUTs")
    out["total"]["FF"] = used("CLB Registers") if used("CLB Registers") is not None else used("Slice Registers")
    out["total"]["DSP"] = used("DSPs")
    tiles = used("Block RAM Tile")
    out["total"]["BRAM_18K"] = None if tiles is None else int(round(2 * tiles))
    out["total"]["URAM"] = used("URAM")
    out["LUT_as_memory"] = used("LUT as Memory")
    m = re.search(r"\|\s*Device\s*:\s*(\S+)", text)
    out["part"] = m.group(1) if m else None
    return out


def parse_hls4ml_baseline(path) -> dict:
    d = json.loads(Path(path).read_text())
    r = d.get("CSynthesisReport")
    if r is None:
        raise InputError(f"'{path}' has no CSynthesisReport (oneAPI reports are not supported)")
    return {"source": str(path), "kind": "hls4ml-baseline", "instances": [],
            "total": {"DSP": _num(r.get("DSP")), "BRAM_18K": _num(r.get("BRAM_18K")), "LUT": _num(r.get("LUT")),
                      "FF": _num(r.get("FF")), "latency_cycles": _num(r.get("WorstLatency")),
                      "ii_cycles": _num(r.get("IntervalMax"))},
            "clock_target_ns": _num(r.get("TargetClockPeriod"))}


def parse_report(path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"report '{path}' not found")
    name = p.name.lower()
    if name.endswith(".xml"):
        return parse_csynth_xml(p)
    if name.endswith(".json"):
        return parse_hls4ml_baseline(p)
    head = p.read_text(errors="replace")[:4000]
    if "report_utilization" in head or "Utilization Design Information" in head:
        return parse_vivado_utilization(p)
    if "HLS Report" in head or "Performance Estimates" in head:
        return parse_csynth_rpt(p)
    raise InputError(f"'{path}' is not a csynth.rpt, csynth.xml, vivado utilization report or hls4ml baseline")
