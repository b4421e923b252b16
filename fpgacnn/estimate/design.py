"""The hls4ml design ``generate`` would build for a QKeras model, converted in memory and estimated.

Estimating what will actually be built matters: the exact per-layer precisions of
``fpgacnn.hls.precision`` (accumulator widths from the real weights, unsigned ReLU
outputs) decide which products become DSPs, so an estimate made on hls4ml's default
types would describe another design. Nothing is written to disk and nothing is
compiled; a conversion takes about a second for a small CNN.

Per-layer reuse factors and strategies are keyed by the *Keras* layer names of the
QKeras model; the sanitized names hls4ml sees are mapped back and forth here.
"""
from __future__ import annotations

import contextlib
import io
import numbers
import tempfile
from dataclasses import dataclass, field

from fpgacnn.errors import InputError, ToolError, UnsupportedLayerError
from fpgacnn.estimate.estimator import Estimate, estimate_resources
from fpgacnn.estimate.parts import Part, get_part
from fpgacnn.hls.fifo import check_fifo_depth, set_fifo_depths
from fpgacnn.hls.fuse import folded_names, remove_identity_activations
from fpgacnn.hls.identifiers import safe_text

IO_TYPES = ("io_stream", "io_parallel")
STRATEGIES = ("Latency", "Resource")


@dataclass
class Design:
    """One hardware configuration of a QKeras model: what ``generate`` needs besides the model."""

    part: str
    clock_mhz: float
    io_type: str = "io_stream"
    backend: str = "Vitis"
    strategy: str = "Latency"  # model-wide default
    reuse_factor: int = 1  # model-wide default
    layer_reuse: dict = field(default_factory=dict)  # Keras layer name -> reuse factor
    layer_strategy: dict = field(default_factory=dict)  # Keras layer name -> "Latency" | "Resource"
    fifo_depth: str | int = "auto"  # io_stream FIFO depths, see fpgacnn.hls.fifo
    fold_activations: bool = True  # Conv/Dense round into their QActivation, see fpgacnn.hls.fuse

    def to_dict(self) -> dict:
        return {"part": self.part, "clock_mhz": self.clock_mhz, "io_type": self.io_type, "backend": self.backend,
                "strategy": self.strategy, "reuse_factor": self.reuse_factor,
                "layer_reuse": dict(self.layer_reuse), "layer_strategy": dict(self.layer_strategy),
                "fifo_depth": self.fifo_depth, "fold_activations": self.fold_activations}

    @classmethod
    def from_dict(cls, d) -> "Design":
        """The design ``to_dict`` wrote (e.g. ``fit.json``'s ``design``); wrong shapes raise ``InputError``."""
        if not isinstance(d, dict) or not isinstance(d.get("part"), str):
            raise InputError("design must be a mapping with at least 'part' (a part name)")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"design has unknown keys {sorted(unknown)}")
        for key in ("layer_reuse", "layer_strategy"):
            if not isinstance(d.get(key, {}), dict):
                raise InputError(f"design '{key}' must map layer names to values, got {d[key]!r}")
        clock = d.get("clock_mhz", 100.0)
        if isinstance(clock, bool) or not isinstance(clock, (int, float)) or not clock > 0:
            raise InputError(f"design clock_mhz must be a positive number, got {clock!r}")
        check_fifo_depth(d.get("fifo_depth", "auto"))
        if not isinstance(d.get("fold_activations", True), bool):
            raise InputError(f"design fold_activations must be true or false, got {d['fold_activations']!r}")
        return cls(**{**d, "clock_mhz": float(clock)})

    def generate_options(self) -> dict:
        """Keyword arguments of ``fpgacnn.hls.generate.generate`` that build this design."""
        return {"part": part_code(self.part), "backend": self.backend, "io_type": self.io_type,
                "clock_period_ns": 1000.0 / float(self.clock_mhz), "strategy": self.strategy,
                "reuse_factor": int(self.reuse_factor), "layer_reuse": dict(self.layer_reuse),
                "layer_strategy": dict(self.layer_strategy), "fifo_depth": self.fifo_depth,
                "fold_activations": self.fold_activations}


def part_code(part) -> str:
    """The string hls4ml gets as ``part``: a catalogue name, an ordering code or a custom part's name."""
    if isinstance(part, Part):
        return part.name
    if not isinstance(part, str) or not part.strip():
        raise InputError(f"part must be a part name such as 'xc7z020clg400-1' or a Part, got {part!r}")
    return part.strip()


@dataclass
class Prepared:
    """What does not change between designs of one model: the model with safe C++ names,
    the input grid and the exact per-layer precisions (rebuilding the model is the slow part)."""

    qmodel: object
    hmodel: object
    names: dict  # hls name -> keras name
    spec: object
    precisions: list


def prepare(qmodel, *, x=None, input_bits: int = 8, input_type=None) -> Prepared:
    """``qmodel`` made ready for ``convert``; ``input_type`` (an ``InputSpec``) or ``x`` fix
    the input grid exactly as in ``generate``. The precisions fold activations into their
    producers (``Design.fold_activations``, the default); ``hls_config_for`` recomputes
    them for a design that does not."""
    if isinstance(qmodel, Prepared):
        return qmodel
    from fpgacnn.hls.generate import sanitized_model
    from fpgacnn.hls.precision import input_spec, layer_precisions

    hmodel, names = sanitized_model(qmodel)
    spec = input_type or input_spec(x, input_bits)
    return Prepared(qmodel, hmodel, names, spec, layer_precisions(hmodel, spec.type))


def apply_layer_design(config: dict, qmodel, names: dict, layer_reuse=None, layer_strategy=None) -> dict:
    """Set per-layer reuse factors and strategies (keyed by the Keras layer names of
    ``qmodel``) in the hls4ml ``config`` of its sanitized copy (``names``: hls name -> Keras
    name), in place; returns ``config``.

    A per-layer reuse factor must be one hls4ml accepts for the layer's kernel: hls4ml
    would otherwise replace it, with a printed warning, by the closest valid one, and the
    project would not be the design that was estimated. (The model-wide default is left
    to hls4ml's rounding, which the single-factor searches rely on.)
    """
    from fpgacnn.estimate.hardware import valid_reuse_factors

    layer_reuse, layer_strategy = dict(layer_reuse or {}), dict(layer_strategy or {})
    to_hls = {keras_name: hls_name for hls_name, keras_name in names.items()}
    geometry = mult_geometry(qmodel)
    for what, per_layer in (("reuse factor", layer_reuse), ("strategy", layer_strategy)):
        for keras_name, value in per_layer.items():
            hls_name = to_hls.get(keras_name)
            if hls_name is None or hls_name not in config["LayerName"]:
                raise InputError(f"{what} given for layer '{safe_text(keras_name, 80)}', which the model "
                                 "does not have")
            if keras_name not in geometry:
                raise InputError(f"{what} given for layer '{safe_text(keras_name, 80)}', which has no multipliers "
                                 "(only Conv2D, DepthwiseConv2D and Dense layers take one)")
            if what == "strategy":
                if value not in STRATEGIES:
                    raise InputError(f"strategy of layer '{safe_text(keras_name, 80)}' must be Latency or Resource, "
                                     f"got {safe_text(repr(value), 40)}")
                config["LayerName"][hls_name]["Strategy"] = value
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
                raise InputError(f"reuse factor of layer '{safe_text(keras_name, 80)}' must be a positive integer, "
                                 f"got {safe_text(repr(value), 40)}")
            valid = valid_reuse_factors(*geometry[keras_name][:2])
            if int(value) not in valid:
                shown = ", ".join(map(str, valid)) if len(valid) <= 24 else \
                    ", ".join(map(str, valid[:12])) + ", ..., " + ", ".join(map(str, valid[-4:]))
                raise InputError(f"reuse factor {int(value)} of layer '{safe_text(keras_name, 80)}' is not one "
                                 f"hls4ml accepts for its {geometry[keras_name][0]}x{geometry[keras_name][1]} "
                                 f"kernel (valid: {shown})")
            config["LayerName"][hls_name]["ReuseFactor"] = int(value)
    return config


def hls_config_for(prepared: Prepared, design: Design) -> dict:
    """The hls4ml config ``generate`` builds, with the design's per-layer reuse factors and
    strategies applied."""
    from fpgacnn.hls.precision import hls_config, layer_precisions

    if design.strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {design.strategy!r}")
    if design.io_type not in IO_TYPES:
        raise InputError(f"io_type must be one of {', '.join(IO_TYPES)}, got {design.io_type!r}")
    precisions = prepared.precisions if design.fold_activations else \
        layer_precisions(prepared.hmodel, prepared.spec.type, fold_activations=False)
    config = hls_config(prepared.hmodel, prepared.spec, precisions, backend=design.backend,
                        strategy=design.strategy, reuse_factor=int(design.reuse_factor))
    apply_layer_design(config, prepared.qmodel, prepared.names, design.layer_reuse, design.layer_strategy)
    return config


def convert(prepared: Prepared, design: Design):
    """The in-memory hls4ml ``ModelGraph`` of the prepared model under ``design`` (nothing written)."""
    import hls4ml

    config = hls_config_for(prepared, design)
    with tempfile.TemporaryDirectory(prefix="fpgacnn-design-") as tmp:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                hls_model = hls4ml.converters.convert_from_keras_model(
                    prepared.hmodel, hls_config=config, output_dir=tmp, project_name="design",
                    backend=design.backend, part=part_code(design.part),
                    clock_period=1000.0 / float(design.clock_mhz), io_type=design.io_type)
            if design.fold_activations:
                remove_identity_activations(hls_model, only=folded_names(prepared.precisions))
            set_fifo_depths(hls_model, design.fifo_depth)
            return hls_model
        except (UnsupportedLayerError, InputError):
            raise
        except Exception as exc:  # hls4ml raises bare Exceptions for unsupported configs
            raise ToolError(f"hls4ml could not convert the model: {type(exc).__name__}: {exc}") from exc


def estimate_design(qmodel, design: Design, *, x=None, input_bits: int = 8, input_type=None,
                    part=None) -> Estimate:
    """Estimate of the design ``generate`` would write for ``qmodel`` (a QKeras model from
    ``fpgacnn.quantize``, or a ``Prepared`` one). ``part`` (a ``Part``) overrides the
    catalogue look-up of ``design.part``, for custom parts; rows carry ``keras_name``."""
    if float(design.clock_mhz) <= 0:
        raise InputError(f"clock_mhz must be positive, got {design.clock_mhz}")
    prepared = prepare(qmodel, x=x, input_bits=input_bits, input_type=input_type)
    hls_model = convert(prepared, design)
    est = estimate_resources(hls_model, part=get_part(part if part is not None else design.part),
                             clock_mhz=float(design.clock_mhz))
    names = prepared.names
    for row in est.layers:
        row["keras_name"] = names.get(row["name"], row["name"])
    return est


def mult_geometry(qmodel) -> dict:
    """``{keras layer name: (n_in, n_out, pixels)}`` of every Conv2D/Dense-like layer.

    ``n_in * n_out`` products make one output pixel (hls4ml's ``get_layer_mult_size``);
    ``pixels`` is how many input pixels an io_stream layer reads per image, counting the
    zero padding hls4ml inserts for ``padding="same"`` (a 32x32 input to a 3x3 conv is
    read as 34x34), so its initiation interval is about ``pixels * reuse_factor``.
    A Dense layer reads its (flattened) input as one beat.
    """
    out = {}
    for ly in qmodel.layers:
        cls = type(ly).__name__
        w = ly.get_weights()
        if not w:
            continue
        if cls in ("QConv2D", "Conv2D", "QDepthwiseConv2D", "DepthwiseConv2D"):
            kh, kw, cin, cout = w[0].shape
            shape = ly.input_shape
            pad = ly.get_config().get("padding") == "same"
            pixels = (int(shape[1]) + (kh - 1 if pad else 0)) * (int(shape[2]) + (kw - 1 if pad else 0))
            if "Depthwise" in cls:
                out[ly.name] = (kh * kw, cin * cout, pixels)
            else:
                out[ly.name] = (kh * kw * cin, cout, pixels)
        elif cls in ("QDense", "Dense"):
            n_in, n_out = w[0].shape
            out[ly.name] = (n_in, n_out, 1)
    return out
