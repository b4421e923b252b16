"""Generations and C simulations in parallel processes do not interfere.

Round one: four processes each generate and simulate the same model into their own
directory, side by side in one parent, sharing one HOME and one TMPDIR. Round two: two
processes replace the same project at once (``force``) while two others rebuild and run
csim in one project directory (its build cache is shared). Every run must succeed
bit-exactly, the projects must be identical, and nothing may be left behind or written
to a shared place (HOME gets only the Keras config file Keras itself creates on import).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow
sys.path.insert(0, str(Path(__file__).parent))

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    mode, model_path, x_path, out = sys.argv[1:5]
    result = {}
    if mode in ("gen", "gen+csim"):
        from fpgacnn import generate
        from fpgacnn.modelio import load_model
        generate(load_model(model_path), out, x_test=np.load(x_path), name="myproject", force=True)
    if mode in ("gen+csim", "csim"):
        from fpgacnn import csim
        r = csim(out, jobs=1, rebuild=(mode == "csim"))
        result = {"bit_exact": r.bit_exact, "samples": r.samples}
    print("RESULT " + json.dumps(result))
""")


def launch(jobs, env):
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, *map(str, args)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in jobs]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1].removeprefix("RESULT ")))
    return results


def project_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] != "csim"}


def everything(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from test_render import tiny_qmodel

    base = tmp_path_factory.mktemp("conc")
    tiny_qmodel().save(base / "q.h5")
    x = (np.random.default_rng(0).integers(0, 256, (20, 8, 8, 1)) / 256).astype(np.float32)
    np.save(base / "x.npy", x)
    home, tmp, out = base / "home", base / "tmp", base / "out"
    for d in (home, tmp, out):
        d.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HOME": str(home), "TMPDIR": str(tmp)}
    return base, env


@pytest.fixture(scope="module")
def round_one(setup):
    base, env = setup
    dirs = [base / "out" / f"p{k}" for k in range(4)]
    results = launch([("gen+csim", base / "q.h5", base / "x.npy", d) for d in dirs], env)
    return dirs, results


def test_four_parallel_generations_and_csims(setup, round_one):
    base, _ = setup
    dirs, results = round_one
    assert results == [{"bit_exact": True, "samples": 20}] * 4
    trees = [project_files(d) for d in dirs]
    assert all(t == trees[0] for t in trees[1:])  # identical projects, whatever ran beside them
    assert sorted(p.name for p in (base / "out").iterdir()) == ["p0", "p1", "p2", "p3"]  # no temp dirs
    for d in dirs:
        assert sorted(p.name for p in (d / "csim").iterdir()) == ["build.log", "fpgacnn_tb", "fpgacnn_tb.stamp",
                                                                  "result.json"]
    assert everything(base / "tmp") == set()
    assert everything(base / "home") <= {".keras", ".keras/keras.json"}


def test_racing_replacements_and_a_shared_build_cache(setup, round_one):
    from fpgacnn import csim

    base, env = setup
    dirs, _ = round_one
    shared = base / "out" / "shared"
    jobs = [("gen", base / "q.h5", base / "x.npy", shared)] * 2 + [("csim", "-", "-", dirs[0])] * 2
    results = launch(jobs, env)
    assert results[2:] == [{"bit_exact": True, "samples": 20}] * 2
    assert project_files(shared) == project_files(dirs[1])  # whichever replacement won, it is complete
    assert sorted(p.name for p in (base / "out").iterdir()) == ["p0", "p1", "p2", "p3", "shared"]
    assert sorted(p.name for p in (dirs[0] / "csim").iterdir()) == ["build.log", "fpgacnn_tb",
                                                                   "fpgacnn_tb.stamp", "result.json"]
    assert csim(dirs[0], jobs=2).bit_exact and csim(shared, jobs=1).bit_exact
    assert everything(base / "tmp") == set()
