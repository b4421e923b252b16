"""Random model graphs through trim -> quantize -> generate -> csim.

Every case must end in one of two ways: a clear ``FpgacnnError`` (one line, naming the
problem) or a project whose C simulation is bit-exact against the QKeras model. Anything
else (a TypeError from deep inside a stage, a crash of hls4ml, a mismatch in csim) is a bug.

The models mix layers every stage supports with ones some stage refuses (LeakyReLU, tanh,
UpSampling2D, average pooling over 3x3, residual Adds): the point is that the refusals are
clean. The CI run is small and derandomized (``FUZZ_EXAMPLES``, default 6); the long run is
``benchmarks/fuzz_long.py``, which reuses ``graph_specs`` and ``run_case`` from here.
"""
from __future__ import annotations

import contextlib
import json
import os
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

# Layers the whole chain takes, drawn three times as often as those some stage refuses, so
# most graphs get to generation and csim and the refusals still come up.
SUPPORTED = ["conv", "conv_bn", "depthwise", "separable", "maxpool", "avgpool", "relu", "dropout", "zeropad",
             "residual"]
REFUSED = ["leaky_relu", "tanh", "upsample"]
KINDS = SUPPORTED * 3 + REFUSED


@st.composite
def graph_specs(draw):
    """A JSON-able description of a small CNN, built so every shape is valid."""
    h = draw(st.integers(4, 10))
    w = draw(st.integers(4, 10))
    c = draw(st.integers(1, 3))
    layers = []
    size = [h, w]
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(KINDS))
        spec = {"kind": kind}
        if kind in ("conv", "conv_bn"):
            k = draw(st.integers(1, 3))
            pad = draw(st.sampled_from(["same", "valid"]))
            stride = draw(st.sampled_from([1, 1, 2]))
            if pad == "valid" and min(size) < k:
                pad = "same"
            spec.update(filters=draw(st.integers(1, 5)), kernel=k, padding=pad, strides=stride,
                        bias=draw(st.booleans()), act=draw(st.sampled_from(["relu", "linear"])))
            size = [(s - (k - 1 if pad == "valid" else 0) + stride - 1) // stride for s in size]
        elif kind in ("depthwise", "separable"):
            spec.update(act=draw(st.sampled_from(["relu", "linear"])), filters=draw(st.integers(1, 4)))
        elif kind in ("maxpool", "avgpool"):
            pool = draw(st.sampled_from([2, 2, 2, 3])) if kind == "avgpool" else 2
            if min(size) < pool:
                continue
            stride = draw(st.sampled_from([pool, pool, pool, 1]))
            spec.update(pool=pool, strides=stride, padding=draw(st.sampled_from(["valid", "valid", "same"])))
            size = [(s + stride - 1) // stride if spec["padding"] == "same" else (s - pool) // stride + 1
                    for s in size]
        elif kind == "zeropad":
            size = [s + 2 for s in size]
        elif kind == "upsample":
            if max(size) > 8:
                continue
            size = [2 * s for s in size]
        layers.append(spec)
    head = draw(st.sampled_from(["flatten"] * 3 + ["gap"]))
    return {"input": [h, w, c], "layers": layers, "head": head, "hidden": draw(st.sampled_from([0, 0, 4])),
            "n_out": draw(st.integers(2, 5)), "seed": draw(st.integers(0, 999)),
            "keep": draw(st.sampled_from([0.3, 0.5, 0.75, 1.0])), "bits": draw(st.sampled_from([4, 6, 8])),
            "criterion": draw(st.sampled_from(["relevance", "l1", "random"])),
            "io_type": draw(st.sampled_from(["io_stream", "io_stream", "io_parallel"]))}


def build_model(spec):
    from tensorflow import keras

    L = keras.layers
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec["seed"])
    i = keras.Input(tuple(spec["input"]), name="image")
    h = i
    for n, s in enumerate(spec["layers"]):
        kind, name = s["kind"], f"l{n}_{s['kind']}"
        if kind in ("conv", "conv_bn"):
            bn = kind == "conv_bn"
            h = L.Conv2D(s["filters"], s["kernel"], strides=s["strides"], padding=s["padding"],
                         use_bias=s["bias"], activation=None if bn else s["act"], name=name,
                         bias_initializer="random_normal" if s["bias"] else "zeros")(h)
            if bn:
                h = L.BatchNormalization(beta_initializer="random_normal", moving_mean_initializer="random_normal",
                                         moving_variance_initializer=keras.initializers.RandomUniform(0.5, 2.0),
                                         name=name + "_bn")(h)
                if s["act"] == "relu":
                    h = L.ReLU(name=name + "_relu")(h)
        elif kind == "depthwise":
            h = L.DepthwiseConv2D(3, padding="same", activation=s["act"], name=name)(h)
        elif kind == "separable":
            h = L.SeparableConv2D(s["filters"], 3, padding="same", activation=s["act"], name=name)(h)
        elif kind == "maxpool":
            h = L.MaxPooling2D(s["pool"], strides=s.get("strides"), padding=s["padding"], name=name)(h)
        elif kind == "avgpool":
            h = L.AveragePooling2D(s["pool"], strides=s.get("strides"), padding=s["padding"], name=name)(h)
        elif kind == "relu":
            h = L.Activation("relu", name=name)(h)
        elif kind == "dropout":
            h = L.Dropout(0.2, name=name)(h)
        elif kind == "zeropad":
            h = L.ZeroPadding2D(1, name=name)(h)
        elif kind == "residual":
            r = L.Conv2D(int(h.shape[-1]), 3, padding="same", activation="relu", name=name + "_a")(h)
            h = L.Add(name=name)([h, L.Conv2D(int(h.shape[-1]), 1, name=name + "_b")(r)])
        elif kind == "leaky_relu":
            h = L.LeakyReLU(0.1, name=name)(h)
        elif kind == "tanh":
            h = L.Activation("tanh", name=name)(h)
        elif kind == "upsample":
            h = L.UpSampling2D(name=name)(h)
    h = L.Flatten(name="flatten")(h) if spec["head"] == "flatten" else L.GlobalAveragePooling2D(name="gap")(h)
    if spec["hidden"]:
        h = L.Dense(spec["hidden"], activation="relu", name="hidden")(h)
    return keras.Model(i, L.Dense(spec["n_out"], name="logits")(h))


def run_case(spec, work: Path) -> tuple[str, str]:
    """``("bit-exact", "")``, ``("refused", "<ErrorClass>: <message>")``, or raises on a bug."""
    from fpgacnn import csim, generate, quantize, trim
    from fpgacnn.errors import FpgacnnError
    from fpgacnn.hls.precision import input_spec

    model = build_model(spec)
    rng = np.random.default_rng(spec["seed"])
    x = rng.random((24, *spec["input"])).astype(np.float32)
    try:
        small = trim(model, x, keep=spec["keep"], criterion=spec["criterion"], seed=spec["seed"])
        grid = input_spec(x, spec["bits"])
        q = quantize(small, spec["bits"], x=x, input_bits=spec["bits"], input_type=grid)
        project = generate(q, work / "prj", x_test=x[:8], float_model=small, name="fuzz", input_type=grid,
                           io_type=spec.get("io_type", "io_stream"), force=True)
    except FpgacnnError as exc:
        text = str(exc)
        assert text and "\n" not in text.strip(), f"multi-line error: {text!r}"
        return "refused", f"{type(exc).__name__}: {text}"
    # A project that was generated must simulate: any error from here on (the testbench does
    # not compile, crashes on an assertion in hls4ml's templates, ...) is a bug in generate.
    result = csim(project, jobs=1)
    if not result.bit_exact:
        raise AssertionError(f"csim not bit-exact: {result.mismatches} mismatches, max diff {result.max_abs_diff}")
    return "bit-exact", ""


def describe_failure(spec, exc: BaseException) -> str:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-3:])
    return f"spec {json.dumps(spec)}\n{tb}"


OUTCOMES: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report(pytestconfig):
    yield
    line = (f"fuzz: {sum(OUTCOMES.values())} cases tried: "
            + ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES.items())))
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + line)


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "6")), deadline=None, derandomize=True,
          database=None, suppress_health_check=list(HealthCheck))
@given(spec=graph_specs())
def test_random_graphs_end_clean_or_bit_exact(spec, tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    try:
        outcome, _ = run_case(spec, work)
    except Exception as exc:
        OUTCOMES["bug"] += 1
        raise AssertionError(describe_failure(spec, exc)) from exc
    OUTCOMES[outcome] += 1
