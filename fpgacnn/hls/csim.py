"""Bit-exact C simulation of a generated project with plain g++ (no vendor tool).

``csim(project)`` compiles the project's ``fpgacnn_tb.cpp`` together with the hls4ml
firmware into ``<project>/csim/fpgacnn_tb`` (skipped when nothing that goes into the
binary changed), runs it on the test vectors in ``tb_data/`` (split by sample range
across processes), and compares every output value exactly with the QKeras predictions.
A project with the AXI4-Stream wrapper (manifest ``project.axi_stream``) also gets its
wrapper testbench built and run on the same samples: the class index the wrapper sends
must be the argmax of the QKeras outputs (``CsimResult.axis``).
Only the project directory is needed, so a project copied elsewhere simulates the same.
Every error is one line; the compiler's full output stays in ``csim/build.log``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..atomic import atomic_write_text, run_group
from ..errors import InputError, ToolError
from .axis import summarize_results
from .project import Project
from .render import CXXFLAGS, TESTBENCH, WEIGHTS_DEFINE, render_testbench
from .identifiers import safe_identifier

__all__ = ["csim", "CsimResult"]

BUILD_DIR = "csim"
BINARY = "fpgacnn_tb"
RESULT = "result.json"
_SOURCE_SUFFIXES = {".h", ".hh", ".hpp", ".cpp", ".cc", ".cxx", ".c", ".inc", ".tpp", ".ipp"}
_MIN_PER_JOB = 2  # split only when every process gets at least this many samples
_GXX_MISSING = "g++ not found: install a C++17 compiler (e.g. apt install g++)"


@dataclass
class CsimResult:
    bit_exact: bool
    samples: int
    argmax_agreement: float
    accuracy: float | None
    max_abs_diff: float
    mismatches: int
    build_s: float
    run_s: float
    img_per_s: float
    cached_build: bool
    outputs: np.ndarray = field(repr=False)
    argmax_reference: str = "float"  # "float" predictions, or "expected" when there are none
    jobs: int = 1
    # manifest testbench.compare: "exact" (every value equals the QKeras logits) or "argmax"
    # (hardware softmax: each sample's argmax equals the logits' argmax; ``mismatches``
    # counts samples, ``max_abs_diff`` is against the softmax of the logits)
    compare: str = "exact"
    # the AXI4-Stream wrapper's check (``fpgacnn.hls.axis.summarize_results``), None without the wrapper
    axis: dict | None = None

    @property
    def passed(self) -> bool:
        """The project's contract holds: bit-exact, or the same argmax under ``compare="argmax"``."""
        core = self.bit_exact if self.compare == "exact" else self.mismatches == 0
        return core and (self.axis is None or bool(self.axis["passed"]))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("outputs")
        d["passed"] = self.passed
        return d


# ---------------------------------------------------------------- helpers
def _load_project(project) -> Project:
    if isinstance(project, Project):
        proj = project
        if not Path(proj.dir).is_dir():
            raise InputError(f"project directory '{proj.dir}' does not exist")
        if not proj.manifest:
            proj = Project.load(proj.dir)
    else:
        path = Path(project)
        if not path.is_dir():
            raise InputError(f"project directory '{path}' does not exist")
        proj = Project.load(path)
    return proj


def _project_file(root: Path, rel, what: str, required: bool = True) -> Path | None:
    """A file inside the project, given by a relative path from the manifest."""
    if not rel:
        if required:
            raise InputError(f"the project has no test vectors (manifest testbench.{what} is empty): "
                             "generate it with test inputs to simulate it")
        return None
    rel = str(rel)
    pp = PurePosixPath(rel.replace("\\", "/"))
    if pp.is_absolute() or ".." in pp.parts or not pp.parts:
        raise InputError(f"manifest: testbench.{what} must be a relative path inside the project, got {rel!r}")
    path = root.joinpath(*pp.parts)
    if not path.is_file():
        if required:
            raise InputError(f"project file '{path}' ({what}) not found")
        return None
    return path


def _read_rows(path: Path, what: str) -> list[list[float]]:
    rows = []
    try:
        with open(path) as fh:
            for lineno, line in enumerate(fh, 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    rows.append([float(v) for v in parts])
                except ValueError:
                    raise InputError(f"{what} file '{path}' line {lineno}: not a number") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} file '{path}': {exc.strerror}") from None
    return rows


def _matrix(rows: list[list[float]], path: Path, what: str) -> np.ndarray:
    if not rows:
        return np.zeros((0, 0))
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise InputError(f"{what} file '{path}': sample {i} has {len(r)} values, the first has {width}")
    return np.asarray(rows, dtype=np.float64)


def _count_samples(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                n += 1
    return n


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _compiler() -> tuple[str, str]:
    gxx = shutil.which("g++")
    if not gxx:
        raise ToolError(_GXX_MISSING)
    try:
        out = subprocess.run([gxx, "--version"], capture_output=True, text=True, timeout=60)
    except OSError:
        raise ToolError(_GXX_MISSING) from None
    if out.returncode != 0:
        raise ToolError(f"'{gxx} --version' failed: {_first_error(out.stderr + out.stdout)}")
    return gxx, out.stdout


def _compile_cmd(sources: list[str], output: str) -> list[str]:
    return [*CXXFLAGS, WEIGHTS_DEFINE, *sources, "-o", output]


def _first_error(text: str) -> str:
    """The compiler's first error line (or its last line), shortened, for a one-line message."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    pick = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else "no output")
    return pick if len(pick) <= 300 else pick[:297] + "..."


def _build_key(root: Path, sources: list[str], gxx_version: str) -> str:
    """sha256 over every compiled source (paths and contents), the flags and the compiler version."""
    h = hashlib.sha256()
    h.update(json.dumps(_compile_cmd(sources, "OUT")).encode())
    h.update(b"\0" + gxx_version.encode() + b"\0")
    files = [root / s for s in sources if not s.startswith("firmware/")]
    files += sorted(p for p in (root / "firmware").rglob("*") if p.is_file() and p.suffix in _SOURCE_SUFFIXES)
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(_sha256_file(p).encode() + b"\n")
    return h.hexdigest()


def _build(root: Path, sources: list[str], rebuild: bool, binary_name: str = BINARY,
           what: str = "the testbench") -> tuple[Path, bool, float]:
    gxx, version = _compiler()
    build_dir = root / BUILD_DIR
    build_dir.mkdir(exist_ok=True)
    binary, stamp = build_dir / binary_name, build_dir / f"{binary_name}.stamp"
    key = _build_key(root, sources, version)
    if not rebuild and binary.is_file() and stamp.is_file():
        try:
            saved = json.loads(stamp.read_text())
        except (OSError, ValueError):
            saved = {}
        if saved.get("key") == key and saved.get("binary_sha256") == _sha256_file(binary) and os.access(binary, os.X_OK):
            return binary, True, 0.0
    stamp.unlink(missing_ok=True)
    tmp = build_dir / f".{binary_name}.{os.getpid()}.tmp"
    log = build_dir / ("build.log" if binary_name == BINARY else f"build_{binary_name}.log")
    t0 = time.perf_counter()
    # g++ writes to a temporary name that only a successful build renames to the binary, and
    # the stamp is written after that: a killed or failed compile never leaves a binary the
    # cache would trust (the stamp also records the binary's sha256).
    try:
        try:
            proc = run_group([gxx, *_compile_cmd(sources, f"{BUILD_DIR}/{tmp.name}")], cwd=root)
        except OSError as exc:
            raise ToolError(f"cannot run g++: {exc}") from None
        build_s = time.perf_counter() - t0
        atomic_write_text(log, f"$ g++ {' '.join(_compile_cmd(sources, f'{BUILD_DIR}/{binary_name}'))}\n"
                               f"{proc.stdout}{proc.stderr}")
        if proc.returncode < 0:
            raise ToolError(f"g++ was killed by signal {-proc.returncode} while compiling {what}; "
                            "run csim again")
        if proc.returncode != 0:
            raise ToolError(f"compiling {what} failed: {_first_error(proc.stdout + proc.stderr)} (full log: {log})")
        os.replace(tmp, binary)
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_text(stamp, json.dumps({"key": key, "binary_sha256": _sha256_file(binary)}, indent=1) + "\n")
    return binary, False, build_s


def _run(root: Path, binary: Path, inputs: Path, samples: int, jobs: int) -> tuple[np.ndarray, float, int]:
    build_dir = root / BUILD_DIR
    if samples < _MIN_PER_JOB * jobs:
        jobs = 1
    bounds = [(samples * k // jobs, samples * (k + 1) // jobs) for k in range(jobs)]
    procs = []
    # Per-process names: several csim runs may share one project directory. Outputs are
    # always removed; a log only stays when its process failed (the error quotes its tail).
    tag = os.getpid()
    keep_logs: set[int] = set()
    t0 = time.perf_counter()
    try:
        for k, (lo, hi) in enumerate(bounds):
            out = build_dir / f"outputs_{tag}_{k}.dat"
            log = build_dir / f"run_{tag}_{k}.log"
            err = open(log, "w")
            try:
                p = subprocess.Popen([str(binary.resolve()), str(inputs.resolve()), str(out.resolve()), str(lo),
                                      str(hi - lo)], cwd=root, stdout=err, stderr=subprocess.STDOUT)
            except OSError as exc:
                err.close()
                log.unlink(missing_ok=True)
                raise ToolError(f"cannot run the testbench '{binary}': {exc}") from None
            procs.append((p, out, err, log))
        failed = []
        for k, (p, out, err, log) in enumerate(procs):
            rc = p.wait()
            err.close()
            if rc != 0:
                failed.append((k, rc))
        run_s = time.perf_counter() - t0
        if failed:
            k, rc = failed[0]
            keep_logs.add(k)
            lines = procs[k][3].read_text(errors="replace").strip().splitlines()
            why = next((ln for ln in lines if "MISMATCH" in ln), lines[-1] if lines else "no output")
            raise ToolError(f"testbench {binary.name} exited with status {rc} on samples {bounds[k][0]}.."
                            f"{bounds[k][1] - 1}: {why.strip()[:300]} (log: {procs[k][3]})")
        rows = []
        for k, (lo, hi) in enumerate(bounds):
            part = _read_rows(procs[k][1], "testbench output")
            if len(part) != hi - lo:
                raise ToolError(f"testbench wrote {len(part)} samples for range {lo}..{hi - 1}, expected {hi - lo}")
            rows += part
    finally:  # also on Ctrl-C / SIGTERM: no testbench outlives us, no partial output stays
        for k, (p, out, err, log) in enumerate(procs):
            if p.poll() is None:
                p.kill()
            p.wait()
            err.close()
            out.unlink(missing_ok=True)
            if k not in keep_logs:
                log.unlink(missing_ok=True)
    return _matrix(rows, build_dir / "outputs.dat", "testbench output"), run_s, jobs


# ---------------------------------------------------------------- AXI4-Stream wrapper
def _axis_check(root: Path, manifest: dict, name: str, inputs: Path, expected: np.ndarray, compare: str,
                samples: int, jobs: int, rebuild: bool) -> dict | None:
    """Build and run ``<name>_axis_tb`` when the project has the wrapper; None otherwise."""
    if (manifest.get("project") or {}).get("axi_stream") is not True:
        return None
    tb = f"{name}_axis_tb.cpp"
    for rel in (tb, f"firmware/{name}_axis.cpp"):
        if not (root / rel).is_file():
            raise InputError(f"the manifest asks for the AXI4-Stream wrapper but '{root / rel}' is missing")
    binary, cached, build_s = _build(root, [tb, f"firmware/{name}_axis.cpp", f"firmware/{name}.cpp"], rebuild,
                                     binary_name=f"{name}_axis_tb", what="the AXI4-Stream testbench")
    rows, run_s, _ = _run(root, binary, inputs, samples, jobs)
    return {**summarize_results(rows, expected, compare), "build_s": round(build_s, 3), "run_s": round(run_s, 3),
            "cached_build": cached}


# ---------------------------------------------------------------- public
def csim(project, samples: int | None = None, jobs: int | None = None, rebuild: bool = False) -> CsimResult:
    """Build (or reuse) the g++ testbench, run it and compare exactly with the QKeras predictions.

    ``project`` is a ``Project`` or a project directory. ``samples``: how many test
    vectors to run, from the first (default all); ``jobs``: processes to split them over
    (default ``os.cpu_count()``); ``rebuild``: ignore the build cache.
    Writes ``<project>/csim/result.json``.
    """
    proj = _load_project(project)
    root = Path(proj.dir)
    manifest = proj.manifest
    name = safe_identifier(manifest.get("project", {}).get("name") or proj.name)
    if not (root / "firmware" / f"{name}.cpp").is_file():
        raise InputError(f"'{root}' has no firmware/{name}.cpp: not a complete fpgacnn project")
    tbm = manifest.get("testbench") or {}
    inputs = _project_file(root, tbm.get("inputs", "tb_data/tb_input_features.dat"), "inputs")
    expected_path = _project_file(root, tbm.get("expected", "tb_data/tb_output_predictions.dat"), "expected")
    float_path = _project_file(root, tbm.get("float"), "float", required=False)
    labels_path = _project_file(root, tbm.get("labels"), "labels", required=False)

    available = _count_samples(inputs)
    if samples is None:
        samples = available
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise InputError(f"samples must be a positive integer, got {samples!r}")
    if samples > available:
        raise InputError(f"samples={samples} but '{inputs.name}' has only {available} test vectors")
    samples = int(samples)
    if jobs is None:
        jobs = os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise InputError(f"jobs must be a positive integer, got {jobs!r}")

    if not (root / TESTBENCH).is_file():
        atomic_write_text(root / TESTBENCH, render_testbench(root, manifest))
    binary, cached, build_s = _build(root, [TESTBENCH, f"firmware/{name}.cpp"], rebuild)
    outputs, run_s, used_jobs = _run(root, binary, inputs, samples, int(jobs))

    expected = _matrix(_read_rows(expected_path, "expected")[:samples], expected_path, "expected")
    if expected.shape[0] < samples:
        raise InputError(f"'{expected_path.name}' has {expected.shape[0]} samples, fewer than the {samples} simulated")
    if expected.shape != outputs.shape:
        raise InputError(f"'{expected_path.name}' has {expected.shape[1]} values per sample, "
                         f"the testbench wrote {outputs.shape[1]}")
    compare = str(tbm.get("compare", "exact"))
    if compare not in ("exact", "argmax"):
        raise InputError(f"manifest: testbench.compare must be 'exact' or 'argmax', got {compare!r}")
    if compare == "argmax":  # outputs are probabilities, expected are logits
        z = np.exp(expected - expected.max(axis=1, keepdims=True))
        diff = np.abs(outputs - z / z.sum(axis=1, keepdims=True))
        mismatches = int(np.count_nonzero(outputs.argmax(axis=1) != expected.argmax(axis=1)))
    else:
        diff = np.abs(outputs - expected)
        mismatches = int(np.count_nonzero(outputs != expected))
    max_abs_diff = float(np.nanmax(diff)) if diff.size else 0.0
    pred = outputs.argmax(axis=1)

    ref_name, ref = "expected", expected
    if float_path is not None:
        fl = _matrix(_read_rows(float_path, "float predictions")[:samples], float_path, "float predictions")
        if fl.shape[0] == samples and fl.shape[1] == outputs.shape[1]:
            ref_name, ref = "float", fl
    argmax_agreement = float(np.mean(pred == ref.argmax(axis=1)))

    accuracy = None
    if labels_path is not None:
        lab = _matrix(_read_rows(labels_path, "labels")[:samples], labels_path, "labels")
        if lab.shape[0] == samples:
            lab = lab.argmax(axis=1) if lab.shape[1] > 1 else lab[:, 0]
            accuracy = float(np.mean(pred == lab.astype(np.int64)))

    result = CsimResult(
        bit_exact=compare == "exact" and mismatches == 0,
        samples=samples,
        argmax_agreement=argmax_agreement,
        accuracy=accuracy,
        max_abs_diff=max_abs_diff,
        mismatches=mismatches,
        build_s=round(build_s, 3),
        run_s=round(run_s, 3),
        img_per_s=round(samples / run_s, 1) if run_s > 0 else float("inf"),
        cached_build=cached,
        outputs=outputs,
        argmax_reference=ref_name,
        jobs=used_jobs,
        compare=compare,
        axis=_axis_check(root, manifest, name, inputs, expected, compare, samples, int(jobs), rebuild),
    )
    atomic_write_text(root / BUILD_DIR / RESULT, json.dumps(result.to_dict(), indent=1, sort_keys=True) + "\n")
    return result
