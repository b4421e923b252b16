"""``fpgacnn report DIR``: a report a colleague can read, from a project's run data.

Reads ``report.json`` (written by the pipeline) and ``fpgacnn.json`` (the manifest) and
writes ``report.html`` (self-contained: plots embedded as PNG data, no network needed)
and ``report.md`` (plots as files in ``report_files/``). Sections whose data a run did not
produce are left out rather than drawn empty.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from .atomic import atomic_write_text
from .errors import InputError

CAPACITY_KEYS = ("DSP", "BRAM_18K", "LUT", "FF")


def _figure_png(draw, panels: int = 1) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(panels, 3)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 if panels == 1 else 3.2 * cols, 3.6 if panels == 1 else 2.4 * rows),
                             dpi=100, squeeze=False)
    for extra in axes.ravel()[panels:]:
        extra.set_visible(False)
    draw(axes.ravel()[0] if panels == 1 else axes.ravel()[:panels])
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _plot_kernels(layers):
    def draw(ax):
        names = [l["name"] for l in layers]
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], [l["kernels_before"] for l in layers], 0.4, label="before")
        ax.bar([i + 0.2 for i in x], [l["kernels_after"] for l in layers], 0.4, label="after")
        ax.set_xticks(list(x), names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("kernels")
        ax.set_title("Kernels per layer, before and after trimming")
        ax.legend()
    return draw


def _plot_histograms(scores: dict, kept: dict):
    """One panel per layer: a shared axis would hide layers whose scores sit in a narrow band."""
    def draw(axes):
        axes = list(axes) if not hasattr(axes, "hist") else [axes]
        for ax, (name, vals) in zip(axes, scores.items()):
            ax.hist(vals, bins=20, color="tab:blue")
            ax.set_title(f"{name} (kept {kept.get(name, '?')}/{len(vals)})", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0].set_ylabel("kernels", fontsize=8)
    return draw


def _plot_rounds(rounds):
    def draw(ax):
        ax.plot([r["params"] for r in rounds], [r["accuracy"] for r in rounds], "o-")
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("accuracy")
        ax.set_title("Accuracy vs size across trim rounds")
    return draw


def _plot_resources(estimate: dict, capacity: dict):
    def draw(ax):
        keys = [k for k in CAPACITY_KEYS if k in estimate and capacity.get(k)]
        frac = [100.0 * estimate[k] / capacity[k] for k in keys]
        ax.barh(keys, frac, color=["tab:red" if f > 100 else "tab:blue" for f in frac])
        ax.axvline(100, color="k", lw=1)
        for i, (k, f) in enumerate(zip(keys, frac)):
            ax.text(f, i, f" {estimate[k]:,.0f} / {capacity[k]:,.0f}", va="center", fontsize=8)
        ax.set_xlabel("% of the part")
        ax.set_title("Estimated resources vs the part's capacity")
    return draw


def _plot_confusion(matrix, classes):
    def draw(ax):
        import numpy as np

        m = np.asarray(matrix)
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(classes)), classes, fontsize=7)
        ax.set_yticks(range(len(classes)), classes, fontsize=7)
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                        color="white" if v > m.max() / 2 else "black")
        ax.set_xlabel("predicted (csim)")
        ax.set_ylabel("true")
        ax.set_title("Confusion matrix of the C simulation")
    return draw


def _plots(report: dict, manifest: dict) -> list[tuple[str, str, bytes]]:
    """(slug, title, png) for every plot the run has data for."""
    plots = []
    trim = report.get("trim") or {}
    if trim.get("layers"):
        plots.append(("kernels", "Kernels per layer", _figure_png(_plot_kernels(trim["layers"]))))
    if trim.get("scores"):
        kept = {l["name"]: l["kernels_after"] for l in trim.get("layers", [])}
        scores = {k: v for k, v in trim["scores"].items() if k in kept and kept[k] < len(v)} or trim["scores"]
        plots.append(("relevance", "Relevance per layer (mean post-activation output over the representative images)",
                      _figure_png(_plot_histograms(scores, kept), panels=len(scores))))
    if len(report.get("rounds") or []) > 1:
        plots.append(("rounds", "Accuracy vs size", _figure_png(_plot_rounds(report["rounds"]))))
    est = report.get("estimate") or {}
    if est.get("total") and est.get("capacity"):
        plots.append(("resources", "Resources", _figure_png(_plot_resources(est["total"], est["capacity"]))))
    conf = (report.get("csim") or {}).get("confusion")
    if conf:
        classes = manifest.get("model", {}).get("classes") or [str(i) for i in range(len(conf))]
        plots.append(("confusion", "Confusion matrix", _figure_png(_plot_confusion(conf, classes))))
    return plots


def _rows(report: dict) -> list[tuple[str, str]]:
    acc, cs, model = report.get("accuracy", {}), report.get("csim", {}), report.get("model", {})
    rows = [("parameters", f"{model.get('params_before', 0):,} → {model.get('params_after', 0):,}")]
    order = ["float", "trimmed", "quantized", "csim"]
    for k in order + sorted(set(acc) - set(order)):
        if isinstance(acc.get(k), float):
            rows.append((f"accuracy ({k})", f"{acc[k]:.4f}"))
    if cs:
        rows += [("csim bit-exact", f"{cs.get('bit_exact')} on {cs.get('samples')} samples"),
                 ("csim argmax agreement", f"{cs.get('argmax_agreement', 0):.4f}")]
    total = (report.get("estimate") or {}).get("total") or {}
    for key in ("latency_cycles", "ii_cycles"):
        if key in total:
            rows.append((key.replace("_", " "), f"{total[key]:,.0f}"))
    perf = (report.get("estimate") or {}).get("performance") or {}
    for key, fmt in (("latency_ms", "{:.3f} ms"), ("fps", "{:,.0f} frames/s")):
        if key in perf:
            rows.append((key.replace("_", " "), fmt.format(perf[key])))
    stages = ["train", "trim", "quantize", "generate", "csim"]
    timing = report.get("timing_s", {})
    syn = report.get("synthesis") or {}
    est_total = (report.get("estimate") or {}).get("total") or {}
    for key in ("DSP", "BRAM_18K", "LUT", "FF", "latency_cycles", "ii_cycles"):
        if key in syn:
            est = f" (estimate {est_total[key]:,.0f})" if key in est_total else ""
            rows.append((f"synthesis {key}", f"{syn[key]:,.0f}{est}"))
    rows += [(f"time {k} (s)", f"{timing[k]:.1f}") for k in stages + sorted(set(timing) - set(stages)) if k in timing]
    return rows


def write_report(project_dir) -> tuple[Path, Path]:
    project_dir = Path(project_dir)
    rj = project_dir / "report.json"
    if not rj.is_file():
        raise InputError(f"'{project_dir}' has no report.json: run the pipeline (fpgacnn build/run/demo) first")
    report = json.loads(rj.read_text())
    from .hls.synthesis import synthesis_results

    synthesis = synthesis_results(project_dir)  # present once the vendor flow has run
    if synthesis:
        report["synthesis"] = synthesis
    mf = project_dir / "fpgacnn.json"
    manifest = json.loads(mf.read_text()) if mf.is_file() else {}
    name = manifest.get("project", {}).get("display_name") or project_dir.name
    plots = _plots(report, manifest)
    rows = _rows(report)

    files = project_dir / "report_files"
    files.mkdir(exist_ok=True)
    md = [f"# fpgacnn report: {name}", "", "| | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in rows]
    for slug, title, png in plots:
        (files / f"{slug}.png").write_bytes(png)
        md += ["", f"## {title}", "", f"![{title}](report_files/{slug}.png)"]
    md_path = project_dir / "report.md"
    atomic_write_text(md_path, "\n".join(md) + "\n")  # an interrupted run never leaves half a report

    esc = html.escape
    body = [f"<h1>fpgacnn report: {esc(name)}</h1>", "<table>"]
    body += [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows]
    body.append("</table>")
    for slug, title, png in plots:
        b64 = base64.b64encode(png).decode()
        body.append(f'<h2>{esc(title)}</h2><img id="plot-{slug}" alt="{esc(title)}" src="data:image/png;base64,{b64}">')
    page = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>fpgacnn report</title><style>"
            "body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 10px;text-align:left}"
            "img{max-width:100%}</style></head><body>" + "\n".join(body) + "</body></html>\n")
    html_path = project_dir / "report.html"
    atomic_write_text(html_path, page)
    return html_path, md_path
