import pytest

from fpgacnn.config import ConfigError, load_config, validate

MINIMAL = {"model": {"builtin": "small_vgg"}, "output": {"dir": "out"}}


def test_minimal_config_gets_defaults():
    cfg = validate(MINIMAL)
    assert cfg["trim"]["keep"] == 0.5 and cfg["hls"]["io_type"] == "io_stream"
    assert cfg["target"]["part"] == "xc7z020clg400-1"


def test_misspelt_key_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        validate({**MINIMAL, "trim": {"kepp": 0.3}})
    msg = str(err.value)
    assert "unknown key 'kepp'" in msg and "did you mean 'keep'" in msg and "finetune_epochs" in msg


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as err:
        validate({"model": {"builtin": "small_vgg", "path": "m.h5"}, "trim": {"keep": 1.5},
                  "quantize": {"bits": "eight"}, "hls": {"io_type": "axi"}, "extra": {}})
    problems = err.value.problems
    assert len(problems) == 6, problems
    text = " ".join(problems)
    for needle in ("trim.keep must be <= 1", "quantize.bits must be an integer", "hls.io_type must be one of",
                   "unknown key 'extra'", "exactly one of", "output.dir is required"):
        assert needle in text


def test_folder_source_needs_path_and_size():
    with pytest.raises(ConfigError, match="data.path is required.*data.image_size is required"):
        validate({**MINIMAL, "data": {"source": "folder"}})


def test_load_config_resolves_paths_relative_to_the_file(tmp_path):
    p = tmp_path / "job.yaml"
    p.write_text("model:\n  path: m.h5\noutput:\n  dir: prj\n")
    cfg = load_config(p)
    assert cfg["model"]["path"] == str(tmp_path / "m.h5") and cfg["output"]["dir"] == str(tmp_path / "prj")


def test_bad_yaml_and_missing_file(tmp_path):
    from fpgacnn.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("model: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(p)


def test_shipped_examples_validate():
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))
    assert examples
    for ex in examples:
        load_config(ex)


def test_finetuning_and_fifo_options_are_checked():
    cfg = validate({**MINIMAL, "trim": {"augment": "flip_shift", "lr_schedule": "cosine"}, "hls": {"fifo_depth": 4}})
    assert cfg["trim"]["augment"] == "flip_shift" and cfg["hls"]["fifo_depth"] == 4
    assert validate(MINIMAL)["trim"]["augment"] == "none" and validate(MINIMAL)["hls"]["fifo_depth"] == "auto"
    with pytest.raises(ConfigError) as err:
        validate({**MINIMAL, "trim": {"augment": "rotate", "lr_schedule": "step"}, "hls": {"fifo_depth": 0}})
    text = " ".join(err.value.problems)
    for needle in ("trim.augment must be one of", "trim.lr_schedule must be one of", "hls.fifo_depth must be"):
        assert needle in text
