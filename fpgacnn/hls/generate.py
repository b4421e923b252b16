"""QKeras model -> hls4ml HLS project on disk, with exact test vectors and a manifest.

The project is written into a temporary directory next to ``out_dir`` and moved into place
only when complete, so a failure never leaves a half-written project behind and never
touches an existing one. Same inputs give a byte-identical tree: hls4ml's random build stamp
and the temporary path it records are rewritten before the move.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from ..atomic import deferred_signals, make_temp_dir, replace_dir
from ..errors import DataError, InputError, OutputExistsError, ToolError, UnsupportedLayerError
from . import testvectors as tv
from .identifiers import safe_identifier, safe_text
from .fifo import check_fifo_depth, fifo_depths, set_fifo_depths
from .fuse import folded_names, remove_identity_activations
from .precision import hls_config, input_spec, layer_precisions
from .project import MANIFEST, Project
from ..validate import check_hls_support, check_input_shape, check_model_weights

__all__ = ["generate", "model_sha256", "sanitized_model"]

_STAGE = "generate"
BACKENDS = ("Vitis", "Vivado")
IO_TYPES = ("io_stream", "io_parallel")
STRATEGIES = ("Latency", "Resource")
SOFTMAX = ("host", "hardware")
_HLS4ML_SUFFIXES = ("_linear", "_depthwise", "_pointwise", "_alpha", "_scale")
_HLS4ML_PREFIXES = ("clone_", "zp1d_", "zp2d_", "repack_", "bnbt_")
# names the testbench's main() uses around the input variable, and the namespaces it calls into
_TESTBENCH_LOCALS = ("in", "fin", "fout", "line", "index", "done", "count", "first", "first_value", "n_in", "p",
                     "end", "v", "skip", "argc", "argv", "main", "std", "hls", "nnet", "fpgacnn_tb")


def model_sha256(model) -> str:
    """sha256 over the model's architecture JSON and its weights (shape, dtype, bytes)."""
    h = hashlib.sha256()
    h.update(json.dumps(json.loads(model.to_json()), sort_keys=True).encode())
    for w in model.get_weights():
        w = np.ascontiguousarray(w)
        h.update(f"{w.dtype.str}{w.shape}".encode())
        h.update(w.tobytes())
    return h.hexdigest()


def sanitized_model(qmodel, softmax: bool = False):
    """The same graph rebuilt with safe C++ identifiers as layer names.

    With ``softmax`` a softmax layer is appended (hardware softmax on the logits).
    Returns ``(model, {safe_name: original_name})``.
    """
    from tensorflow import keras

    from ..quant.graph import layer_graph

    graph = layer_graph(qmodel, stage=_STAGE)
    # hls4ml reserves 'input' and names the layers it inserts after layer X: 'X_linear' (the
    # activation it splits off), 'X_depthwise' / 'X_pointwise' (separable halves), 'clone_X'
    # (io_stream fan-out), 'zp2d_X' (padding of a 'same' conv), ...; user names must not look
    # like those. The input layer's name becomes a variable in the testbench, next to its locals.
    used: set[str] = {"input", "output", *_TESTBENCH_LOCALS}

    def safe(name: str) -> str:
        ident = safe_identifier(name)
        if ident.endswith(_HLS4ML_SUFFIXES):
            ident += "_l"
        if ident.startswith(_HLS4ML_PREFIXES):
            ident = "n_" + ident
        return safe_identifier(ident, used)

    names = {}
    in_name = safe(graph.input.name)
    names[in_name] = graph.input.name
    tensors = {graph.input.name: keras.Input(shape=qmodel.input_shape[1:], name=in_name)}
    clones = []
    for node in graph.nodes:
        ly = node.layer
        new_name = safe(ly.name)
        names[new_name] = ly.name
        cfg = ly.get_config()
        cfg["name"] = new_name
        new = type(ly).from_config(cfg)
        args = [tensors[s] for s in node.inputs]
        tensors[node.name] = new(args if len(args) > 1 else args[0])
        clones.append((new, ly))
    out = tensors[graph.output]
    if softmax:
        sm_name = safe("softmax")
        names[sm_name] = "softmax"
        out = keras.layers.Activation("softmax", name=sm_name)(out)
    model = keras.Model(tensors[graph.input.name], out, name=safe_identifier(qmodel.name))
    for new, old in clones:
        new.set_weights(old.get_weights())
    return model, names


def _check_out_dir(out: Path, force: bool) -> bool:
    """True when something is there that will be replaced."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        if not force:
            raise OutputExistsError(out)
        return True
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(out)
    return out.exists()


def _check_data(qmodel, x_test, y_test, float_model, classes):
    in_shape = tuple(int(d) for d in qmodel.input_shape[1:])
    n_out = int(qmodel.output_shape[-1])
    if len(qmodel.output_shape) != 2:
        raise InputError(f"the model output must be a vector, got shape {qmodel.output_shape[1:]}")
    if x_test is not None:
        x_test = np.asarray(x_test, dtype=np.float32)
        if x_test.ndim != len(in_shape) + 1 or tuple(x_test.shape[1:]) != in_shape:
            raise DataError(f"x_test has sample shape {x_test.shape[1:]}, the model wants {in_shape}")
        if not np.all(np.isfinite(x_test)):
            raise DataError("x_test contains NaN or infinity")
    if y_test is not None:
        if x_test is None:
            raise DataError("y_test given without x_test")
        y_test = np.asarray(y_test)
        if len(y_test) != len(x_test):
            raise DataError(f"{len(x_test)} test inputs but {len(y_test)} labels")
    if float_model is not None:
        if tuple(float_model.input_shape[1:]) != in_shape or int(float_model.output_shape[-1]) != n_out:
            raise DataError("float_model's input/output shape differs from the quantized model's")
    if classes is not None:
        classes = [str(c) for c in classes]
        if len(classes) != n_out:
            raise DataError(f"{len(classes)} class names for {n_out} outputs")
    return x_test, y_test, classes, in_shape, n_out


def _text_files(root: Path):
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            yield p


def _make_reproducible(root: Path, stamp_old: str | None, stamp_new: str) -> None:
    """Rewrite the temp path and hls4ml's random stamp; drop files that cannot be made stable."""
    tmp = str(root)
    real = os.path.realpath(tmp)
    for p in list(_text_files(root)):
        # hls4ml's copy of the Keras model carries save dates (zip and HDF5 metadata); the
        # manifest's sha256 identifies the model instead.
        if p.suffix in (".pkl", ".pickle", ".keras", ".h5") or p.name.endswith(".tar.gz"):
            p.unlink()
            continue
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        new = text.replace(real, ".").replace(tmp, ".")
        # The stamp only in the files hls4ml writes it to: a blind replace could hit the same
        # 8 digits inside a weights file. In the YAML, the whole line is rewritten: the dumper
        # quoted the random stamp or not depending on whether it looked like a number.
        if stamp_old and p.name == "build_lib.sh":
            new = new.replace(stamp_old, stamp_new)
        if p.name == "hls4ml_config.yml":
            new = re.sub(r"(?m)^KerasModel:.*\n", "", new)
            new = re.sub(r"(?m)^Stamp:.*$", f"Stamp: '{stamp_new}'", new)
        if new != text:
            p.write_text(new, encoding="utf-8")


def _testbench_files(tmp: Path, qmodel, spec, x_test, y_test, float_model, n_out):
    tb = tmp / "tb_data"
    tb.mkdir(exist_ok=True)
    for old in tb.iterdir():  # ours are authoritative
        if old.is_file():
            old.unlink()
    if x_test is None:
        return {"samples": 0, "inputs": None, "expected": None, "float": None, "labels": None}
    xs = spec.snap(x_test)
    expected = np.asarray(qmodel.predict(xs, batch_size=256, verbose=0), dtype=np.float32).reshape(len(xs), -1)
    tv.write_matrix(tmp / tv.INPUTS, xs.reshape(len(xs), -1))
    tv.write_matrix(tmp / tv.EXPECTED, expected)
    info = {"samples": int(len(xs)), "inputs": tv.INPUTS, "expected": tv.EXPECTED, "float": None, "labels": None}
    if float_model is not None:
        fp = np.asarray(float_model.predict(np.asarray(x_test, np.float32), batch_size=256, verbose=0),
                        dtype=np.float32).reshape(len(xs), -1)
        tv.write_matrix(tmp / tv.FLOAT, fp)
        info["float"] = tv.FLOAT
    if y_test is not None:
        tv.write_labels(tmp / tv.LABELS, y_test)
        info["labels"] = tv.LABELS
    return info


def generate(qmodel, out_dir, part: str = "xc7z020clg400-1", backend: str = "Vitis", io_type: str = "io_stream",
             x_test=None, *, y_test=None, float_model=None, name: str | None = None, force: bool = False,
             clock_period_ns: float = 10.0, strategy: str = "Latency", reuse_factor: int = 1, classes=None,
             source_model_sha256: str | None = None, input_bits: int = 8, input_type=None,
             preprocessing: dict | None = None, softmax: str = "host", axi_stream: bool = False,
             layer_reuse: dict | None = None, layer_strategy: dict | None = None,
             fifo_depth: str | int = "auto", fold_activations: bool = True) -> Project:
    """Write the hls4ml project for ``qmodel`` into ``out_dir`` and return its ``Project``.

    ``x_test`` are float inputs; they are snapped to the input grid (see
    ``fpgacnn.hls.precision``) and, with the QKeras logits on them, become the testbench
    vectors. ``input_type`` (an ``InputSpec``) fixes the input grid, so the one used for
    quantization-aware training is the one the hardware gets; without it the grid is
    derived from ``x_test``. Refuses a non-empty ``out_dir`` unless ``force``. Does not
    compile anything. ``softmax="hardware"`` adds hls4ml's softmax after the logits (table
    sizes chosen so the argmax matches, see ``fpgacnn.hls.softmax``); the testbench then
    compares by argmax (manifest ``testbench.compare``); ``"host"`` emits bit-exact logits.
    ``axi_stream`` adds an AXI4-Stream top level for camera pipelines (8-bit pixels in,
    class index and score out; see ``fpgacnn.hls.axis``), recorded as ``project.axi_stream``.
    ``layer_reuse`` / ``layer_strategy`` (``{Keras layer name: reuse factor / "Latency" |
    "Resource"}``) override ``reuse_factor`` / ``strategy`` per Conv/Dense layer, e.g. the
    design ``fpgacnn.fit`` chose (``FitResult.generate``, ``Design.generate_options``); an
    unknown layer or a reuse factor hls4ml would not accept raises ``InputError``. The
    factors and strategies every such layer is built with go to the manifest as
    ``project.layer_reuse`` and ``project.layer_strategy``. ``fifo_depth`` sets the io_stream
    FIFO depths (``fpgacnn.hls.fifo``: ``"auto"`` makes a chain's FIFOs shallow, ``"full"``
    keeps hls4ml's whole-feature-map depths); the depths built go to ``project.fifo_depths``.
    ``fold_activations`` lets each Conv/Dense round and saturate into the QActivation that
    alone reads it, instead of a separate activation process per channel
    (``fpgacnn.hls.fuse``); the activations folded go to ``project.folded_activations``.
    """
    import fpgacnn

    from .render import render_project_files

    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if io_type not in IO_TYPES:
        raise InputError(f"io_type must be one of {', '.join(IO_TYPES)}, got {io_type!r}")
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if softmax not in SOFTMAX:
        raise InputError(f"softmax must be one of {', '.join(SOFTMAX)}, got {softmax!r}")
    if not isinstance(axi_stream, bool):
        raise InputError(f"axi_stream must be True or False, got {axi_stream!r}")
    if not isinstance(part, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", part):
        raise InputError(f"part {part!r} is not a valid FPGA part name")
    try:
        clock = float(clock_period_ns)
    except (TypeError, ValueError):
        raise InputError(f"clock_period_ns must be a number, got {clock_period_ns!r}") from None
    if not np.isfinite(clock) or clock <= 0:
        raise InputError(f"clock_period_ns must be positive, got {clock_period_ns!r}")
    if isinstance(reuse_factor, bool) or not isinstance(reuse_factor, (int, np.integer)) or reuse_factor < 1:
        raise InputError(f"reuse_factor must be a positive integer, got {reuse_factor!r}")
    check_fifo_depth(fifo_depth)
    if not isinstance(fold_activations, bool):
        raise InputError(f"fold_activations must be True or False, got {fold_activations!r}")

    out = Path(out_dir)
    check_input_shape(qmodel)
    check_model_weights(qmodel, "generate")
    check_hls_support(qmodel, io_type)
    _check_out_dir(out, force)
    x_test, y_test, classes, in_shape, n_out = _check_data(qmodel, x_test, y_test, float_model, classes)

    display = name if name is not None else qmodel.name
    top = safe_identifier(display)
    hmodel, names = sanitized_model(qmodel, softmax=softmax == "hardware")
    spec = input_type or input_spec(x_test, input_bits)
    logits = None
    if softmax == "hardware" and x_test is not None:  # the softmax tables must separate these
        logits = qmodel.predict(spec.snap(x_test), batch_size=256, verbose=0)
    precisions = layer_precisions(hmodel, spec.type, softmax=softmax == "hardware", softmax_logits=logits,
                                  fold_activations=fold_activations)
    config = hls_config(hmodel, spec, precisions, backend=backend, strategy=strategy, reuse_factor=int(reuse_factor))
    if layer_reuse is not None and not isinstance(layer_reuse, dict) or \
            layer_strategy is not None and not isinstance(layer_strategy, dict):
        raise InputError("layer_reuse and layer_strategy must map Keras layer names to values")
    from ..estimate.design import apply_layer_design, mult_geometry

    apply_layer_design(config, qmodel, names, layer_reuse, layer_strategy)
    sha = source_model_sha256 or model_sha256(qmodel)

    tmp = make_temp_dir(out.absolute().parent, out.name)
    try:
        import hls4ml

        try:
            with _quiet():
                hls_model = hls4ml.converters.convert_from_keras_model(
                    hmodel, hls_config=config, output_dir=str(tmp), project_name=top, backend=backend, part=part,
                    clock_period=clock, io_type=io_type)
                stamp_old = hls_model.config.config.get("Stamp")
                folded = remove_identity_activations(hls_model, only=folded_names(precisions))
                set_fifo_depths(hls_model, fifo_depth)
                hls_model.write()
        except (UnsupportedLayerError, InputError):
            raise
        except Exception as exc:  # hls4ml raises bare Exceptions for unsupported configs
            raise ToolError(f"hls4ml could not convert the model: {type(exc).__name__}: {exc}") from exc
        stamp_old = hls_model.config.config.get("Stamp", stamp_old)
        stamp_new = hashlib.sha256(f"{sha}:{top}".encode()).hexdigest()[:8]
        _make_reproducible(tmp, stamp_old, stamp_new)

        tb = _testbench_files(tmp, qmodel, spec, x_test, y_test, float_model, n_out)
        final = precisions[-1].result
        built = _built_layers(hls_model, names, mult_geometry(qmodel), strategy, int(reuse_factor))
        manifest = {
            "fpgacnn_version": fpgacnn.__version__,
            "project": {"name": top, "display_name": safe_text(display), "top": top, "backend": backend,
                        "io_type": io_type, "part": part, "clock_period_ns": clock, "strategy": strategy,
                        "reuse_factor": int(reuse_factor), "axi_stream": axi_stream,
                        "layer_reuse": {n: rf for n, (rf, _) in built.items()},
                        "layer_strategy": {n: st for n, (_, st) in built.items()},
                        "fifo_depth": fifo_depth, "fifo_depths": fifo_depths(hls_model),
                        "folded_activations": [safe_text(names.get(n, n)) for n in folded]},
            "model": {"name": safe_text(qmodel.name), "sha256": sha, "params": int(qmodel.count_params()),
                      "input_shape": [int(d) for d in in_shape], "n_outputs": n_out,
                      "classes": classes if classes is not None else [str(i) for i in range(n_out)]},
            "input": spec.manifest(),
            "output": {"precision": final.cpp(), "softmax": softmax,
                       "float32_exact": all(lp.float32_exact for lp in precisions)},
            "precision": {"layers": [lp.manifest(safe_text(names.get(lp.name, lp.name))) for lp in precisions]},
            "testbench": {**tb, "compare": "argmax" if softmax == "hardware" else "exact"},
        }
        if preprocessing:  # how camera images became model inputs; the camera side must match it
            manifest["preprocessing"] = json.loads(json.dumps(preprocessing, default=str))
        from ..estimate.summary import manifest_block  # advisory: records a failure, never raises

        manifest["estimate"] = manifest_block(hls_model, part, 1000.0 / clock)
        (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n", encoding="utf-8")
        render_project_files(tmp, manifest)
        replace_dir(tmp, out, force=force)
    except BaseException:
        with deferred_signals():  # a second Ctrl-C must not cut the cleanup short
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Project(dir=out, name=top, manifest=manifest)


def _built_layers(hls_model, names: dict, geometry: dict, strategy: str, reuse_factor: int) -> dict:
    """``{layer name: (reuse factor, strategy)}`` of every Conv/Dense layer as hls4ml will
    build it (it rounds a model-wide factor that does not suit a layer to a valid one)."""
    out = {}
    for hls_name, keras_name in names.items():
        if keras_name not in geometry:
            continue
        layer = hls_model.graph.get(hls_name)
        rf = layer.get_attr("reuse_factor", reuse_factor) if layer is not None else reuse_factor
        st = str(layer.get_attr("strategy", strategy)) if layer is not None else strategy
        out[safe_text(keras_name)] = (int(rf), "Resource" if st.lower() == "resource" else "Latency")
    return out


class _quiet:
    """Silence hls4ml's prints (it reports every layer on stdout)."""

    def __enter__(self):
        import contextlib

        self._buf = io.StringIO()
        self._cm = contextlib.redirect_stdout(self._buf)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)
