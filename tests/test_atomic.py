"""Interrupted runs leave the previous output intact or nothing, and no temporary files.

Real signals go to real subprocesses at points the tests control: they poll for the
temporary directory a run creates (or for the g++ process csim starts) and signal then.
The commit step itself is tested in-process by delivering a signal in the middle of it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fpgacnn.atomic import (atomic_write_text, make_temp_dir, replace_dir, run_group, signals_as_exceptions,
                            sweep_stale)
from fpgacnn.errors import Terminated

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists() or os.name != "posix",
                                reason="needs POSIX signals and /proc")
sys.path.insert(0, str(Path(__file__).parent))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
POLL_TIMEOUT = 240


# ---------------------------------------------------------------- helpers
def digest(root: Path) -> dict:
    """Relative path -> sha256 of every file (and '<dir>' for directories)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = "<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def stray(parent: Path) -> list[str]:
    """Temporary names fpgacnn uses, anywhere under ``parent``."""
    return sorted(p.name for p in parent.rglob(".*") if ".tmp" in p.name or ".old-" in p.name)


def procs() -> list[tuple[int, int, int, str]]:
    """(pid, ppid, pgid, comm) of every process."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2:].split()
        if rest[0] != "Z":
            out.append((int(d), int(rest[1]), int(rest[2]), comm))
    return out


def wait_for(cond, what: str, proc=None, timeout: float = POLL_TIMEOUT):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


def finish(proc, timeout=POLL_TIMEOUT):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory, digits):
    """A tiny trained-enough model file and an .npz for ``fpgacnn build``."""
    from tensorflow import keras

    d = tmp_path_factory.mktemp("atomic_in")
    keras.utils.set_random_seed(0)
    i = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(i)
    m = keras.Model(i, keras.layers.Dense(10, name="logits")(keras.layers.Flatten()(h)))
    m.save(d / "tiny.h5")
    s = digits
    np.savez(d / "d.npz", x=np.concatenate([s.x_train, s.x_test])[:400],
             y=np.concatenate([s.y_train, s.y_test])[:400])
    return d / "tiny.h5", d / "d.npz"


@pytest.fixture(scope="module")
def built_project(tmp_path_factory):
    """A generated project with its csim build, to copy from."""
    from test_render import tiny_qmodel

    from fpgacnn import csim, generate

    x = (np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1)) / 256).astype(np.float32)
    out = tmp_path_factory.mktemp("atomic_prj") / "prj"
    generate(tiny_qmodel(), out, x_test=x, name="myproject")
    assert csim(out, jobs=1).bit_exact
    return out


def fresh_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("csim"))
    return dst


def _default_sigint():
    # a shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the CLI the SIGINT a user's Ctrl-C would reach
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def build_cli(model, data, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "fpgacnn.cli", "build", str(model), "--data", str(data),
                             "--out", str(out), "--epochs", "0", *extra], cwd=out.parent, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


# ---------------------------------------------------------------- interrupted generation (CLI)
@pytest.mark.parametrize("sig, previous", [(signal.SIGTERM, True), (signal.SIGINT, False)],
                         ids=["SIGTERM-replacing", "SIGINT-new"])
def test_signal_during_generate(tmp_path, cli_inputs, sig, previous):
    model, data = cli_inputs
    out = tmp_path / "prj"
    before = None
    if previous:
        out.mkdir()
        (out / "fpgacnn.json").write_text('{"previous": true}\n')
        (out / "firmware").mkdir()
        (out / "firmware" / "old.cpp").write_text("// the previous project\n")
        before = digest(out)
    proc = build_cli(model, data, out, *(["--force"] if previous else []))
    # The run stages its project in .prj.tmp-*; once generation has started inside it, signal.
    wait_for(lambda: list(tmp_path.glob(".prj.tmp-*/.project.tmp-*")), "generation to start", proc)
    proc.send_signal(sig)
    rc, _, err = finish(proc)
    assert rc == 128 + sig, err
    assert err.strip().splitlines()[-1] == ("terminated by SIGTERM" if sig == signal.SIGTERM else "aborted")
    assert "Traceback" not in err
    if previous:
        assert digest(out) == before
    else:
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["prj"] if previous else [])
    assert stray(tmp_path) == []


def test_sigkill_leaves_a_temp_dir_that_the_next_run_sweeps(tmp_path):
    """SIGKILL cannot be caught; its leftovers carry a dead pid and are removed by the next run."""
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_render import tiny_qmodel
        from fpgacnn import generate
        x = (np.random.default_rng(0).integers(0, 256, (8, 8, 8, 1)) / 256).astype(np.float32)
        generate(tiny_qmodel(), {str(tmp_path / 'prj')!r}, x_test=x)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: list(tmp_path.glob(".prj.tmp-*")), "the temporary project", proc)
    proc.kill()
    finish(proc)
    assert len(list(tmp_path.glob(".prj.tmp-*"))) == 1 and not (tmp_path / "prj").exists()
    from test_render import tiny_qmodel

    from fpgacnn import generate

    x = (np.random.default_rng(0).integers(0, 256, (8, 8, 8, 1)) / 256).astype(np.float32)
    generate(tiny_qmodel(), tmp_path / "prj", x_test=x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prj"]


# ---------------------------------------------------------------- interrupted csim (CLI)
def _gxx_of(pid):
    for p, ppid, _, comm in procs():
        if ppid == pid and comm.startswith("g++"):
            return p
    return None


def _group(pgid):
    return [p for p in procs() if p[2] == pgid]


@pytest.mark.parametrize("how", ["SIGTERM-csim", "SIGKILL-g++"])
def test_interrupted_build_leaves_no_binary(tmp_path, built_project, how):
    from fpgacnn import csim

    for attempt in range(3):
        prj = fresh_copy(built_project, tmp_path / f"try{attempt}" / "prj")
        before = digest(prj)
        proc = subprocess.Popen([sys.executable, "-m", "fpgacnn.cli", "csim", str(prj), "--jobs", "1"], env=ENV,
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        gxx = wait_for(lambda: _gxx_of(proc.pid), "g++ to start", proc)
        # wait until the driver has started the compiler proper, so there is a child to orphan
        wait_for(lambda: any(c[3] != "g++" and not c[3].startswith("g++") for c in _group(gxx))
                 or proc.poll() is not None, "cc1plus to start")
        if proc.poll() is None:
            break
        finish(proc)  # on a loaded machine this poll can miss the whole build: try again
    else:
        pytest.fail("csim finished before its compiler could be interrupted, 3 times")
    if how == "SIGTERM-csim":
        proc.send_signal(signal.SIGTERM)
    else:
        os.kill(gxx, signal.SIGKILL)
    rc, _, err = finish(proc)
    last = err.strip().splitlines()[-1]
    if how == "SIGTERM-csim":
        assert (rc, last) == (143, "terminated by SIGTERM"), err
    else:
        assert (rc, last) == (1, "error: g++ was killed by signal 9 while compiling the testbench; run csim "
                                 "again"), err
    wait_for(lambda: not _group(gxx), "the compiler's process group to be gone", timeout=1)
    build = prj / "csim"
    assert not (build / "fpgacnn_tb").exists() and not (build / "fpgacnn_tb.stamp").exists()
    assert stray(tmp_path) == [] and not list(build.glob("outputs_*"))
    assert {k: v for k, v in digest(prj).items() if not k.startswith("csim")} == before
    r = csim(prj, jobs=1)
    assert r.bit_exact and not r.cached_build


def test_half_written_binary_is_not_trusted(tmp_path, built_project):
    from fpgacnn import csim

    prj = tmp_path / "prj"
    shutil.copytree(built_project, prj)
    binary = prj / "csim" / "fpgacnn_tb"
    assert csim(prj, jobs=1).cached_build
    binary.write_bytes(binary.read_bytes()[: binary.stat().st_size // 2])
    r = csim(prj, jobs=1)
    assert r.bit_exact and not r.cached_build


# ---------------------------------------------------------------- in-process: commit, writes, processes
@pytest.fixture
def commit_pair(tmp_path):
    """An old output ``out/f`` = "old" and its staged replacement holding "new"."""
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "f").write_text("old")
    src = make_temp_dir(tmp_path, "out")
    (src / "f").write_text("new")
    return src, dst


def test_signal_during_commit_is_delivered_after_it(tmp_path, monkeypatch, commit_pair):
    import fpgacnn.atomic as atomic

    src, dst = commit_pair
    real_replace = os.replace
    calls = []

    def replace_then_signal(a, b):
        calls.append((a, b))
        if len(calls) == 1:  # old output moved aside, new one not yet in place
            os.kill(os.getpid(), signal.SIGTERM)
        return real_replace(a, b)

    monkeypatch.setattr(atomic.os, "replace", replace_then_signal)
    # Another thread that does not block signals (TensorFlow starts many): the kernel may hand
    # the signal to it, so blocking it in the main thread alone would not defer it.
    import threading

    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, daemon=True)
    helper.start()
    try:
        with signals_as_exceptions(), pytest.raises(Terminated):
            replace_dir(src, dst)
    finally:
        stop.set()
        helper.join()
    assert len(calls) == 2  # both renames ran before the signal was handled
    assert (dst / "f").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_commit_restores_the_old_output(monkeypatch, commit_pair):
    import fpgacnn.atomic as atomic

    src, dst = commit_pair
    real_replace = os.replace

    def fail_second(a, b):
        if Path(a) == src:
            raise OSError(28, "No space left on device")
        return real_replace(a, b)

    monkeypatch.setattr(atomic.os, "replace", fail_second)
    with pytest.raises(OSError):
        replace_dir(src, dst)
    assert (dst / "f").read_text() == "old" and src.is_dir()


def test_atomic_write_interrupted(tmp_path, monkeypatch):
    import fpgacnn.atomic as atomic

    target = tmp_path / "report.json"
    target.write_text("previous\n")

    def interrupted(a, b):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(target, "x" * 100000)
    assert target.read_text() == "previous\n" and sorted(os.listdir(tmp_path)) == ["report.json"]


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_sweep_stale_only_touches_dead_runs_on_this_host(tmp_path):
    from fpgacnn.atomic import _tag

    host = _tag().split("-")[0]
    dead, alive = _dead_pid(), os.getppid()
    names = {
        f".prj.tmp-{host}-{dead}-abc": True,      # dead run: removed
        f".prj.tmp-{host}-{alive}-abc": False,    # live run: kept
        f".prj.tmp-otherhost-{dead}-abc": False,  # another machine's run: kept
        f".prj.old-{host}-{dead}-abc": True,      # previous output aside while prj exists: removed
        f".other.tmp-{host}-{dead}-abc": False,   # another target: kept
    }
    (tmp_path / "prj").mkdir()
    for n in names:
        (tmp_path / n).mkdir()
    removed = {p.name for p in sweep_stale(tmp_path, "prj")}
    assert removed == {n for n, gone in names.items() if gone}
    # without prj, a dead run's moved-aside previous output is the only copy: never removed
    (tmp_path / "prj").rmdir()
    keep = tmp_path / f".prj.old-{host}-{dead}-xyz"
    keep.mkdir()
    assert sweep_stale(tmp_path, "prj") == [] and keep.is_dir()


def _alarm_interrupt(seconds: float):
    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return old


def test_run_group_kills_grandchildren_when_interrupted(tmp_path):
    pidfile = tmp_path / "child.pid"
    old = _alarm_interrupt(0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_group(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    child = int(pidfile.read_text())
    wait_for(lambda: all(p[0] != child for p in procs()), "the grandchild to die", timeout=10)


def test_interrupted_testbench_run_cleans_up(tmp_path):
    import fpgacnn.hls.csim as csim_mod

    (tmp_path / "csim").mkdir()
    fake = tmp_path / "fake_tb"
    fake.write_text(f"#!/bin/sh\necho $$ >> {tmp_path}/pids\necho partial > \"$2\"\nexec sleep 60\n")
    fake.chmod(0o755)
    inputs = tmp_path / "in.dat"
    inputs.write_text("0.5\n" * 8)
    old = _alarm_interrupt(1.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            csim_mod._run(tmp_path, fake, inputs, 8, 2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    pids = {int(p) for p in (tmp_path / "pids").read_text().split()}
    assert len(pids) == 2 and not pids & {p[0] for p in procs()}
    assert sorted(os.listdir(tmp_path / "csim")) == []


def test_interrupted_model_save_leaves_nothing(tmp_path):
    """``fpgacnn trim`` saves through ``save_model``: a half-written .h5 never appears."""
    from tensorflow import keras

    from fpgacnn.modelio import load_model, save_model

    i = keras.Input((4, 4, 1))
    m = keras.Model(i, keras.layers.Dense(2)(keras.layers.Flatten()(i)))
    real_save = m.save

    def save_then_interrupt(path, *a, **kw):
        Path(path).write_bytes(b"\x89HDF\r\n\x1a\n half")  # what a killed writer leaves
        raise KeyboardInterrupt

    m.save = save_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        save_model(m, tmp_path / "small.h5")
    assert os.listdir(tmp_path) == []
    m.save = real_save
    save_model(m, tmp_path / "small.h5")
    assert os.listdir(tmp_path) == ["small.h5"] and load_model(tmp_path / "small.h5").count_params() == 34
