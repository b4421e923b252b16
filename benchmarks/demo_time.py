"""Wall time and peak memory of the demo job (`fpgacnn demo`), end to end, as a user runs it.

Target (issue: end-to-end pipeline): under 10 minutes on 2 cores.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "fpgacnn.cli", "demo", "--out", str(out), "--json"],
                              capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        report = json.loads(proc.stdout)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "command": "fpgacnn demo",
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(peak_mb),
        "target_s": 600,
        "stage_s": report["timing_s"],
        "csim_bit_exact": report["csim"]["bit_exact"],
        "csim_argmax_agreement": report["csim"]["argmax_agreement"],
        "accuracy": report["accuracy"],
        "params_before": report["model"]["params_before"],
        "params_after": report["model"]["params_after"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "demo_time.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    rows = [f"| {k} | {v:.1f} |" for k, v in result["stage_s"].items()]
    (RESULTS / "demo_time.md").write_text(
        "# Demo job, end to end\n\n"
        f"`.venv/bin/python benchmarks/demo_time.py` on {result['cores']} cores ({result['machine']}).\n\n"
        f"Total wall time **{result['wall_s']:.1f} s** (target < 600 s), peak RSS {result['peak_rss_mb']} MB; "
        f"csim bit-exact: {result['csim_bit_exact']}, argmax agreement {result['csim_argmax_agreement']:.4f}.\n\n"
        "| stage | seconds |\n|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
