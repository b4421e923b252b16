"""Vendor synthesis reports found in a project: real reports copied to where each flow writes them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fpgacnn.errors import InputError

REPORTS = Path(__file__).resolve().parents[1].parent / "shared" / "reference-reports"
PRUNED = REPORTS / "svhn-cnn-pruned"
needs_reports = pytest.mark.skipif(not (PRUNED / "csynth.rpt").is_file(), reason="shared reference reports absent")

# headline figures of svhn-cnn-pruned (shared/reference-reports/README.md and the files)
HLS = {"DSP": 5414, "BRAM_18K": 100, "LUT": 245466, "FF": 52549, "latency_cycles": 1044, "ii_cycles": 1028}


def _place(project: Path, rel: str, source: Path, mtime: float | None = None) -> Path:
    dst = project / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dst)
    if mtime is not None:
        os.utime(dst, (mtime, mtime))
    return dst


def _project(tmp_path) -> Path:
    p = tmp_path / "prj"
    (p / "firmware").mkdir(parents=True)
    (p / "fpgacnn.json").write_text("{}\n")
    return p


def test_no_synthesis_yet(tmp_path):
    from fpgacnn.hls.synthesis import synthesis_results

    assert synthesis_results(_project(tmp_path)) is None
    with pytest.raises(InputError):
        synthesis_results(tmp_path / "missing")


@needs_reports
@pytest.mark.parametrize("rel", ["cam_vitis/hls/syn/report/csynth.rpt",  # v++ --mode hls (Vitis 2023.2+)
                                 "cam_prj/solution1/syn/report/csynth.rpt"])  # vitis_hls / vivado_hls Tcl
def test_hls_report_where_each_flow_writes_it(tmp_path, rel):
    from fpgacnn.hls.synthesis import synthesis_results

    p = _project(tmp_path)
    _place(p, rel, PRUNED / "csynth.rpt")
    assert synthesis_results(p) == {**HLS, "source": rel}


@needs_reports
def test_logic_synthesis_report_alone_and_beside_hls(tmp_path):
    from fpgacnn.hls.synthesis import synthesis_results

    p = _project(tmp_path)
    _place(p, "vivado_synth.rpt", PRUNED / "vivado_synth.rpt")
    alone = synthesis_results(p)
    assert alone["DSP"] == 5386 and alone["source"] == "vivado_synth.rpt"
    assert alone["latency_cycles"] is None and alone["ii_cycles"] is None  # logic synthesis has no latency
    _place(p, "cam_prj/solution1/syn/report/csynth.rpt", PRUNED / "csynth.rpt")
    both = synthesis_results(p)
    assert {k: both[k] for k in HLS} == HLS
    assert both["vivado"] == {"DSP": 5386, "BRAM_18K": alone["BRAM_18K"], "LUT": alone["LUT"], "FF": alone["FF"],
                              "source": "vivado_synth.rpt"}


@needs_reports
def test_newest_run_wins_and_other_files_are_ignored(tmp_path):
    from fpgacnn.hls.synthesis import find_reports, synthesis_results

    p = _project(tmp_path)
    quantized = REPORTS / "svhn-cnn-pruned-quantized" / "csynth.rpt"
    _place(p, "cam_prj/solution1/syn/report/csynth.rpt", PRUNED / "csynth.rpt", mtime=1_000_000)
    newer = "cam_vitis/hls/syn/report/csynth.rpt"
    _place(p, newer, quantized, mtime=2_000_000)
    # none of these is a top-level synthesis report of this project
    _place(p, "cam_vitis/hls/syn/report/conv_csynth.rpt", PRUNED / "csynth.rpt", mtime=3_000_000)
    _place(p, "csim/syn/report/csynth.rpt", PRUNED / "csynth.rpt", mtime=3_000_000)
    _place(p, "cam_vitis/hls/report/csynth.rpt", PRUNED / "csynth.rpt", mtime=3_000_000)
    outside = _project(tmp_path / "other")
    _place(outside, "x/syn/report/csynth.rpt", PRUNED / "csynth.rpt", mtime=3_000_000)
    (p / "linked").symlink_to(outside / "x", target_is_directory=True)

    found = find_reports(p)
    assert [f.relative_to(p).as_posix() for f in found["hls"]] == [newer, "cam_prj/solution1/syn/report/csynth.rpt"]
    r = synthesis_results(p)
    assert r["source"] == newer and r["DSP"] == 340  # the quantized model's report (README headline)


def test_unreadable_report_is_an_input_error(tmp_path):
    from fpgacnn.hls.synthesis import synthesis_results

    p = _project(tmp_path)
    bad = p / "cam_prj/solution1/syn/report/csynth.xml"
    bad.parent.mkdir(parents=True)
    bad.write_text("<not xml")
    with pytest.raises(InputError, match="csynth.xml"):
        synthesis_results(p)
