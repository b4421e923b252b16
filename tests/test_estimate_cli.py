"""``fpgacnn estimate`` / ``fpgacnn fit`` on the command line (in process: TensorFlow is loaded once)."""
from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fpgacnn.cli import main  # noqa: E402


def run(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args] + [])
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    from tensorflow import keras

    from fpgacnn.quantization import quantize

    keras.utils.set_random_seed(0)
    L = keras.layers
    m = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, name="conv"), L.ReLU(name="relu"),
                          L.MaxPooling2D(2, name="pool"), L.Flatten(name="flat"), L.Dense(10, name="logits")])
    d = tmp_path_factory.mktemp("models")
    m.save(d / "float.h5")
    quantize(m, bits=6).save(d / "q6.h5")
    return d / "float.h5", d / "q6.h5"


def test_estimate_prints_layers_and_capacity(capsys, model_files):
    code, out, err = run(capsys, "estimate", model_files[0], "--part", "xc7z020clg400-1")
    assert code == 0, err
    assert "float model quantized to 8 bits" in out and "not vendor synthesis" in out
    for needle in ("conv", "logits", "TOTAL", "part xc7z020", "capacity", "BRAM_18K"):
        assert needle in out
    lut_line = [ln for ln in out.splitlines() if ln.startswith("LUT ")][0]
    assert lut_line.split()[2] == "53,200"


def test_estimate_json_reuse_and_qkeras(capsys, model_files):
    code, out, _ = run(capsys, "estimate", model_files[0], "--part", "xc7z020", "--json")
    base = json.loads(out)
    assert code == 0 and base["capacity"]["DSP"] == 220 and base["total"]["LUT"] > 0
    assert {r["keras_name"] for r in base["layers"]} >= {"conv", "logits"}
    code, out, _ = run(capsys, "estimate", model_files[0], "--part", "xc7z020", "--json", "--reuse", "4",
                       "--strategy", "Resource", "--clock", "200")
    shared = json.loads(out)
    assert shared["total"]["ii_cycles"] > base["total"]["ii_cycles"]
    assert shared["performance"]["clock_mhz"] == 200.0
    code, out, _ = run(capsys, "estimate", model_files[1], "--part", "xc7z020", "--bits", "6", "--json")
    assert code == 0 and json.loads(out)["model"] == "QKeras model as given"


def test_estimate_unknown_part_is_a_usage_error(capsys, model_files):
    code, _, err = run(capsys, "estimate", model_files[0], "--part", "xc9z999")
    assert code == 2 and "unknown part 'xc9z999'" in err and "Traceback" not in err


def test_fit_cli_reports_the_bottleneck(capsys, model_files, tmp_path):
    from fpgacnn.data import load_digits_split

    s = load_digits_split()
    data = tmp_path / "digits.npz"
    np.savez(data, x=np.concatenate([s.x_train, s.x_test])[:300], y=np.concatenate([s.y_train, s.y_test])[:300])
    code, _, err = run(capsys, "fit", model_files[0], "--data", data, "--part", "xc7z020", "--fps", "1e8",
                       "--epochs", "0")
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: no design fits xc7z020 at 1e+08 fps") and "throughput: needs" in last


def test_generate_builds_the_design_fit_saved(capsys, model_files, tmp_path):
    """fit -> fit --out files -> ``fpgacnn generate --design``: the per-layer reuse factors and
    the input grid of the fit reach the project; options that contradict the design are refused."""
    from fpgacnn.data import load_digits_split
    from fpgacnn.estimate.commands import save_fit
    from fpgacnn.estimate.fit import fit
    from fpgacnn.modelio import load_model

    s = load_digits_split()
    data = tmp_path / "digits.npz"
    np.savez(data, x_train=s.x_train[:200], y_train=s.y_train[:200], x_test=s.x_test[:8], y_test=s.y_test[:8])
    result = fit(load_model(model_files[0]), s.x_train[:200], s.y_train[:200], "xc7z020clg400-1", fps=1000,
                 keep_grid=(1.0,), bits_grid=(6,), finetune_epochs=0, representative=50)
    assert len(set(result.design.layer_reuse.values())) > 1  # conv and logits differ
    saved = save_fit(result, tmp_path / "fit")
    code, out, err = run(capsys, "generate", saved / "qmodel.h5", "--design", saved, "--data", data,
                         "--out", tmp_path / "proj", "--samples", "4")
    assert code == 0, err
    mf = json.loads((tmp_path / "proj" / "fpgacnn.json").read_text())
    assert mf["project"]["layer_reuse"] == result.design.layer_reuse
    assert mf["project"]["layer_strategy"] == result.design.layer_strategy
    assert mf["project"]["part"] == "xc7z020clg400-1" and mf["input"] == result.input_type.manifest()
    params = (tmp_path / "proj" / "firmware" / "parameters.h").read_text()
    for rf in set(result.design.layer_reuse.values()):
        assert f"reuse_factor = {rf};" in params

    code, _, err = run(capsys, "generate", saved / "qmodel.h5", "--design", saved / "fit.json", "--data", data,
                       "--out", tmp_path / "other", "--part", "xc7a35tcpg236-1")
    assert code == 2 and "--part differs from the design" in err
    assert mf["project"]["folded_activations"]  # the fit estimated folded activations, the project has them
    code, _, err = run(capsys, "generate", saved / "qmodel.h5", "--design", saved, "--data", data,
                       "--out", tmp_path / "other", "--separate-activations")
    assert code == 2 and "--separate-activations differs from the design" in err
    code, _, err = run(capsys, "generate", saved / "qmodel.h5", "--design", tmp_path / "nope.json", "--data", data,
                       "--out", tmp_path / "other")
    assert code == 2 and "does not exist" in err and not (tmp_path / "other").exists()


def test_fit_cli_passes_the_trim_options(capsys, model_files, tmp_path, monkeypatch):
    import fpgacnn.estimate.fit as fit_module
    from fpgacnn.errors import BudgetError
    from fpgacnn.trimming.relevance import CRITERIA

    seen = {}

    def spy(*args, **kwargs):
        seen.update(kwargs["trim_options"], qat_epochs=kwargs["qat_epochs"])
        raise BudgetError("stop here")

    monkeypatch.setattr(fit_module, "fit", spy)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((200, 8, 8, 1), np.float32), y=np.arange(200) % 10)
    code, _, err = run(capsys, "fit", model_files[0], "--data", data, "--part", "xc7z020", "--fps", "30",
                       "--criterion", "relevance_weighted", "--ranking", "global", "--min-kernels", "3",
                       "--trim-rounds", "2", "--cost", "sqrt_params", "--qat-epochs", "4",
                       "--allocation", "random", "--normalize", "rank")
    assert code == 2 and "stop here" in err
    assert seen == {"criterion": "relevance_weighted", "ranking": "global", "min_kernels": 3, "rounds": 2,
                    "cost": "sqrt_params", "qat_epochs": 4, "allocation": "random",
                    "normalize": "rank"}
    code, _, err = run(capsys, "fit", model_files[0], "--data", data, "--part", "xc7z020", "--fps", "30",
                       "--criterion", "taylor")
    assert code == 2 and "'taylor' is not one of" in err
    # the command's choice list is written out (no TensorFlow import at start-up): it must stay the trimmer's
    from fpgacnn.cli import fit_cmd

    opt = next(p for p in fit_cmd.params if p.name == "criterion")
    assert tuple(opt.type.choices) == CRITERIA
    opt = next(p for p in fit_cmd.params if p.name == "allocation")
    assert tuple(opt.type.choices) == ("criterion", *CRITERIA)
    from fpgacnn.trimming.select import COSTS

    from fpgacnn.trimming.select import NORMALIZATIONS

    opt = next(p for p in fit_cmd.params if p.name == "normalize")
    assert tuple(opt.type.choices) == NORMALIZATIONS
    opt = next(p for p in fit_cmd.params if p.name == "cost")
    assert tuple(opt.type.choices) == ("none", *COSTS)
