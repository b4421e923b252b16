"""Measured resources and latency from a vendor synthesis run inside a project, for report.json.

Synthesis needs the vendor tool, so it runs (``make csynth``) wherever that tool is, often
not where the project was generated. Its reports stay in the project directory:

* Vitis 2023.2+ (``v++ --mode hls``): ``<name>_vitis/hls/syn/report/csynth.rpt`` (and ``.xml``)
* vitis_hls / vivado_hls (``fpgacnn_synth.tcl``, hls4ml's ``build_prj.tcl``):
  ``<name>_prj/solution1/syn/report/csynth.rpt`` (and ``.xml``)
* hls4ml's ``vivado_synth.tcl`` (logic synthesis): ``vivado_synth.rpt`` at the top

``synthesis_results(project_dir)`` finds them and returns the numbers the estimator
predicts (``DSP, BRAM_18K, LUT, FF, latency_cycles, ii_cycles``), so the report can show
the measurement next to the estimate. The HLS report is preferred (it has latency); with
only the logic-synthesis report, latency is ``None``. Both present: the logic-synthesis
figures come along under ``"vivado"``, as they are what the device really uses.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

__all__ = ["find_reports", "synthesis_results"]

HLS_REPORTS = ("csynth.rpt", "csynth.xml")  # preferred first: the text report names every section
VIVADO_REPORT = "vivado_synth.rpt"
KEYS = ("DSP", "BRAM_18K", "LUT", "FF", "latency_cycles", "ii_cycles")
_SKIP_DIRS = {"csim", "tb_data", "firmware"}  # our build outputs and hls4ml's sources: never reports
_MAX_DEPTH = 8


def find_reports(project_dir) -> dict[str, list[Path]]:
    """``{"hls": [...], "vivado": [...]}``: report files in the project, newest first.

    HLS reports are the top-level ``csynth.rpt``/``csynth.xml`` directly in a
    ``syn/report`` directory (per-module reports have other names). Symbolic links are not
    followed, so a link cannot pull in a report from outside the project.
    """
    root = Path(project_dir)
    if not root.is_dir():
        raise InputError(f"project directory '{root}' does not exist")
    hls: list[Path] = []
    vivado: list[Path] = []
    for here, dirs, files in os.walk(root, followlinks=False):
        rel = Path(here).relative_to(root)
        depth = len(rel.parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (depth == 0 and d in _SKIP_DIRS))
        if depth >= _MAX_DEPTH:
            dirs[:] = []
        in_report_dir = rel.parts[-2:] == ("syn", "report")
        for f in sorted(files):
            p = Path(here) / f
            if p.is_symlink() or not p.is_file():
                continue
            if in_report_dir and f in HLS_REPORTS:
                hls.append(p)
            elif f == VIVADO_REPORT:
                vivado.append(p)

    def newest_first(paths: list[Path]) -> list[Path]:
        # newest run first; in one directory the text report before the XML one
        return sorted(paths, key=lambda p: (-p.stat().st_mtime_ns, HLS_REPORTS.index(p.name)
                                            if p.name in HLS_REPORTS else 0, p.as_posix()))

    return {"hls": newest_first(hls), "vivado": newest_first(vivado)}


def _totals(path: Path, root: Path) -> dict:
    from ..estimate.vendor_reports import parse_report

    parsed = parse_report(path)
    total = parsed.get("total") or {}
    out = {k: total.get(k) for k in KEYS}
    out["source"] = path.relative_to(root).as_posix()
    return out


def synthesis_results(project_dir) -> dict | None:
    """Resources and latency from the project's newest synthesis report; None when synthesis never ran.

    Returns ``{DSP, BRAM_18K, LUT, FF, latency_cycles, ii_cycles, source}`` (``source``
    relative to the project directory, ``None`` for a figure the report lacks), plus
    ``"vivado"`` with the logic-synthesis totals when both kinds of report exist.
    Raises ``InputError`` for a report it cannot read.
    """
    root = Path(project_dir)
    reports = find_reports(root)
    vivado = _totals(reports["vivado"][0], root) if reports["vivado"] else None
    if reports["hls"]:
        result = _totals(reports["hls"][0], root)
        if vivado is not None:
            result["vivado"] = {k: vivado[k] for k in ("DSP", "BRAM_18K", "LUT", "FF", "source")}
        return result
    return vivado
