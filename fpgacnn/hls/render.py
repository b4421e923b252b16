"""Our own files inside a generated hls4ml project: Makefile, README, vendor configs, testbench.

``render_project_files`` is called by ``generate`` after hls4ml has written the project
and ``fpgacnn.json``. Everything it emits is deterministic (no timestamps, no absolute
paths) and every name that comes from the user's model is either reduced to a safe
identifier, validated against a strict pattern, or escaped for the target format, so a
hostile layer or project name cannot change what a Makefile, config or README means.

The C++ testbench (``fpgacnn_tb.cpp``) is derived from the testbench hls4ml writes
(``<name>_test.cpp``): the input/output variable declarations, the top-level call and
the output types sit between ``// hls-fpga-machine-learning insert ...`` markers there.
Each of those lines is parsed with a strict pattern and re-emitted from its parts.
Unlike hls4ml's testbench, ours reads inputs as ``double``, prints every output value
exactly and can process a sub-range of the samples (for parallel runs).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2

from ..errors import InputError
from .axis import axis_context, wrapper_files
from ..estimate.summary import readme_context
from .identifiers import safe_identifier, safe_text

TESTBENCH = "fpgacnn_tb.cpp"
HLS_CONFIG = "hls_config.cfg"
SYNTH_TCL = "fpgacnn_synth.tcl"
# Compiler flags shared by the Makefile and fpgacnn.csim (which also hashes them).
CXXFLAGS = ("-O2", "-std=c++17", "-Ifirmware", "-Ifirmware/ap_types")
WEIGHTS_DEFINE = '-DWEIGHTS_DIR="firmware/weights"'
# Co-simulation runs the RTL, which is slow: only this many test vectors.
COSIM_SAMPLES = 10

# file name in the project -> template name
_FILES = {
    "Makefile": "Makefile.j2",
    "README.md": "README.md.j2",
    HLS_CONFIG: "hls_config.cfg.j2",
    SYNTH_TCL: "fpgacnn_synth.tcl.j2",
    TESTBENCH: "fpgacnn_tb.cpp.j2",
}

_ID = r"[A-Za-z][A-Za-z0-9_]*"
_TYPE = rf"{_ID}(?:::{_ID})*"
_SIZE = r"[A-Za-z0-9_]+(?:\s*[*+]\s*[A-Za-z0-9_]+)*"
_RE_STREAM_DEF = re.compile(rf'hls::stream<\s*({_TYPE})\s*>\s+({_ID})\s*\(\s*"({_ID})"\s*\)\s*;')
_RE_ARRAY_DEF = re.compile(rf"({_TYPE})\s+({_ID})\s*\[\s*({_SIZE})\s*\]\s*;")
_RE_COPY = re.compile(rf"nnet::copy_data<\s*float\s*,\s*({_TYPE})\s*,\s*(\d+)\s*,\s*({_SIZE})\s*>\s*\(\s*in\s*,\s*({_ID})\s*\)\s*;")
_RE_TOP = re.compile(rf"({_ID})\s*\(\s*({_ID}(?:\s*,\s*{_ID})*)\s*\)\s*;")
_RE_PRINT = re.compile(rf"nnet::print_result<\s*({_TYPE})\s*,\s*({_SIZE})\s*>\s*\(\s*({_ID})\s*,\s*fout\s*\)\s*;")
_RE_BRAM = re.compile(rf'#include\s+"firmware/weights/({_ID})\.h"')
_RE_NAMESPACE = re.compile(rf"using\s+namespace\s+({_ID})\s*;")
_RE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_MARK = "// hls-fpga-machine-learning insert "


def templates_dir() -> Path:
    """``fpgacnn/templates`` in an installed wheel, ``<repo>/templates`` in a checkout."""
    pkg = Path(__file__).resolve().parent.parent
    for cand in (pkg / "templates", pkg.parent / "templates"):
        if (cand / "project").is_dir():
            return cand
    raise InputError(f"fpgacnn templates not found (looked in {pkg / 'templates'} and {pkg.parent / 'templates'})")


# ---------------------------------------------------------------- escaping filters
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~&$])")


def md(text) -> str:
    """One line of Markdown that renders literally: no newline, no markup, no HTML."""
    return _MD_SPECIAL.sub(r"\\\1", safe_text(str(text)))


def code(text) -> str:
    """Text for inside a Markdown code span in a table cell."""
    return safe_text(str(text)).replace("`", "'").replace("|", "\\|") or " "


def codecell(text) -> str:
    """A code span, or ``-`` when there is nothing to show."""
    return f"`{code(text)}`" if str(text).strip() else "-"


def _num(value, what: str) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"manifest: {what} must be a number, got {value!r}") from None
    if not (v == v and abs(v) < 1e300):
        raise InputError(f"manifest: {what} must be a finite number, got {value!r}")
    return repr(int(v)) if v == int(v) and abs(v) < 1e15 else repr(v)


def _hardware_rows(proj) -> tuple[list[dict], dict | None]:
    """Per-layer strategy and reuse factor, and the stream FIFO depths, for the README
    (absent in manifests written before they were recorded)."""
    reuse, strategy = _get(proj, "layer_reuse", {}), _get(proj, "layer_strategy", {})
    rows = []
    if isinstance(reuse, dict):
        for name in sorted(reuse):
            st = str(strategy.get(name, "")) if isinstance(strategy, dict) else ""
            rows.append({"name": str(name), "reuse": _num(reuse[name], f"project.layer_reuse[{name!r}]"),
                         "strategy": st})
    depths = _get(proj, "fifo_depths", None)
    fifo = None
    if isinstance(depths, dict) and depths:
        values = [int(_num(v, "project.fifo_depths")) for v in depths.values()]
        fifo = {"count": len(values), "min": min(values), "max": max(values),
                "mode": str(_get(proj, "fifo_depth", ""))}
    return rows, fifo


# ---------------------------------------------------------------- testbench parsing
def _block(lines: list[str], marker: str) -> list[str]:
    """Lines after the first ``marker`` line up to the next marker or blank line."""
    for i, line in enumerate(lines):
        if line.strip() == _MARK + marker:
            out = []
            for nxt in lines[i + 1:]:
                s = nxt.strip()
                if not s or s.startswith(("//", "}")):
                    break
                out.append(s)
            return out
    raise InputError(f"hls4ml testbench has no '{_MARK}{marker}' section")


def parse_hls4ml_testbench(project_dir: Path, name: str) -> dict:
    """Variables, sizes and the top-level call from hls4ml's ``<name>_test.cpp``."""
    path = Path(project_dir) / f"{name}_test.cpp"
    if not path.is_file():
        raise InputError(f"'{path}' not found: not an hls4ml project written for '{name}'")
    lines = path.read_text(errors="replace").splitlines()

    def bad(line):
        return InputError(f"{path.name}: unexpected line {safe_text(line, 120)!r} (names must be C identifiers)")

    inputs, outputs = [], []
    defs = {}
    for line in _block(lines, "data"):
        if m := _RE_STREAM_DEF.fullmatch(line):
            if m.group(2) != m.group(3):
                raise bad(line)
            defs[m.group(2)] = {"kind": "stream", "type": m.group(1), "var": m.group(2)}
        elif m := _RE_ARRAY_DEF.fullmatch(line):
            defs[m.group(2)] = {"kind": "array", "type": m.group(1), "var": m.group(2), "size": m.group(3)}
        elif m := _RE_COPY.fullmatch(line):
            var = m.group(4)
            if var not in defs or defs[var]["type"] != m.group(1):
                raise bad(line)
            inputs.append({**defs[var], "offset": int(m.group(2)), "size": m.group(3)})
        else:
            raise bad(line)
    in_vars = {i["var"] for i in inputs}
    top_lines = _block(lines, "top-level-function")
    if len(top_lines) != 1 or not (m := _RE_TOP.fullmatch(top_lines[0])):
        raise bad(top_lines[0] if top_lines else "<empty top-level call>")
    top, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
    if top != name:
        raise InputError(f"{path.name}: top-level function '{top}' does not match project name '{name}'")
    for line in _block(lines, "tb-output"):
        if not (m := _RE_PRINT.fullmatch(line)) or m.group(3) not in defs or m.group(3) in in_vars:
            raise bad(line)
        outputs.append({**defs[m.group(3)], "size": m.group(2)})
    if not inputs or not outputs:
        raise InputError(f"{path.name}: no model inputs or outputs found")
    brams = []
    namespace = None
    for line in lines:
        s = line.strip()
        if m := _RE_BRAM.fullmatch(s):
            brams.append(m.group(1))
        elif m := _RE_NAMESPACE.fullmatch(s):
            namespace = m.group(1)
    known = in_vars | {o["var"] for o in outputs} | set(brams)
    if any(a not in known for a in args):
        raise bad(top_lines[0])
    return {"inputs": inputs, "outputs": outputs, "top": top, "args": args,
            "brams": brams, "namespace": namespace, "source": path.name}


# ---------------------------------------------------------------- context
def _get(d, key, default=None):
    v = d.get(key, default) if isinstance(d, dict) else default
    return default if v is None else v


def build_context(project_dir: Path, manifest: dict) -> dict:
    project_dir = Path(project_dir)
    if not isinstance(manifest, dict):
        raise InputError("manifest must be a JSON object")
    proj = _get(manifest, "project", {})
    raw_name = _get(proj, "name")
    if not raw_name:
        raise InputError("manifest: project.name is missing")
    name = safe_identifier(raw_name)
    if not (project_dir / "firmware" / f"{name}.cpp").is_file():
        raise InputError(f"'{project_dir}' has no firmware/{name}.cpp (project name {safe_text(raw_name, 60)!r})")
    top = safe_identifier(_get(proj, "top", name))
    if top != name:
        raise InputError(f"manifest: top '{top}' differs from project name '{name}' (hls4ml names the top after the project)")
    backend = str(_get(proj, "backend", "Vitis"))
    if backend.lower() not in ("vitis", "vivado"):
        raise InputError(f"manifest: backend must be Vitis or Vivado, got {safe_text(backend, 40)!r}")
    backend = "Vitis" if backend.lower() == "vitis" else "Vivado"
    io_type = str(_get(proj, "io_type", "io_stream"))
    if io_type not in ("io_stream", "io_parallel"):
        raise InputError(f"manifest: io_type must be io_stream or io_parallel, got {safe_text(io_type, 40)!r}")
    part = str(_get(proj, "part", ""))
    if not _RE_PART.fullmatch(part):
        raise InputError(f"manifest: part {safe_text(part, 60)!r} is not a valid FPGA part name")
    clock = _num(_get(proj, "clock_period_ns", 10), "project.clock_period_ns")
    if float(clock) <= 0:
        raise InputError("manifest: project.clock_period_ns must be positive")
    reuse = _num(_get(proj, "reuse_factor", 1), "project.reuse_factor")
    layer_design, fifo = _hardware_rows(proj)

    model = _get(manifest, "model", {})
    shape = _get(model, "input_shape", [])
    classes = [str(c) for c in _get(model, "classes", [])]
    inp = _get(manifest, "input", {})
    out = _get(manifest, "output", {})
    tb = _get(manifest, "testbench", {})
    layers = []
    for layer in _get(_get(manifest, "precision", {}), "layers", []):
        if isinstance(layer, dict):
            layers.append({k: str(_get(layer, k, "")) for k in ("name", "hls_name", "class", "weight", "bias", "result", "accum")})

    tbinfo = parse_hls4ml_testbench(project_dir, name)
    n_in_expr = " + ".join(f"({i['size']})" for i in tbinfo["inputs"])
    softmax = "hardware" if str(_get(out, "softmax", "host")) == "hardware" else "host"
    compare = str(_get(tb, "compare", "argmax" if softmax == "hardware" else "exact"))
    if compare not in ("exact", "argmax"):
        raise InputError(f"manifest: testbench.compare must be 'exact' or 'argmax', got {safe_text(compare, 40)!r}")
    axi_stream = _get(proj, "axi_stream", False)
    if not isinstance(axi_stream, bool):
        raise InputError("manifest: project.axi_stream must be true or false")
    axi = None
    if axi_stream:
        axi = axis_context(manifest, tbinfo, name)
        axi["exact_scores"] = compare == "exact"
    samples = _get(tb, "samples", "")
    cosim_samples = min(int(samples), COSIM_SAMPLES) if isinstance(samples, int) and samples > 0 else COSIM_SAMPLES
    return {
        "name": name,
        "display_name": str(_get(proj, "display_name", raw_name)),
        "backend": backend,
        "io_type": io_type,
        "part": part,
        "clock": clock,
        "strategy": str(_get(proj, "strategy", "")),
        "reuse_factor": reuse,
        "layer_design": layer_design,
        "fifo": fifo,
        "folded": [str(a) for a in _get(proj, "folded_activations", []) or []],
        "model": {
            "name": str(_get(model, "name", "")),
            "sha256": str(_get(model, "sha256", "")),
            "params": str(_get(model, "params", "")),
            "input_shape": [str(s) for s in shape] if isinstance(shape, (list, tuple)) else [str(shape)],
            "n_outputs": str(_get(model, "n_outputs", len(classes) or "")),
            "classes": classes,
        },
        "input": {k: _num_or_text(_get(inp, k, "")) for k in ("precision", "scale", "offset", "note")},
        "output": {"precision": str(_get(out, "precision", "")), "softmax": softmax},
        "compare": compare,
        "axi": axi,
        "top": axi["top"] if axi else name,
        "cosim_samples": cosim_samples,
        "samples": str(_get(tb, "samples", "")),
        "has_float": bool(_get(tb, "float")),
        "has_labels": bool(_get(tb, "labels")),
        "layers": layers,
        "tb": tbinfo,
        "n_in_expr": n_in_expr,
        "cxxflags": " ".join(CXXFLAGS),
        "fpgacnn_version": safe_text(str(_get(manifest, "fpgacnn_version", "")), 40),
        "estimate": readme_context(_get(manifest, "estimate")),
    }


def _num_or_text(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return _num(value, "value")
        except InputError:
            pass
    return str(value)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir() / "project")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["md"] = md
    env.filters["code"] = code
    env.filters["codecell"] = codecell
    env.filters["text"] = safe_text
    env.filters["tojson"] = lambda v: json.dumps(v, ensure_ascii=True)
    return env


def render_testbench(project_dir: Path, manifest: dict) -> str:
    """The text of ``fpgacnn_tb.cpp`` for this project (also used by csim if it is missing)."""
    ctx = build_context(Path(project_dir), manifest)
    return _environment().get_template(_FILES[TESTBENCH]).render(**ctx)


def project_files(ctx: dict) -> dict[str, str]:
    """Project-relative path -> template name of every file rendered for this context."""
    files = dict(_FILES)
    if ctx["axi"]:
        files.update(wrapper_files(ctx["name"]))
    return files


def render_project_files(project_dir: Path, manifest: dict) -> list[Path]:
    """Render Makefile, README.md, hls_config.cfg, fpgacnn_synth.tcl and fpgacnn_tb.cpp into the project.

    With ``project.axi_stream`` in the manifest, also the AXI4-Stream wrapper
    (``firmware/<name>_axis.{h,cpp}``), its testbench and the C-simulation stand-in for
    ``ap_axi_sdata.h`` (see ``fpgacnn.hls.axis``). Everything is rendered before anything is
    written, so a manifest the templates refuse leaves the project untouched.
    """
    project_dir = Path(project_dir)
    if not project_dir.is_dir():
        raise InputError(f"project directory '{project_dir}' does not exist")
    ctx = build_context(project_dir, manifest)
    env = _environment()
    texts = {rel: env.get_template(tname).render(**ctx) for rel, tname in project_files(ctx).items()}
    written = []
    for rel, text in texts.items():
        path = project_dir.joinpath(*rel.split("/"))
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written
