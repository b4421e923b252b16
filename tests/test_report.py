"""The report a user shows a colleague: plots embedded, sections only where data exists."""
from __future__ import annotations

import base64
import json
import re

import pytest

from fpgacnn.errors import InputError
from fpgacnn.report import write_report

REPORT = {
    "model": {"params_before": 1000, "params_after": 250},
    "accuracy": {"csim": 0.95, "float": 0.97, "quantized": 0.95, "trimmed": 0.96},
    "csim": {"bit_exact": True, "samples": 20, "argmax_agreement": 1.0,
             "confusion": [[9, 1], [0, 10]]},
    "trim": {"layers": [{"name": "conv1", "kernels_before": 8, "kernels_after": 4},
                        {"name": "logits", "kernels_before": 2, "kernels_after": 2}],
             "scores": {"conv1": [0.1, 0.5, 0.2, 0.9, 0.0, 0.3, 0.7, 0.4], "logits": [1.0, 2.0]}},
    "rounds": [{"params": 1000, "accuracy": 0.97}, {"params": 500, "accuracy": 0.965}, {"params": 250, "accuracy": 0.96}],
    "estimate": {"total": {"DSP": 30, "BRAM_18K": 12, "LUT": 9000, "FF": 7000, "latency_cycles": 1200, "ii_cycles": 1100},
                 "capacity": {"DSP": 220, "BRAM_18K": 280, "LUT": 53200, "FF": 106400}},
    "timing_s": {"csim": 3.0, "train": 0.0, "trim": 1.0},
}


@pytest.fixture()
def project(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    (tmp_path / "fpgacnn.json").write_text(json.dumps({"project": {"display_name": "cam<script>"},
                                                       "model": {"classes": ["cat", "dog"]}}))
    return tmp_path


def test_html_embeds_every_plot_as_png(project):
    html_path, _ = write_report(project)
    page = html_path.read_text()
    imgs = re.findall(r'<img id="plot-(\w+)" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert {slug for slug, _ in imgs} == {"kernels", "relevance", "rounds", "resources", "confusion"}
    for _, data in imgs:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page  # no network needed
    assert "<script>" not in page and "cam&lt;script&gt;" in page  # names are escaped


def test_markdown_links_plot_files(project):
    _, md_path = write_report(project)
    md = md_path.read_text()
    for slug in ("kernels", "relevance", "rounds", "resources", "confusion"):
        assert f"(report_files/{slug}.png)" in md
        assert (project / "report_files" / f"{slug}.png").stat().st_size > 1000
    rows = [line for line in md.splitlines() if line.startswith("| accuracy")]
    assert [r.split("(")[1].split(")")[0] for r in rows] == ["float", "trimmed", "quantized", "csim"]


def test_sections_without_data_are_left_out(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"model": REPORT["model"], "accuracy": REPORT["accuracy"]}))
    html_path, _ = write_report(tmp_path)
    assert "<img" not in html_path.read_text()


def test_missing_report_json_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no report.json"):
        write_report(tmp_path)
