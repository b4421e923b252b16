"""Check the resource/latency estimator against real Vivado HLS reports.

Rebuilds the two SVHN CNNs of ``shared/reference-reports/README.md`` (random weights,
50% magnitude-pruned, output_dense left dense as in the hls4ml tutorial the models come
from), converts them with the reports' settings (Vivado backend, io_stream, Latency,
ReuseFactor 1, xcu250-figd2104-2L-e, 5 ns) and compares the estimate per instance and
in total; then the hls4ml unit baselines whose models the README pins down.

The reports were made with hls4ml of 2021, whose default result and accumulator type
was the model precision ap_fixed<16,6> (the FIFO widths in csynth.rpt show it); today's
hls4ml infers wider "auto" types, so the conversion here sets result/accum to
ap_fixed<16,6> for every non-activation layer to build the same design.

Run: ``.venv/bin/python benchmarks/estimator_validation.py`` (about 1 min, no training).
Writes ``benchmarks/results/estimator_validation.{json,md}``.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "reference-reports"
RESULTS = ROOT / "benchmarks" / "results"

import numpy as np  # noqa: E402


def _prune(kernel, rng_sparsity=0.5):
    k = kernel.copy()
    thr = np.quantile(np.abs(k), rng_sparsity)
    k[np.abs(k) < thr] = 0.0
    return k


def _bn_weights(rng, n):
    return [rng.uniform(0.6, 1.4, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n), rng.uniform(0.5, 1.5, n)]


def build_svhn(quantized: bool, seed=0):
    import tensorflow as tf
    from tensorflow.keras import layers as KL

    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = inp = KL.Input((32, 32, 3), name="input_1")
    if quantized:
        from qkeras import QActivation, QConv2DBatchnorm, QDense, quantized_bits, quantized_relu

        kq = lambda: quantized_bits(6, 0, alpha=1)  # noqa: E731
    for i, f in enumerate([16, 16, 24]):
        if quantized:
            x = QConv2DBatchnorm(f, 3, kernel_quantizer=kq(), bias_quantizer=kq(), use_bias=True,
                                 name=f"fused_convbn_{i}")(x)
            x = QActivation(quantized_relu(6), name=f"conv_act_{i}")(x)
        else:
            x = KL.Conv2D(f, 3, use_bias=False, name=f"conv_{i}")(x)
            x = KL.BatchNormalization(name=f"bn_conv_{i}")(x)
            x = KL.Activation("relu", name=f"conv_act_{i}")(x)
        x = KL.MaxPooling2D(2, name=f"pool_{i}")(x)
    x = KL.Flatten(name="flatten")(x)
    for i, u in enumerate([42, 64]):
        if quantized:
            x = QDense(u, use_bias=False, kernel_quantizer=kq(), name=f"dense_{i}")(x)
        else:
            x = KL.Dense(u, use_bias=False, name=f"dense_{i}")(x)
        x = KL.BatchNormalization(name=f"bn_dense_{i}")(x)
        x = (QActivation(quantized_relu(6), name=f"dense_act_{i}") if quantized
             else KL.Activation("relu", name=f"dense_act_{i}"))(x)
    x = KL.Dense(10, name="output_dense")(x)
    x = KL.Activation("softmax", name="output_softmax")(x)
    model = tf.keras.Model(inp, x)
    for layer in model.layers:
        w = layer.get_weights()
        if not w:
            continue
        names = [v.name.split("/")[-1].split(":")[0] for v in layer.weights]
        new = []
        bn = iter(_bn_weights(rng, w[0].shape[-1]))
        for name, arr in zip(names, w):
            if name == "kernel" and layer.name != "output_dense":
                arr = _prune(arr)
            elif name in ("gamma", "beta", "moving_mean", "moving_variance"):
                arr = next(bn).astype(arr.dtype)
            elif name == "bias" and layer.name != "output_dense":
                arr = rng.normal(0, 0.05, arr.shape).astype(arr.dtype)
            new.append(arr)
        layer.set_weights(new)
    return model


def convert(model, io_type="io_stream", legacy_types=True, strategy="Latency", reuse_factor=1,
            part="xcu250-figd2104-2L-e", clock_period=5, default_precision=None, backend="Vivado"):
    import tempfile

    import hls4ml

    kw = {"default_precision": default_precision} if default_precision else {}
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend, **kw)
    cfg["Model"]["Strategy"] = strategy
    cfg["Model"]["ReuseFactor"] = reuse_factor
    for name, lc in cfg["LayerName"].items():
        lc["Strategy"] = strategy
        lc["ReuseFactor"] = reuse_factor
        prec = lc.get("Precision")
        # hls4ml fuses a BatchNormalization into the Conv/Dense before it only when that
        # layer's result type is 'auto'; the fused layer then takes the BN's result type
        fused_into_next = f"bn_{name}" in cfg["LayerName"]
        if legacy_types and isinstance(prec, dict) and "act" not in name and "softmax" not in name:
            if "result" in prec and not fused_into_next:
                prec["result"] = "ap_fixed<16,6>"
            if "accum" in prec:
                prec["accum"] = "ap_fixed<16,6>"
    with tempfile.TemporaryDirectory() as tmp:
        hls_model = hls4ml.converters.convert_from_keras_model(
            model, hls_config=cfg, io_type=io_type, backend=backend, part=part, clock_period=clock_period,
            output_dir=tmp)
    if legacy_types:
        # a Conv/Dense with a fused BatchNormalization keeps today's inferred wide result type;
        # the 2021 design wrote ap_fixed<16,6> there too (csynth.rpt FIFO widths)
        from hls4ml.model.types import FixedPrecisionType

        for layer in hls_model.get_layers():
            var = layer.get_output_variable()
            if layer.class_name in ("Conv2D", "Dense") and getattr(var.type.precision, "width", 0) > 16:
                var.type.precision = FixedPrecisionType(16, 6)
    return hls_model


MD_HEAD = """# Estimator validation

Generated by `benchmarks/estimator_validation.py` against `shared/reference-reports`
(Vivado HLS 2020.1, xcu250, 5 ns). SVHN models are rebuilt with random weights
(glorot init, random BN statistics, 50% magnitude pruning except output_dense); rows
`total (HLS)` are the targets, `total (Vivado synth)` is for reference (post-synthesis
LUT counts are about half of HLS's). Per-instance rows exclude FIFOs (csynth.rpt lists
them apart). Error = (estimated - reported) / reported.

"""
MD_SENS = """
## 6-bit DSP: weight distribution or rule? (kernel-scale sensitivity)

The DSP rule decides per weight *value* (a product with a constant weight goes to a
DSP when input bits x the signed width of the constant's odd part >= 96), so a
stand-in with the wrong weight magnitudes gets the DSP count wrong even where the
rule is right. Below, each 6-bit layer's stand-in kernel is scaled by k (the
reference's kernels were trained, with BatchNormalization folded in; ours are
glorot-initialised). DSP and LUT of a layer move together with k, so a single k at
which both land near the report means the rule is consistent with that layer.

"""
MD_TAIL = """
## Where it misses and why

- **6-bit SVHN DSP (-60%, 137 vs 340): rule unchanged, cause split in two.** Most of the
  203 missing DSPs are fused_convbn_1 (105) and output_dense (83). The sensitivity
  table above separates the causes. For the four layers with 16-bit inputs and 6-bit
  constants, one kernel scale per layer brings DSP *and* LUT near the report together
  (conv 0 at k=1: 22 vs 27 DSP, 7230 vs 7354 LUT; conv 1 at k=2: 110 vs 105 DSP,
  38216 vs 42854 LUT; conv 2 and dense 0 at k=1 to 1.5: 0 to 13 vs 5 and 6 DSP): the
  rule is consistent with them and the stand-in kernels are too small (trained kernels
  with BatchNormalization folded in are larger than glorot-initialised ones). The output
  layer (6-bit unsigned input x 16-bit constants) is different: the rule gives none of
  its 83 DSPs up to k=8 (weights up to about +-4) and only reaches them around k=20,
  where its LUT count moves away from the report. Vivado HLS binds some narrow-input x
  wide-constant products to DSPs by a criterion that is not a threshold on the product
  of the widths. Single-threshold alternatives were checked against all six 6-bit
  layers (on the result width a + s, on the wider or narrower operand, on the constant's
  CSD digit count, on the shift-add LUT cost) and each contradicts conv 0 (only odd
  parts >= 17 on DSPs), dense_1 (6u x 6-bit: 0 DSP) or output_dense; a two-threshold
  rule (narrow operand >= 6 bits and wide operand >= about 11) would fit, but its second
  threshold would be set by this one layer alone, i.e. curve-fitted. So the rule is
  left as is and this is a known under-estimate: a layer with <= 8-bit inputs and
  >= 12-bit weights may put some 10-15% of its products on DSPs that the estimate
  counts as LUTs.
- **Float SVHN DSP (+18%).** Same cause in the other direction: after pruning, our
  random weights keep more wide constants than the trained ones did (conv 1: 1037 vs
  786, conv 2: 1496 vs 1300, dense 0: 1844 vs 1394; conv 0, dense 1 and output_dense
  within 8%).
- **Per-instance LUT/FF.** Totals are within 11%, but single layers miss by up to
  ~50% (e.g. float dense LUT low, 6-bit dense FF high): LUT/FF per multiplication is one
  shared set of coefficients for all layers.
- **Dense latency.** The first dense reads 4 stream beats then computes; our adder
  tree depth is 1 cycle short for 96 inputs (3 vs 7 cycles). Totals are unaffected
  (dataflow latency is dominated by the first conv: 1027 of 1044 cycles).
- **Unit baselines.** DSP/BRAM/latency match; LUT/FF of the tiny dense designs are
  dominated by fixed overheads we model only roughly; the Resource conv2d (RF 1)
  under-estimates FF by 86% (the resource kernel registers every product).
- **Types.** The references were built with 2021 hls4ml, whose default result and
  accumulator type was ap_fixed<16,6>; the script sets those types so the rebuilt
  design matches the reports' FIFO widths. The pooling baseline is not used: its input
  shape is not documented.

## Calibrated coefficients (fpgacnn/estimate/layers.py, shared by all layers)

`DSP_MIN_PRODUCT_BITS=96`, `FIFO_SRL_MAX_DEPTH=16`, `ADD_LUT_PER_BIT=1.0`,
`SHIFTADD_LUT_PER_BIT=1.0`, `DSP_MULT_LUT=12`, `MUL_FF_PER_BIT=0.095` (x2 in conv
kernels), FIFO FF/LUT per FIFO, relu/pool/softmax LUT and FF per lane, softmax table
copies `ceil(n/4)+1`.
"""

_KIND = [("conv_2d_cl", "conv"), ("dense", "dense"), ("pooling2d_cl", "pool"), ("relu", "relu"),
         ("softmax", "softmax"), ("normalize", "bn")]


def _est_kind(row):
    c = row["class_name"]
    if "Conv" in c:
        return "conv"
    if c == "Dense":
        return "dense"
    if "Pooling" in c:
        return "pool"
    if c == "Softmax":
        return "softmax"
    if c == "BatchNormalization":
        return "bn"
    if c == "Activation":
        return "relu"
    return None


def match_instances(est, rep):
    """Pair estimated layers with report instances of the same kind in dataflow order."""
    by_kind = {}
    for inst in rep["instances"]:
        for prefix, kind in _KIND:
            if inst["instance"].startswith(prefix):
                cfg = int(re.search(r"config(\d+)", inst["instance"]).group(1))
                by_kind.setdefault(kind, []).append((cfg, inst))
    for v in by_kind.values():
        v.sort(key=lambda t: t[0])
    pairs, seen = [], {}
    for row in est.layers:
        kind = _est_kind(row)
        if kind is None:
            continue
        k = seen.get(kind, 0)
        if k < len(by_kind.get(kind, [])):
            pairs.append((row, by_kind[kind][k][1]))
        seen[kind] = k + 1
    return pairs


# Kernel scales tried per 6-bit SVHN layer: the stand-in weights are untrained, the reference's
# were trained (BN folded into the conv kernels, L1-regularised), so their magnitude is unknown.
SCALES = {"fused_convbn_0": (1, 1.5, 2, 3), "fused_convbn_1": (1, 1.5, 2, 3), "fused_convbn_2": (1, 1.5, 2, 3),
          "dense_0": (1, 1.5, 2, 3), "dense_1": (1, 2, 3), "output_dense": (1, 4, 8, 16, 24)}


def weight_scale_sensitivity(rep):
    """DSP and LUT of each 6-bit SVHN conv/dense layer with its stand-in kernel scaled by k,
    next to the report: a layer whose DSP *and* LUT both match at one plausible k is
    explained by the weight distribution; one that matches at no k is a rule miss."""
    from fpgacnn.estimate import estimate_resources

    model = build_svhn(True)
    reported = {}
    for row, inst in match_instances(estimate_resources(convert(model)), rep):
        reported[row["name"]] = inst
    out = []
    for name, scales in SCALES.items():
        layer = model.get_layer(name)
        orig = layer.get_weights()
        for k in scales:
            layer.set_weights([orig[0] * k] + orig[1:])
            row = [r for r in estimate_resources(convert(model)).layers if r["name"] == name][0]
            out.append({"layer": name, "scale": k, "DSP": row["DSP"], "LUT": row["LUT"] - row["fifo"]["LUT"],
                        "reported_DSP": reported[name]["DSP"], "reported_LUT": reported[name]["LUT"]})
        layer.set_weights(orig)
    return out


def main():
    from fpgacnn.estimate import estimate_resources, parse_report

    if not SHARED.is_dir():
        print(f"reference reports not found at {SHARED}", file=sys.stderr)
        return 1
    cases, per_instance, notes = [], [], []
    for folder, quantized in (("svhn-cnn-pruned", False), ("svhn-cnn-pruned-quantized", True)):
        model = build_svhn(quantized)
        est = estimate_resources(convert(model))
        rep = parse_report(SHARED / folder / "csynth.rpt")
        viv = parse_report(SHARED / folder / "vivado_synth.rpt")
        for res in ("DSP", "BRAM_18K", "LUT", "FF", "latency_cycles", "ii_cycles"):
            if res == "ii_cycles":
                continue
            cases.append({"name": f"{folder}/total (HLS)", "resource": res,
                          "estimated": float(est.total[res]), "reported": float(rep["total"][res])})
        for res in ("DSP", "BRAM_18K", "LUT", "FF"):
            cases.append({"name": f"{folder}/total (Vivado synth)", "resource": res,
                          "estimated": float(est.total[res]), "reported": float(viv["total"][res])})
        cases.append({"name": f"{folder}/interval", "resource": "latency_cycles",
                      "estimated": float(est.total["ii_cycles"]), "reported": float(rep["total"]["ii_cycles"])})
        fifo_est = {k: sum(r["fifo"][k] for r in est.layers) for k in ("BRAM_18K", "LUT", "FF")}
        for k in ("BRAM_18K", "LUT", "FF"):
            cases.append({"name": f"{folder}/FIFOs", "resource": k, "estimated": float(fifo_est[k]),
                          "reported": float(rep["sections"]["FIFO"][k])})
        for row, inst in match_instances(est, rep):
            for res in ("DSP", "BRAM_18K", "LUT", "FF", "latency_cycles"):
                rep_v = inst[res]
                est_v = row[res] - (row["fifo"].get(res, 0) if res in row["fifo"] else 0)
                c = {"name": f"{folder}/{row['name']}~{inst['instance'].replace('_U0', '')}", "resource": res,
                     "estimated": float(est_v), "reported": float(rep_v)}
                cases.append(c)
                per_instance.append(c)
        print(folder)
        print(est.summary())

    # hls4ml unit baselines whose models the README pins down
    base = SHARED / "hls4ml-unit-baselines"
    import tensorflow as tf
    from tensorflow.keras import layers as KL

    tf.keras.utils.set_random_seed(1)
    dense = tf.keras.Sequential([KL.Dense(2, input_shape=(1,), name="Dense",
                                          kernel_initializer=tf.keras.initializers.RandomUniform(1, 10)),
                                 KL.Activation("elu", name="Activation")])
    conv = tf.keras.Sequential([KL.Conv2D(32, (4, 4), strides=(4, 4), padding="same", input_shape=(28, 28, 3),
                                          kernel_initializer="normal", use_bias=False)])
    dw = tf.keras.Sequential([KL.DepthwiseConv2D((3, 3), input_shape=(32, 32, 3))])
    unit = [
        ("Vivado-2020.1-test_keras_api_test_dense_io_parallel-Vivado.json", dense, dict(io_type="io_parallel")),
        ("Vivado-2020.1-test_keras_api_test_dense_io_stream-Vivado.json", dense, dict(io_type="io_stream")),
        ("Vivado-2020.1-test_keras_api_test_conv2d_io_parallel-Vivado-Resource-same-channels_last.json", conv,
         dict(io_type="io_parallel", strategy="Resource")),
        ("Vivado-2020.1-test_keras_api_test_depthwise2d_io_stream-Vivado.json", dw,
         dict(io_type="io_stream", default_precision="fixed<32,12>")),
    ]
    for fname, model, kw in unit:
        if not (base / fname).is_file():
            continue
        rep = parse_report(base / fname)
        est = estimate_resources(convert(model, legacy_types=False, **kw))
        for res in ("DSP", "BRAM_18K", "LUT", "FF", "latency_cycles"):
            cases.append({"name": f"unit/{fname.replace('test_keras_api_test_', '').replace('.json', '')}",
                          "resource": res, "estimated": float(est.total[res]),
                          "reported": float(rep["total"][res])})

    sensitivity = weight_scale_sensitivity(parse_report(SHARED / "svhn-cnn-pruned-quantized" / "csynth.rpt"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "estimator_validation.json").write_text(
        json.dumps({"cases": cases, "weight_scale_sensitivity": sensitivity}, indent=1) + "\n")
    lines = ["| case | resource | estimated | reported | error |", "|---|---|---:|---:|---:|"]
    for c in cases:
        err = (c["estimated"] - c["reported"]) / c["reported"] * 100 if c["reported"] else float("nan")
        lines.append(f"| {c['name']} | {c['resource']} | {c['estimated']:.0f} | {c['reported']:.0f} | {err:+.0f}% |")
    table = "\n".join(lines)
    sens = ["| layer | kernel scale | DSP | reported DSP | LUT | reported LUT |", "|---|---:|---:|---:|---:|---:|"]
    for r in sensitivity:
        sens.append(f"| {r['layer']} | {r['scale']:g} | {r['DSP']} | {r['reported_DSP']} | {r['LUT']:.0f} | "
                    f"{r['reported_LUT']:.0f} |")
    (RESULTS / "estimator_validation.md").write_text(MD_HEAD + table + "\n" + MD_SENS + "\n".join(sens) + "\n"
                                                     + MD_TAIL)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
