"""The job file behind ``fpgacnn run CONFIG``: a YAML description of one pipeline run.

The whole file is validated before any work starts, and every problem is reported at
once: a misspelt key names the key and lists the valid ones, so a typo never silently
falls back to a default after an hour of fine-tuning.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from .errors import InputError


class ConfigError(InputError):
    def __init__(self, path, problems: list[str]):
        self.problems = problems
        head = f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''} in the config"
        super().__init__(head + ": " + "; ".join(problems))


def _num(lo=None, hi=None, lo_open=False, integer=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            return f"must be {'an integer' if integer else 'a number'}, got {v!r}"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'>' if lo_open else '>='} {lo}, got {v}"
        if hi is not None and v > hi:
            return f"must be <= {hi}, got {v}"
        return None
    return check


def _choice(*options):
    return lambda v: None if v in options else f"must be one of {', '.join(map(str, options))}; got {v!r}"


def _type(*types):
    names = "/".join(t.__name__ for t in types)
    return lambda v: None if isinstance(v, types) and not isinstance(v, bool) or bool in types and isinstance(v, bool) else f"must be {names}, got {v!r}"


def _fifo_depth(v):
    if v in ("auto", "full") or isinstance(v, int) and not isinstance(v, bool) and v >= 1:
        return None
    return f"must be 'auto', 'full' or a positive integer; got {v!r}"


def _size(v):
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= 4096 for i in v)):
        return f"must be [height, width] with integers in 1..4096, got {v!r}"
    return None


# section -> key -> (default, check). None default = optional.
SCHEMA: dict[str, dict[str, tuple]] = {
    "model": {"path": (None, _type(str)), "builtin": (None, _choice("small_vgg")),
              "epochs": (40, _num(0, 10000, integer=True)), "allow_code": (False, _type(bool))},
    "data": {"source": ("digits", _choice("digits", "npz", "folder")), "path": (None, _type(str)),
             "image_size": (None, _size), "color_mode": ("rgb", _choice("rgb", "grayscale")),
             "scale": (1.0 / 256.0, _num(0, lo_open=True)), "offset": (0.0, _num()),
             "test_fraction": (0.2, _num(0, 0.9, lo_open=True)), "seed": (0, _num(0, integer=True))},
    "trim": {"keep": (0.5, _num(0, 1, lo_open=True)),
             "criterion": ("relevance", _choice("relevance", "relevance_weighted", "l1", "apoz", "random")),
             "finetune_epochs": (10, _num(0, 10000, integer=True)), "representative": (500, _num(1, integer=True)),
             "augment": ("none", _choice("none", "shift", "flip_shift")),
             "lr_schedule": ("constant", _choice("constant", "cosine"))},
    "quantize": {"bits": (8, _num(2, 16, integer=True)), "qat_epochs": (10, _num(0, 10000, integer=True))},
    "target": {"part": ("xc7z020clg400-1", _type(str)), "clock_mhz": (100.0, _num(0, 1000, lo_open=True)),
               "fps": (30.0, _num(0, lo_open=True))},
    "hls": {"backend": ("Vitis", _choice("Vitis", "Vivado")), "io_type": ("io_stream", _choice("io_stream", "io_parallel")),
            "name": ("myproject", _type(str)), "fifo_depth": ("auto", _fifo_depth)},
    "csim": {"samples": (200, _num(1, integer=True))},
    "output": {"dir": (None, _type(str)), "force": (False, _type(bool))},
}


def _unknown(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key '{key}'{hint}; valid keys: {', '.join(sorted(valid))}"


def validate(raw, source="config") -> dict:
    """A complete config (defaults filled in) or a ConfigError listing every problem."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the top level must be a mapping of sections"])
    cfg: dict = {}
    for section in raw:
        if section not in SCHEMA:
            problems.append(_unknown(str(section), SCHEMA))
    for section, keys in SCHEMA.items():
        given = raw.get(section) or {}
        if not isinstance(given, dict):
            problems.append(f"section '{section}' must be a mapping, got {given!r}")
            given = {}
        cfg[section] = {}
        for key in given:
            if key not in keys:
                problems.append(f"{section}: " + _unknown(str(key), keys))
        for key, (default, check) in keys.items():
            value = given.get(key, default)
            if key in given and value is not None:
                msg = check(value)
                if msg:
                    problems.append(f"{section}.{key} {msg}")
            cfg[section][key] = value
    m, d = cfg["model"], cfg["data"]
    if (m["path"] is None) == (m["builtin"] is None):
        problems.append("model: give exactly one of 'path' (a trained model) or 'builtin' (train one)")
    if d["source"] in ("npz", "folder") and not d["path"]:
        problems.append(f"data.path is required when data.source is '{d['source']}'")
    if d["source"] == "folder" and not d["image_size"]:
        problems.append("data.image_size is required when data.source is 'folder'")
    if not cfg["output"]["dir"]:
        problems.append("output.dir is required")
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file '{path}' does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"'{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
    cfg = validate(raw, str(path))
    base = path.parent
    for section, key in (("model", "path"), ("data", "path"), ("output", "dir")):
        if cfg[section][key] and not Path(cfg[section][key]).is_absolute():
            cfg[section][key] = str(base / cfg[section][key])
    return cfg
