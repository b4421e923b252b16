"""Long fuzz run: many random model graphs through trim -> quantize -> generate -> csim.

The same cases as ``tests/test_fuzz.py`` (its ``graph_specs`` strategy and ``run_case``),
but many more of them, seeded rather than derandomized, and a case that goes wrong is
recorded instead of stopping the run. Each case ends as

* ``bit-exact``: the project was generated and its g++ C simulation matches QKeras exactly;
* ``refused``: a stage raised an ``FpgacnnError`` with a one-line message (counted per class
  and per message head, so the report shows which limits the random graphs ran into);
* ``bug``: anything else (another exception, a multi-line error, a csim mismatch): the
  spec and the end of the traceback are saved so the case can be replayed.

Usage: ``.venv/bin/python benchmarks/fuzz_long.py [--examples N] [--seed S]``; writes
``benchmarks/results/fuzz_long.{json,md}`` (the committed result: ``--examples 100 --seed 3``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))


# Bugs earlier runs of this script found, fixed at their root; kept in the report so the
# result says what fuzzing has bought so far. A new finding shows up under "bugs" instead.
FIXED = [
    {"found": "--examples 40 --seed 1: a generated project whose testbench aborts on an assertion in "
              "hls4ml's nnet_pooling_stream.h (MaxPooling2D, padding='same' on an odd-sized input)",
     "cause": "hls4ml pools the borders that padding='same' adds differently from Keras (io_parallel: "
              "wrong values, not bit-exact; io_stream: assertion), and io_stream pooling requires "
              "strides == pool_size; neither was checked before generation",
     "fix": "fpgacnn.validate.check_hls_support, called by generate and, before training, by "
            "run_pipeline: such layers are refused with UnsupportedLayerError"},
    {"found": "tests/test_concurrency.py, not this script: two generations of the same model differed "
              "in hls4ml_config.yml ('Stamp: 89ffa7fc' vs \"Stamp: '89ffa7fc'\")",
     "cause": "hls4ml's random build stamp was replaced as text after writing; the YAML writer quotes "
              "a stamp that looks like a number (about 2% of them), so the quoting stayed random",
     "fix": "generate rewrites the whole Stamp line, and replaces the stamp only in the files hls4ml "
            "writes it to (a blind replace could also hit the same digits in a weights file)"},
]


def message_head(text: str) -> str:
    """The message up to the first quote or colon detail: groups 'unsupported layer ...' refusals."""
    cls, _, msg = text.partition(": ")
    if msg.startswith("unsupported layer"):
        # "unsupported layer 'l2_tanh' of type Activation(activation=tanh) for quantize: ..."
        kind = msg.split(" of type ", 1)[-1].split(" for ")[0]
        stage, _, why = msg.split(" for ", 1)[-1].partition(": ")
        return f"{cls}: {kind} ({stage}: {why[:60]})"
    return f"{cls}: {msg[:90]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from hypothesis import HealthCheck, given, seed, settings

    from test_fuzz import describe_failure, graph_specs, run_case

    cases: list[dict] = []
    work_root = Path(tempfile.mkdtemp(prefix="fuzz_long-"))

    @seed(args.seed)
    @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(spec=graph_specs())
    def one(spec):
        work = Path(tempfile.mkdtemp(dir=work_root))
        t0 = time.perf_counter()
        try:
            outcome, detail = run_case(spec, work)
        except Exception as exc:  # recorded, not raised: the run goes on
            outcome, detail = "bug", describe_failure(spec, exc)
        cases.append({"spec": spec, "outcome": outcome, "detail": detail,
                      "seconds": round(time.perf_counter() - t0, 2)})
        print(f"[{len(cases)}] {outcome} {detail.splitlines()[0][:140] if detail else ''}", flush=True)

    t0 = time.perf_counter()
    one()
    wall = time.perf_counter() - t0
    import shutil

    shutil.rmtree(work_root, ignore_errors=True)

    outcomes = Counter(c["outcome"] for c in cases)
    refusals = Counter(message_head(c["detail"]) for c in cases if c["outcome"] == "refused")
    kinds = Counter(layer["kind"] for c in cases for layer in c["spec"]["layers"])
    result = {
        "command": f"benchmarks/fuzz_long.py --examples {args.examples} --seed {args.seed}",
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "cases_tried": len(cases),
        "outcomes": dict(sorted(outcomes.items())),
        "refusals": dict(refusals.most_common()),
        "layer_kinds_drawn": dict(sorted(kinds.items())),
        "bugs": [{"spec": c["spec"], "detail": c["detail"]} for c in cases if c["outcome"] == "bug"],
        "fixed_earlier": FIXED,
        "wall_s": round(wall, 1),
        "median_case_s": sorted(c["seconds"] for c in cases)[len(cases) // 2] if cases else None,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz_long.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Long fuzz run: random graphs through trim, quantize, generate, csim",
        "",
        f"`{result['command']}` ({result['cores']} cores, {result['wall_s']:.0f} s wall, "
        f"median {result['median_case_s']} s per case)",
        "",
        "| outcome | cases |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in result["outcomes"].items()],
        f"| **total** | **{result['cases_tried']}** |",
        "",
        "Refusals (a stage raised an `FpgacnnError` with a one-line message):",
        "",
        "| error: what | cases |",
        "|---|---:|",
        *[f"| {k.replace('|', '/')} | {v} |" for k, v in result["refusals"].items()],
        "",
        f"Bugs found in this run: {len(result['bugs'])}" + (" (specs and tracebacks in fuzz_long.json)"
                                                               if result["bugs"] else ""),
        "",
        "Found earlier and fixed at the root:",
        "",
        *[f"- {b['found']}. Cause: {b['cause']}. Fix: {b['fix']}." for b in FIXED],
        "",
    ]
    (RESULTS / "fuzz_long.md").write_text("\n".join(lines))
    print("\n".join(lines))
    sys.exit(1 if result["bugs"] else 0)


if __name__ == "__main__":
    main()
