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
import tempfile
from dataclasses import dataclass, field

from fpgacnn.errors import InputError, ToolError, UnsupportedLayerError
from fpgacnn.estimate.estimator import Estimate, estimate_resources
from fpgacnn.estimate.parts import Part, get_part

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

    def to_dict(self) -> dict:
        return {"part": self.part, "clock_mhz": self.clock_mhz, "io_type": self.io_type, "backend": self.backend,
                "strategy": self.strategy, "reuse_factor": self.reuse_factor,
                "layer_reuse": dict(self.layer_reuse), "layer_strategy": dict(self.layer_strategy)}


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
    the input grid exactly as in ``generate``."""
    if isinstance(qmodel, Prepared):
        return qmodel
    from fpgacnn.hls.generate import sanitized_model
    from fpgacnn.hls.precision import input_spec, layer_precisions

    hmodel, names = sanitized_model(qmodel)
    spec = input_type or input_spec(x, input_bits)
    return Prepared(qmodel, hmodel, names, spec, layer_precisions(hmodel, spec.type))


def hls_config_for(prepared: Prepared, design: Design) -> dict:
    """The hls4ml config ``generate`` builds, with the design's per-layer reuse factors and
    strategies applied."""
    from fpgacnn.hls.precision import hls_config

    if design.strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {design.strategy!r}")
    if design.io_type not in IO_TYPES:
        raise InputError(f"io_type must be one of {', '.join(IO_TYPES)}, got {design.io_type!r}")
    config = hls_config(prepared.hmodel, prepared.spec, prepared.precisions, backend=design.backend,
                        strategy=design.strategy, reuse_factor=int(design.reuse_factor))
    to_hls = {keras_name: hls_name for hls_name, keras_name in prepared.names.items()}
    for what, per_layer, key in (("reuse factor", design.layer_reuse, "ReuseFactor"),
                                 ("strategy", design.layer_strategy, "Strategy")):
        for keras_name, value in per_layer.items():
            hls_name = to_hls.get(keras_name)
            if hls_name is None or hls_name not in config["LayerName"]:
                raise InputError(f"{what} given for layer '{keras_name}', which the model does not have")
            if key == "Strategy" and value not in STRATEGIES:
                raise InputError(f"strategy of layer '{keras_name}' must be Latency or Resource, got {value!r}")
            if key == "ReuseFactor" and (isinstance(value, bool) or int(value) != value or int(value) < 1):
                raise InputError(f"reuse factor of layer '{keras_name}' must be a positive integer, got {value!r}")
            config["LayerName"][hls_name][key] = value if key == "Strategy" else int(value)
    return config


def convert(prepared: Prepared, design: Design):
    """The in-memory hls4ml ``ModelGraph`` of the prepared model under ``design`` (nothing written)."""
    import hls4ml

    config = hls_config_for(prepared, design)
    with tempfile.TemporaryDirectory(prefix="fpgacnn-design-") as tmp:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return hls4ml.converters.convert_from_keras_model(
                    prepared.hmodel, hls_config=config, output_dir=tmp, project_name="design",
                    backend=design.backend, part=part_code(design.part),
                    clock_period=1000.0 / float(design.clock_mhz), io_type=design.io_type)
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
