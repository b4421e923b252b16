"""generate(): bit-exact C simulation, byte-identical output, safe replacement of old projects."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("tensorflow").keras

N_SAMPLES = 24


def _tiny(pool: str = "max", bn: bool = False, seed: int = 0):
    keras.utils.set_random_seed(seed)
    L = keras.layers
    layers = [keras.Input((8, 8, 1)), L.Conv2D(4, 3, name="conv")]
    if bn:
        layers.append(L.BatchNormalization(name="bn"))
    layers += [L.ReLU(name="relu"), (L.MaxPooling2D if pool == "max" else L.AveragePooling2D)(2, name="pool"),
               L.Flatten(name="flat"), L.Dense(10, activation="softmax", name="dense")]
    m = keras.Sequential(layers, name="tiny")
    if bn:
        rng = np.random.default_rng(seed)
        m.get_layer("bn").set_weights([rng.uniform(0.5, 2, 4), rng.normal(0, 0.5, 4), rng.normal(0, 0.2, 4),
                                       rng.uniform(0.3, 2, 4)])
    return m


def _data(n=N_SAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    # camera-like pixels p/256, p in 0..255: the ap_ufixed<8,0> input grid
    return (rng.integers(0, 256, (n, 8, 8, 1)) / 256).astype("float32"), rng.integers(0, 10, n)


@pytest.fixture(scope="module")
def tiny_q():
    from fpgacnn.quantization import quantize

    m = _tiny()
    x, y = _data()
    return m, quantize(m, bits=8, x=x), x, y


@pytest.fixture(scope="module")
def project(tiny_q, tmp_path_factory):
    from fpgacnn.hls.generate import generate

    m, q, x, y = tiny_q
    out = tmp_path_factory.mktemp("gen") / "proj"
    return generate(q, out, x_test=x, y_test=y, float_model=m, classes=[f"c{i}" for i in range(10)])


def _all_bytes(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _csim_exact(project_dir: Path, top: str, work: Path) -> np.ndarray:
    """Compile hls4ml's testbench, printing outputs with enough digits to be exact, and run it.

    ap_fixed's operator<< honours the stream precision (default 6 digits); 40 significant
    digits print every value of these widths exactly.
    """
    from fpgacnn.hls.testvectors import read_matrix

    src = (project_dir / f"{top}_test.cpp").read_text()
    marker = "std::ofstream fout(RESULTS_LOG);"
    assert marker in src
    src = "#include <iomanip>\n" + src.replace(marker, marker + "\n    fout << std::setprecision(40);")
    (project_dir / "exact_test.cpp").write_text(src)
    exe = work / "csim_exact"
    subprocess.run(["g++", "-O2", "-std=c++17", "-Ifirmware", "-Ifirmware/ap_types",
                    '-DWEIGHTS_DIR="firmware/weights"', "exact_test.cpp", f"firmware/{top}.cpp", "-o", str(exe)],
                   cwd=project_dir, check=True, capture_output=True)
    subprocess.run([str(exe)], cwd=project_dir, check=True, capture_output=True)
    return read_matrix(project_dir / "tb_data" / "csim_results.log")


needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")


@needs_gxx
@pytest.mark.parametrize("variant", ["maxpool8", "avgpool_bn_qat6"])
def test_csim_is_bit_exact(variant, tiny_q, tmp_path):
    from fpgacnn.hls.generate import generate
    from fpgacnn.hls.testvectors import read_matrix
    from fpgacnn.quantization import quantize

    if variant == "maxpool8":
        m, q, x, _ = tiny_q
    else:
        m = _tiny(pool="avg", bn=True, seed=1)
        x, y = _data(seed=1)
        q = quantize(m, bits=6, x=x, y=y, epochs=1, batch_size=8)
    work = tmp_path / "copy"
    # the project is modified by running the testbench: work on a fresh one
    proj = generate(q, tmp_path / "p", x_test=x)
    shutil.copytree(proj.dir, work)
    got = _csim_exact(work, proj.manifest["project"]["top"], tmp_path)
    expected = read_matrix(work / "tb_data" / "tb_output_predictions.dat")
    assert got.shape == expected.shape == (N_SAMPLES, 10)
    # expected are the QKeras logits on the snapped inputs, recomputed here independently
    xs = read_matrix(work / "tb_data" / "tb_input_features.dat").reshape(x.shape).astype(np.float32)
    np.testing.assert_array_equal(xs * 256, np.round(xs * 256))  # on the ap_ufixed<8,0> grid
    np.testing.assert_array_equal(expected, q.predict(xs, verbose=0).astype(np.float64))
    np.testing.assert_array_equal(got, expected)


def test_manifest(project, tiny_q):
    from fpgacnn.hls.project import Project

    _, q, _, _ = tiny_q
    mf = json.loads((project.dir / "fpgacnn.json").read_text())
    assert mf == project.manifest == Project.load(project.dir).manifest
    assert (project.dir / "fpgacnn.json").read_text().endswith("}\n")
    assert mf["project"]["top"] == mf["project"]["name"] == "tiny" == project.name
    assert mf["project"]["io_type"] == "io_stream" and mf["project"]["backend"] == "Vitis"
    assert mf["model"]["input_shape"] == [8, 8, 1] and mf["model"]["n_outputs"] == 10
    assert mf["model"]["params"] == q.count_params() and len(mf["model"]["sha256"]) == 64
    assert mf["model"]["classes"] == [f"c{i}" for i in range(10)]
    assert mf["input"]["precision"] == "ap_ufixed<8,0>" and mf["input"]["scale"] == 1 / 256
    assert mf["output"]["softmax"] == "host" and mf["output"]["precision"].startswith("ap_fixed<")
    layers = mf["precision"]["layers"]
    assert [ly["class"] for ly in layers] == ["QConv2D", "QActivation", "MaxPooling2D", "Flatten", "QDense"]
    for ly in layers:
        assert ly["result"] and set(ly) == {"name", "hls_name", "class", "weight", "bias", "result", "accum"}
    assert layers[1]["result"] == f"ap_ufixed<8,{q.layers[2].quantizer.integer},AP_RND_CONV,AP_SAT>"
    assert layers[0]["accum"] == layers[0]["result"]
    tb = mf["testbench"]
    assert tb == {"samples": N_SAMPLES, "inputs": "tb_data/tb_input_features.dat",
                  "expected": "tb_data/tb_output_predictions.dat", "float": "tb_data/float_predictions.dat",
                  "labels": "tb_data/labels.dat"}
    for key in ("inputs", "expected", "float", "labels"):
        assert len((project.dir / tb[key]).read_text().splitlines()) == N_SAMPLES
    text = "".join(p.read_text(errors="replace") for p in project.dir.rglob("*") if p.is_file())
    assert str(project.dir.parent) not in text and ".tmp-" not in text


def test_two_generations_are_byte_identical(project, tiny_q, tmp_path):
    from fpgacnn.hls.generate import generate

    m, q, x, y = tiny_q
    again = generate(q, tmp_path / "other", x_test=x, y_test=y, float_model=m,
                     classes=[f"c{i}" for i in range(10)])
    a, b = _all_bytes(project.dir), _all_bytes(again.dir)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []


def test_refuses_non_empty_dir_and_force_replaces(tiny_q, tmp_path):
    from fpgacnn.errors import OutputExistsError
    from fpgacnn.hls.generate import generate

    _, q, x, _ = tiny_q
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        generate(q, out, x_test=x[:2])
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert (generate(q, empty, x_test=x[:2]).dir / "fpgacnn.json").is_file()

    proj = generate(q, out, x_test=x[:2], force=True, name="my net; $(rm -rf /)")
    assert not (out / "keep.txt").exists() and (out / "fpgacnn.json").is_file()
    top = proj.manifest["project"]["top"]
    assert top.replace("_", "").isalnum() and (out / "firmware" / f"{top}.cpp").is_file()
    assert proj.manifest["testbench"]["samples"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]


def test_error_leaves_no_temp_dir_and_old_project(tiny_q, tmp_path, monkeypatch):
    import fpgacnn.hls.render as render
    from fpgacnn.hls.generate import generate

    _, q, x, _ = tiny_q
    out = tmp_path / "out"
    generate(q, out, x_test=x[:2])
    before = _all_bytes(out)

    def boom(*a, **k):
        raise RuntimeError("render failed")

    monkeypatch.setattr(render, "render_project_files", boom)
    with pytest.raises(RuntimeError, match="render failed"):
        generate(q, out, x_test=x[:3], force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert _all_bytes(out) == before


def test_rejects_float_model_and_bad_data(tiny_q, tmp_path):
    from fpgacnn.errors import DataError, UnsupportedLayerError
    from fpgacnn.hls.generate import generate

    m, q, x, _ = tiny_q
    with pytest.raises(UnsupportedLayerError):
        generate(m, tmp_path / "f", x_test=x[:2])
    with pytest.raises(DataError):
        generate(q, tmp_path / "g", x_test=x[:, :4])
    with pytest.raises(DataError):
        generate(q, tmp_path / "h", x_test=x[:2], classes=["a"])
    assert list(tmp_path.iterdir()) == []
