"""Outputs that appear whole or not at all, even when the run is interrupted.

A generated project is written into a temporary directory next to its target and renamed
into place only when complete; single files (reports, build stamps) are written to a
temporary name and renamed. Renames within one directory are atomic on POSIX, so a reader
sees either the old output or the new one, never a mix.

Interruptions: Python turns SIGINT into ``KeyboardInterrupt``, so ``finally`` blocks clean
up. SIGTERM and SIGHUP would kill the process on the spot and leave temporary directories
behind; ``signals_as_exceptions`` (installed by the CLI) turns them into ``Terminated``
so the same cleanup runs. ``deferred_signals`` holds all three back during the few renames
that replace an old output with a new one, so a signal can never land between them.
A process killed with SIGKILL cannot clean up; its temporary directories carry host and
process id in their names and ``sweep_stale`` removes them once that process is gone.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from .errors import OutputExistsError, Terminated

__all__ = ["atomic_write_text", "deferred_signals", "make_temp_dir", "replace_dir", "run_group",
           "signals_as_exceptions", "sweep_stale"]

_CATCH = tuple(s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)
_DEFER = (signal.SIGINT,) + _CATCH


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def signals_as_exceptions():
    """Within the block, SIGTERM/SIGHUP raise ``Terminated`` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise_terminated) for s in _CATCH}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred_signals():
    """Hold SIGINT/SIGTERM/SIGHUP back for the block; any that arrived are acted on right after it.

    Python runs signal handlers in the main thread, whichever thread the kernel delivered the
    signal to (TensorFlow has many), so swapping the handlers is enough; blocking the signal
    with ``pthread_sigmask`` would not be: it only covers the calling thread.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = {}
    for s in _DEFER:
        try:
            old[s] = signal.signal(s, lambda signum, frame: pending.append(signum))
        except (OSError, ValueError):
            continue
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for s in dict.fromkeys(pending):
            h = old.get(s)
            if callable(h):
                h(s, None)  # raises KeyboardInterrupt / Terminated here, after the block
            elif h == signal.SIG_DFL:
                os.kill(os.getpid(), s)  # what would have happened, only later


def _tag() -> str:
    host = re.sub(r"[^A-Za-z0-9]+", "", socket.gethostname())[:16] or "host"
    return f"{host}-{os.getpid()}-"


def make_temp_dir(parent: Path, name: str, kind: str = "tmp") -> Path:
    """A fresh, ordinarily permissioned directory ``.<name>.<kind>-<host>-<pid>-XXXX`` in ``parent``."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(parent, name)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{name}.{kind}-{_tag()}"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; an output is an ordinary directory
    return tmp


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(parent: Path, name: str) -> list[Path]:
    """Remove ``.<name>.tmp-*``/``.<name>.old-*`` left in ``parent`` by a dead process on this host.

    Only entries whose host is this machine and whose process no longer exists are touched:
    a live run (here or, on a shared file system, on another machine) keeps its directory.
    """
    host = _tag().split("-", 1)[0]
    pattern = re.compile(rf"^\.{re.escape(name)}\.(tmp|old)-{re.escape(host)}-(\d+)-")
    removed = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = pattern.match(p.name)
        if not m or int(m.group(2)) == os.getpid() or _alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and not os.path.lexists(Path(parent) / name):
            continue  # the previous output was moved aside and the new one never arrived: keep it
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def replace_dir(src: Path, dst: Path, force: bool = True) -> None:
    """Move the complete directory ``src`` to ``dst``, replacing what is there when ``force``.

    ``src`` must be on the same file system as ``dst`` (fpgacnn keeps it next to ``dst``).
    The previous ``dst`` is renamed aside, ``src`` renamed into place and only then the old
    one deleted; signals are held back throughout, so afterwards ``dst`` is either the old
    output (on an error) or the new one. Several processes replacing the same ``dst`` at once
    each leave a complete output there; the last one wins.
    """
    src, dst = Path(src), Path(dst)
    with deferred_signals():
        for _ in range(100):
            if not os.path.lexists(dst):
                try:
                    os.replace(src, dst)
                    return
                except OSError:
                    if os.path.lexists(dst):
                        continue  # another process put its output there first
                    raise
            if not force and (not dst.is_dir() or dst.is_symlink() or any(dst.iterdir())):
                raise OutputExistsError(dst)
            old = make_temp_dir(dst.parent, dst.name, "old")
            os.rmdir(old)
            try:
                os.replace(dst, old)
            except FileNotFoundError:
                continue  # another process moved it away first
            try:
                os.replace(src, dst)
            except OSError:
                if not os.path.lexists(dst):
                    os.replace(old, dst)  # put the previous output back
                    raise
                _remove(old)  # another process's output arrived in between: replace that one
                continue
            _remove(old)
            return
        raise OSError(f"cannot move '{src}' to '{dst}': other processes keep replacing it")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def atomic_write_text(path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="\n") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def run_group(cmd, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` in a process group of its own.

    g++ runs cc1plus, as and ld as children. Killing only the driver (what ``subprocess.run``
    does when interrupted) would leave them running, still writing the output file after we
    cleaned it up. Here an interruption, or a driver that died from a signal, kills the whole
    group at once. Output goes to temporary files rather than pipes: orphans holding a pipe
    open would keep us waiting until they finish. The group also keeps a terminal's Ctrl-C
    away from the children: we decide what happens to them.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, start_new_session=True, **kwargs)
        try:
            rc = proc.wait()
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        if rc < 0:  # the driver was killed: its children may still be running
            _kill_group(proc.pid)
        texts = []
        for fh in (out, err):
            fh.seek(0)
            texts.append(fh.read().decode("utf-8", "replace"))
    return subprocess.CompletedProcess(cmd, rc, *texts)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
