"""Hostile names and model files: no code runs, nothing escapes the project, meaning unchanged.

Two attack surfaces:

* names that end up in generated C++, Makefiles, Tcl and Markdown (layer, input, model,
  class, project and directory names): the project must still compile, simulate
  bit-exactly, and nothing may be written outside the project directory;
* model files that carry code (Lambda bytecode, a custom class in a Python module that
  Keras would import): ``load_model`` must refuse them before Keras runs anything, unless
  the user opts in with ``allow_code=True``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fpgacnn.errors import ModelLoadError

pytestmark = pytest.mark.slow
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def hostile(marker: Path, tag: str) -> str:
    """A name that would run a command or break out of a string/line/comment/path if pasted raw."""
    return (f'{tag}"; $(touch {marker}) `touch {marker}` \'; rm -rf ../x; #\n'
            f'# heading\r\n*/ /* ../../{tag} $HOME ${{HOME}} %s %n \\" é ∑ 中 \t|' + "x" * 300)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def hostile_project(tmp_path_factory):
    """A QKeras model whose every name is hostile, generated into a hostile directory name."""
    from qkeras import QActivation, QConv2D, QDense
    from tensorflow import keras

    from fpgacnn import generate

    root = tmp_path_factory.mktemp("inj")
    parent = root / "parent"
    parent.mkdir()
    marker = root / "PWNED"
    keras.utils.set_random_seed(0)
    q = dict(kernel_quantizer="quantized_bits(8,0,alpha=1)", bias_quantizer="quantized_bits(8,0,alpha=1)")
    # TensorFlow only lets characters [A-Za-z0-9_.\/>-] into names of layers that own a name
    # scope; the input layer takes anything. Names that sanitize to the same identifier,
    # C++/Tcl keywords, names hls4ml reserves and path traversal are all in here.
    inp = keras.Input((8, 8, 1), name=hostile(marker, "input"))
    h = QConv2D(3, 3, name="../../../tmp/evil", **q)(inp)
    h = QActivation("quantized_relu(8,2)", name="a.b")(h)
    h = QConv2D(3, 1, name="a-b", **q)(h)
    h = QActivation("quantized_relu(8,2)", name="int")(h)
    h = keras.layers.MaxPooling2D(name="main")(h)
    h = keras.layers.Flatten(name="input")(h)
    h = QDense(4, name="0dense_linear", **q)(h)
    h = QActivation("quantized_relu(8,3)", name="x" * 200)(h)
    h = QDense(3, name="std/nnet>..", **q)(h)
    model = keras.Model(inp, h, name="../model>name")
    x = (np.random.default_rng(0).integers(0, 256, (24, 8, 8, 1)) / 256).astype(np.float32)
    classes = [hostile(marker, f"class{i}") for i in range(3)]
    out = parent / 'p $(touch PWN) `id`; "q"'
    before = tree(root)
    project = generate(model, out, x_test=x, y_test=np.arange(24) % 3, float_model=model,
                       name=hostile(marker, "project"), classes=classes)
    return dict(root=root, parent=parent, out=out, marker=marker, before=before, project=project, model=model,
                x=x)


def test_hostile_names_compile_and_stay_bit_exact(hostile_project):
    from fpgacnn import csim

    hp = hostile_project
    r = csim(hp["project"], jobs=1)
    assert r.bit_exact and r.mismatches == 0 and r.samples == 24
    # the meaning is unchanged: the testbench computes what the hostile-named QKeras model computes
    from fpgacnn.hls.precision import input_spec

    spec = input_spec(hp["x"], 8)
    want = hp["model"].predict(spec.snap(hp["x"]), verbose=0)
    np.testing.assert_array_equal(r.outputs, want.astype(np.float64))


def test_nothing_written_outside_the_project(hostile_project):
    from fpgacnn import csim

    hp = hostile_project
    csim(hp["project"], jobs=1)
    if shutil.which("make"):
        proc = subprocess.run(["make", "csim"], cwd=hp["out"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "bit-exact" in proc.stdout, proc.stdout + proc.stderr
        phony = re.search(r"^\.PHONY:(.*)$", (hp["out"] / "Makefile").read_text(), re.M).group(1).split()
        for target in phony:  # -n expands every recipe (and any $(shell ...)) without running it
            subprocess.run(["make", "-n", target], cwd=hp["out"], capture_output=True, text=True, timeout=60)
    after = tree(hp["root"])
    prefix = str(hp["out"].relative_to(hp["root"]))
    new = {p for p in after - hp["before"] if p != prefix and not p.startswith(prefix + os.sep)}
    assert new == set(), new
    assert not hp["marker"].exists()
    assert not list(hp["root"].rglob("PWN*"))
    for p in hp["out"].rglob("*"):
        assert not p.is_symlink(), p
        rel = p.relative_to(hp["out"]).as_posix()
        assert re.fullmatch(r"[A-Za-z0-9_.\-/]+", rel), rel  # every file name is tame


def test_generated_sources_carry_no_raw_hostile_text(hostile_project):
    hp = hostile_project
    for p in hp["out"].rglob("*"):
        if not p.is_file() or p.suffix in (".dat",) or "csim" in p.parts:
            continue
        text = p.read_text(errors="replace")
        assert str(hp["marker"]) not in text or p.name in ("README.md", "fpgacnn.json"), p
        if p.name in ("README.md", "fpgacnn.json"):
            # names are shown there for humans, but every one stays on its own line of text
            assert "\n# heading" not in text and "\r" not in text, p
            continue
        for needle in ("$(touch", "`touch", "../../../tmp/evil", "rm -rf ../x"):
            assert needle not in text, (p, needle)


# ---------------------------------------------------------------- no code from model files
def _lambda_model(marker: Path):
    from tensorflow import keras

    i = keras.Input((8, 8, 1))
    # Writes the marker whenever Keras calls it, which it does while rebuilding the model.
    h = keras.layers.Lambda(lambda t, p=str(marker): (open(p, "w").close(), t)[1], name="sneaky")(i)
    return keras.Model(i, keras.layers.Dense(3)(keras.layers.Flatten()(h)))


@pytest.mark.parametrize("fmt", ["h5", "keras", "savedmodel"])
def test_lambda_never_runs(tmp_path, fmt):
    from fpgacnn.modelio import load_model

    marker = tmp_path / "LAMBDA_RAN"
    m = _lambda_model(marker)
    path = tmp_path / ("model" if fmt == "savedmodel" else f"model.{fmt}")
    m.save(path, save_format="tf") if fmt == "savedmodel" else m.save(path)
    marker.unlink(missing_ok=True)
    with pytest.raises(ModelLoadError) as info:
        load_model(path)
    assert str(info.value) == (f"model '{path}' contains Lambda layer 'sneaky', which runs Python code stored in "
                               "the file; refusing to load it (allow_code=True / --allow-code if you trust the file)")
    assert not marker.exists()
    # The opt-in really loads it, and really runs the code: the refusal above is what kept it out.
    loaded = load_model(path, allow_code=True)
    assert loaded.get_layer("sneaky") is not None
    assert marker.exists()


def test_custom_class_module_is_never_imported(tmp_path):
    """A .keras config names the Python module of a custom class. Keras 2.15 imports that module
    (running its top-level code) to find the class, even in safe mode: shown below with plain
    ``keras.models.load_model``, refused by ``fpgacnn.modelio.load_model``."""
    work = tmp_path / "work"
    work.mkdir()
    marker = tmp_path / "MODULE_IMPORTED"
    (work / "evil_layers.py").write_text(textwrap.dedent(f"""
        open({str(marker)!r}, "w").close()  # top-level code: runs on import
        from tensorflow import keras

        @keras.saving.register_keras_serializable(package="evil")
        class Wrapper(keras.Model):
            def __init__(self, **kw):
                i = keras.Input((8, 8, 1))
                super().__init__(i, keras.layers.Dense(3, name="out")(keras.layers.Flatten()(i)), **kw)

            def get_config(self):
                return {{"name": self.name}}

            @classmethod
            def from_config(cls, config):
                return cls(**config)
    """))
    make = "import evil_layers; evil_layers.Wrapper(name='wrapped').save('model.keras')"
    subprocess.run([sys.executable, "-c", make], cwd=work, env=ENV, check=True, capture_output=True, timeout=300)
    marker.unlink()
    load = textwrap.dedent(f"""
        import os
        from fpgacnn.errors import ModelLoadError
        from fpgacnn.modelio import load_model
        try:
            load_model("model.keras")
            print("LOADED")
        except ModelLoadError as exc:
            print("REFUSED", exc)
        print("MARKER", os.path.exists({str(marker)!r}))
        m = load_model("model.keras", allow_code=True)
        print("OPT-IN", type(m).__name__, os.path.exists({str(marker)!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", load], cwd=work, env=ENV, capture_output=True, text=True,
                          timeout=300)
    lines = proc.stdout.splitlines()
    assert lines[0] == ("REFUSED model 'model.keras' refers to 'Wrapper' in Python module 'evil_layers', "
                        "which Keras would import to load it; refusing to load it (allow_code=True / --allow-code "
                        "if you trust the file)"), proc.stdout + proc.stderr
    assert lines[1:] == ["MARKER False", "OPT-IN Wrapper True"], proc.stdout + proc.stderr
