"""Generated projects carry their resource estimate (manifest ``estimate``, README section)."""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fpgacnn.estimate.summary import manifest_block, readme_context  # noqa: E402


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    from tensorflow import keras

    from fpgacnn.hls.generate import generate
    from fpgacnn.quantization import quantize

    keras.utils.set_random_seed(0)
    L = keras.layers
    m = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, name="conv"), L.ReLU(name="relu"),
                          L.MaxPooling2D(2, name="pool"), L.Flatten(name="flat"), L.Dense(10, name="logits")])
    x = (np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1)) / 256).astype("float32")
    q = quantize(m, bits=8, x=x)
    d = tmp_path_factory.mktemp("est")
    known = generate(q, d / "known", x_test=x, part="xc7z020clg400-1", clock_period_ns=5.0)
    custom = generate(q, d / "custom", x_test=x, part="my-custom-board")
    return known, custom


def test_manifest_has_estimate_against_the_part(projects):
    known, _ = projects
    on_disk = json.loads((Path(known.dir) / "fpgacnn.json").read_text())
    est = on_disk["estimate"]
    assert est == known.manifest["estimate"]
    assert set(est["total"]) == {"DSP", "BRAM_18K", "LUT", "FF", "latency_cycles", "ii_cycles"}
    assert est["capacity"] == {"DSP": 220, "BRAM_18K": 280, "LUT": 53_200, "FF": 106_400}
    assert est["part"] == "xc7z020" and est["total"]["LUT"] > 0 and est["total"]["ii_cycles"] >= 64
    perf = est["performance"]
    assert perf["clock_mhz"] == 200.0
    assert perf["fps"] == pytest.approx(200e6 / est["total"]["ii_cycles"], rel=1e-6)
    assert perf["latency_ms"] == pytest.approx(est["total"]["latency_cycles"] / 200e3)
    assert est["utilization"]["LUT"] == pytest.approx(est["total"]["LUT"] / 53_200, abs=1e-6)


def test_unknown_part_gets_an_estimate_without_capacity(projects):
    known, custom = projects
    est = custom.manifest["estimate"]
    assert est["capacity"] is None and est["part"] == "my-custom-board"
    assert est["total"]["LUT"] == known.manifest["estimate"]["total"]["LUT"]


def test_estimate_failure_is_recorded_not_raised():
    block = manifest_block(object(), "xc7z020", 100.0)
    assert block["total"] is None and "InputError" in block["error"]
    assert readme_context(block) is None


def test_readme_section_renders_used_capacity_percent(projects):
    from fpgacnn.hls.render import _environment, build_context

    known, custom = projects
    for proj, cap in ((known, "53,200"), (custom, "n/a")):
        ctx = build_context(Path(proj.dir), proj.manifest)
        ctx["estimate"] = readme_context(proj.manifest["estimate"])
        text = _environment().get_template("README.md.j2").render(**ctx)
        section = text[text.index("## Resource estimate (fpgacnn estimator, not vendor synthesis)"):]
        section = section[:section.index("\n## ", 5)]
        lut = [ln for ln in section.splitlines() if ln.startswith("| LUT |")][0]
        assert f"| {cap} |" in lut
        if cap != "n/a":
            used = proj.manifest["estimate"]["total"]["LUT"]
            assert f"{100 * used / 53_200:.1f}%" in lut
        else:
            assert "not in fpgacnn's catalogue" in section
