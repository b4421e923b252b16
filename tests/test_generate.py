"""generate(): bit-exact C simulation, byte-identical output, safe replacement of old projects."""
from __future__ import annotations

import json
import re
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
    keys = {"name", "hls_name", "class", "weight", "bias", "result", "accum"}
    assert set(layers[0]) == keys | {"activation_folded"} and set(layers[1]) == keys | {"folded_into"}
    for ly in layers[2:]:
        assert ly["result"] and set(ly) == keys
    relu = f"ap_ufixed<8,{q.layers[2].quantizer.integer},AP_RND_CONV,AP_SAT>"
    assert layers[1]["result"] == relu
    # the conv rounds into the ReLU's type itself; its accumulator stays exact (signed, wider)
    assert layers[0]["result"] == relu and layers[0]["accum"].startswith("ap_fixed<")
    assert layers[0]["activation_folded"] == layers[1]["name"] and layers[1]["folded_into"] == layers[0]["name"]
    assert mf["project"]["folded_activations"] == [layers[1]["name"]]
    tb = mf["testbench"]
    assert tb == {"samples": N_SAMPLES, "inputs": "tb_data/tb_input_features.dat",
                  "expected": "tb_data/tb_output_predictions.dat", "float": "tb_data/float_predictions.dat",
                  "labels": "tb_data/labels.dat", "compare": "exact"}
    for key in ("inputs", "expected", "float", "labels"):
        assert len((project.dir / tb[key]).read_text().splitlines()) == N_SAMPLES
    text = "".join(p.read_text(errors="replace") for p in project.dir.rglob("*") if p.is_file())
    assert str(project.dir.parent) not in text and ".tmp-" not in text


def _stream_depths(project_dir: Path, top: str) -> dict:
    text = (project_dir / "firmware" / f"{top}.cpp").read_text()
    return {m[0]: int(m[1]) for m in re.findall(r"#pragma HLS STREAM variable=(\w+) depth=(\d+)", text)}


def test_chain_fifos_are_shallow_unless_asked_for_full_depth(project, tiny_q, tmp_path):
    from fpgacnn.errors import InputError
    from fpgacnn.hls.generate import generate

    m, q, x, y = tiny_q
    shallow = _stream_depths(project.dir, project.name)
    assert shallow and max(shallow.values()) <= 16
    assert project.manifest["project"]["fifo_depth"] == "auto"
    assert project.manifest["project"]["fifo_depths"] == shallow
    full = generate(q, tmp_path / "full", x_test=x[:4], fifo_depth="full")
    depths = _stream_depths(full.dir, full.name)
    assert depths.keys() == shallow.keys() and max(depths.values()) == 36  # the conv's 6x6 output map
    assert full.manifest["estimate"]["total"]["LUT"] > project.manifest["estimate"]["total"]["LUT"]
    with pytest.raises(InputError, match="fifo_depth"):
        generate(q, tmp_path / "bad", x_test=x[:4], fifo_depth="deep")
    assert not (tmp_path / "bad").exists()


def test_branching_graph_keeps_hls4ml_fifo_depths(tmp_path):
    from fpgacnn.hls.generate import generate
    from fpgacnn.quantization import quantize

    x = _pixels(4)
    proj = generate(quantize(_branchy(), bits=8, x=x), tmp_path / "p", x_test=x)
    depths = _stream_depths(proj.dir, proj.manifest["project"]["top"])
    assert min(d for name, d in depths.items() if "cpy" in name) == 64  # the forked 8x8 maps stay whole


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


# ------------------------------------------------------------------ per-layer reuse factors (a fit's design)
def _layer_configs(project_dir: Path) -> dict:
    """``{config struct: {reuse_factor, strategy}}`` as hls4ml wrote them into parameters.h."""
    import re

    text = (project_dir / "firmware" / "parameters.h").read_text()
    out = {}
    for m in re.finditer(r"struct (config\d+) : nnet::\w+ \{(.*?)\n\};", text, re.S):
        body = m.group(2)
        rf = re.search(r"reuse_factor = (\d+);", body)
        st = re.search(r"strategy = nnet::(\w+);", body)
        if rf and st:
            out[m.group(1)] = (int(rf.group(1)), st.group(1))
    return out


@needs_gxx
def test_per_layer_reuse_factors_reach_the_project_and_stay_bit_exact(tiny_q, tmp_path):
    from fpgacnn.hls.generate import generate
    from fpgacnn.hls.testvectors import read_matrix

    _, q, x, _ = tiny_q
    proj = generate(q, tmp_path / "p", x_test=x[:6], layer_reuse={"conv": 9, "dense": 12},
                    layer_strategy={"dense": "Resource"})
    mf = proj.manifest["project"]
    assert mf["layer_reuse"] == {"conv": 9, "dense": 12}
    assert mf["layer_strategy"] == {"conv": "Latency", "dense": "Resource"}
    assert mf["reuse_factor"] == 1 and mf["strategy"] == "Latency"  # the model-wide defaults, as given
    # conv: its kernel struct and the line buffer's config; dense: the Resource kernel
    assert sorted(set(_layer_configs(proj.dir).values())) == [(9, "latency"), (12, "resource")]
    work = tmp_path / "copy"
    shutil.copytree(proj.dir, work)
    got = _csim_exact(work, mf["top"], tmp_path)
    np.testing.assert_array_equal(got, read_matrix(work / "tb_data" / "tb_output_predictions.dat"))
    assert got.shape == (6, 10)

    plain = generate(q, tmp_path / "plain", x_test=x[:2])  # defaults: every layer recorded at 1, Latency
    assert plain.manifest["project"]["layer_reuse"] == {"conv": 1, "dense": 1}


@pytest.mark.parametrize("kwargs,message", [
    ({"layer_reuse": {"nope": 2}}, "reuse factor given for layer 'nope', which the model does not have"),
    ({"layer_reuse": {"conv": 5}}, r"reuse factor 5 of layer 'conv' is not one hls4ml accepts for its 9x4 "
                                   r"kernel \(valid: 1, 3, 9, 18, 36\)"),
    ({"layer_reuse": {"pool": 2}}, "layer 'pool', which has no multipliers"),
    ({"layer_reuse": {"dense": 2.5}}, "reuse factor of layer 'dense' must be a positive integer"),
    ({"layer_strategy": {"conv": "Fast"}}, "strategy of layer 'conv' must be Latency or Resource"),
    ({"layer_reuse": [("conv", 9)]}, "layer_reuse and layer_strategy must map"),
])
def test_invalid_per_layer_design_is_refused(tiny_q, tmp_path, kwargs, message):
    from fpgacnn.errors import InputError
    from fpgacnn.hls.generate import generate

    _, q, x, _ = tiny_q
    with pytest.raises(InputError, match=message):
        generate(q, tmp_path / "p", x_test=x[:2], **kwargs)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ graphs: concat, separable, padding
def _branchy(seed=0):
    """Two branches (conv | separable conv) concatenated, zero-padded, conv, global max pool."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    i = keras.Input((8, 8, 4), name="in")  # 'in' is also a variable of the testbench: must be renamed
    a = L.Conv2D(3, 3, padding="same", activation="relu", name="a")(i)
    b = L.SeparableConv2D(5, 3, padding="same", name="b")(i)
    b = L.ReLU(name="b_linear")(b)  # names hls4ml would use for layers it inserts
    a = L.ReLU(name="zp2d_a")(a)
    h = L.Concatenate(name="cat")([a, b])
    h = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(h)
    h = L.Conv2D(4, 2, name="c")(h)  # signed values into the max pool
    h = L.GlobalMaxPooling2D(name="gmp")(h)
    return keras.Model(i, L.Dense(5, activation="softmax", name="d")(h), name="branchy")


def _pixels(n, shape=(8, 8, 4), seed=0):
    return (np.random.default_rng(seed).integers(0, 256, (n, *shape)) / 256).astype("float32")


@needs_gxx
def test_graph_with_range_policy_is_bit_exact(tmp_path):
    from fpgacnn.hls.csim import csim
    from fpgacnn.hls.generate import generate
    from fpgacnn.quantization import quantize

    x = _pixels(16)
    q = quantize(_branchy(), bits="range", x=x)
    proj = generate(q, tmp_path / "p", x_test=x)
    layers = {ly["name"]: ly for ly in proj.manifest["precision"]["layers"]}
    assert layers["cat"]["class"] == "Concatenate" and layers["b"]["pointwise"].startswith("ap_fixed<")
    assert layers["pad"]["result"] == layers["cat"]["result"]
    assert layers["b_linear"]["hls_name"] != "b_linear" and layers["zp2d_a"]["hls_name"] != "zp2d_a"
    top = proj.manifest["project"]["top"]
    assert "&in," not in (proj.dir / "firmware" / f"{top}.h").read_text().replace(" ", "")
    result = csim(proj, jobs=1)  # compiles: no name clashes with hls4ml's layers or testbench variables
    assert result.bit_exact and result.passed and result.compare == "exact"
    np.testing.assert_array_equal(result.outputs, q.predict(x, verbose=0).astype(np.float64))


def test_merge_types_hold_every_sum_exactly():
    from fpgacnn.hls.precision import Fixed, merge_type

    relu = Fixed(8, 3, False)  # [0, 8) step 1/32
    acc = Fixed(20, 6, True)  # [-32, 32) step 2^-14
    add = merge_type([relu, acc], add=True)
    assert (add.signed, add.integer, add.frac) == (True, 7, 14)  # the ReLU counts as 4 signed bits
    assert add.min <= acc.min and add.max >= relu.max + acc.max
    assert merge_type([relu, Fixed(6, 2, False)], add=True) == Fixed(9, 4, False)  # unsigned stays unsigned
    cat = merge_type([relu, acc], add=False)
    assert (cat.signed, cat.integer, cat.frac) == (True, 6, 14) and cat.max >= relu.max


def test_softmax_option_is_checked(tiny_q, tmp_path):
    from fpgacnn.errors import InputError, UnsupportedLayerError
    from fpgacnn.hls.generate import generate

    _, q, x, _ = tiny_q
    with pytest.raises(InputError, match="softmax"):
        generate(q, tmp_path / "s", x_test=x[:2], softmax="fpga")
    # a softmax inside the QKeras model itself is not silently compiled: only the option adds one
    with_softmax = keras.Model(q.inputs, keras.layers.Activation("softmax", name="probs")(q.outputs[0]))
    with pytest.raises(UnsupportedLayerError, match="softmax='hardware'") as ei:
        generate(with_softmax, tmp_path / "t", x_test=x[:2])
    assert ei.value.layer_name == "probs"
    assert list(tmp_path.iterdir()) == []
