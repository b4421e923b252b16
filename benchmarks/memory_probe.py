"""One process per memory measurement: a process's peak RSS (``ru_maxrss``) never goes
down, so each size or setting of a memory benchmark runs in a child of its own, which
prints one JSON line; the parent collects them."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_children(script: str, args, what: str) -> list[dict]:
    """``script --child ARG`` for every ARG; exits naming ``what`` when one fails."""
    runs = []
    for arg in args:
        proc = subprocess.run([sys.executable, script, "--child", str(arg)], capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if proc.returncode != 0:
            sys.exit(f"{what} failed:\n{proc.stderr[-3000:]}")
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return runs


def child_or_main(child, main) -> None:
    """The benchmark's entry point: ``--child ARG`` measures one setting, else ``main()``."""
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(int(sys.argv[2]))))
    else:
        main()


def write_results(results_dir, name: str, result: dict, markdown: str) -> None:
    """``<name>.json`` and ``<name>.md`` under ``results_dir``."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (results_dir / f"{name}.md").write_text(markdown)
