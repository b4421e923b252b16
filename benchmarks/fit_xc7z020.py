"""Fit the CIFAR-10 baseline to a Zynq-7020 (xc7z020clg400-1) at >= 30 fps and 100 MHz.

``fpgacnn.fit`` searches trim level (relevance trimming + distilled fine-tuning), bit
width (QKeras QAT) and per-layer reuse factors so that every resource stays at or
below 80% of the part by the fpgacnn estimator and the estimated initiation interval
gives at least 30 images per second; the most accurate design on the validation split
(carved out of train/) wins, and only then is it scored on test/.

The baseline is the VGG16-layout CNN of ``benchmarks/trim_cifar10.py``
(``benchmarks/work/cifar10_baseline.h5``, widths 16-32-64-128-128). Resources and
speed are estimates of the hls4ml design fpgacnn generates (io_stream, 16-deep FIFOs
in this chain, see ``fpgacnn.hls.fifo``), not vendor synthesis.

    nice -n 10 .venv/bin/python benchmarks/fit_xc7z020.py      # an hour or more on 2 cores (wall time in the results)
    nice -n 10 .venv/bin/python benchmarks/fit_xc7z020.py --stand-in --quick   # script check, ~5 min

``--stand-in`` trains a same-layout model for two epochs when the baseline is missing
and writes to ``benchmarks/work/`` instead of ``benchmarks/results/``.
Writes ``benchmarks/results/fit_xc7z020.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import cifar10  # noqa: E402

RESULTS = cifar10.ROOT / "benchmarks" / "results"
BASELINE = cifar10.WORK / "cifar10_baseline.h5"
PART, FPS, CLOCK_MHZ, MAX_UTILIZATION = "xc7z020clg400-1", 30.0, 100.0, 0.8
SETTINGS = {
    "seed": 0,
    # reaches higher than before: with each ReLU folded into its convolution's output cast
    # (fpgacnn.hls.fuse) a kept kernel costs fewer LUTs
    "keep_grid": [0.5, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15],
    "bits_grid": [8, 6, 4],
    "finetune_images": 45000,  # the whole training split (seeded subset when smaller)
    "finetune_epochs": 24,  # distillation per candidate, spread over the cuts (8 each, as in trim_cifar10.py)
    "qat_epochs": 8,  # quantization-aware training after it
    # distillation only (QAT keeps its recipe): a new flipped/shifted view of the images every
    # epoch, teacher rerun on it, and the learning rate decayed to zero
    "finetune_options": {"augment": "flip_shift", "lr_schedule": "cosine"},
    "max_finetune": 2,
    "representative": 1000,
    "batch_size": 128,
    "learning_rate": 1e-3,
    # the trimming benchmark's best recipe (trim_cifar10.md): relevance weighted by the consumer
    # weights, one global threshold over all layers on score per square root of a kernel's
    # parameter cost, at least 4 kernels each; the screened allocation reached in 3 re-scored
    # cuts. The LUTs the search runs out of are mostly per channel, but a network that keeps
    # its cheap early kernels is the more accurate one at any size (trim_cifar10_allocation.md).
    # Each layer's scores are replaced by their quantiles (normalize="rank") before the threshold,
    # so the cost grades how many kernels a layer keeps: better for cuts this deep
    # (trim_cifar10_rank.md; here 74.2 % test against 72.4 % with "mean", fit_xc7z020_mean.md).
    "trim_options": {"criterion": "relevance_weighted", "ranking": "global", "cost": "sqrt_params",
                     "normalize": "rank", "min_kernels": 4, "rounds": 3},
}
# Runs of the current settings that differ only in --trim, and what each changes.
VARIANTS = [
    ("fit_xc7z020", "the default (`--trim global`): scores normalised by rank within each layer"),
    ("fit_xc7z020_mean", "scores normalised by their mean within each layer, the library's default "
                         "(`--trim mean`)"),
]
# Earlier results kept beside this one, and how each differed from the current settings.
EARLIER = [
    ("fit_xc7z020_replanned", "ReLUs folded; allocation re-planned at every cut by score alone (no cost), "
                              "12 epochs of distillation and 12 of QAT"),
    ("fit_xc7z020_relu_layers", "each ReLU a dataflow process of its own, allocation as in the previous line, "
                                "keep grid up to 0.3"),
    ("fit_xc7z020_layer", "as in the previous line, but the paper's relevance and the same fraction kept in "
                          "every layer (`--trim layer`)"),
]
# --trim layer: an earlier result, the paper's relevance with the same fraction kept per layer
# --trim mean: the library's default normalisation, each layer's scores divided by their mean
TRIM_VARIANTS = {"global": ("fit_xc7z020", None),
                 "layer": ("fit_xc7z020_layer", {"criterion": "relevance", "ranking": "layer", "rounds": 1}),
                 "mean": ("fit_xc7z020_mean", {**SETTINGS["trim_options"], "normalize": "mean"})}
QUICK = {"keep_grid": [0.2, 0.125], "bits_grid": [6, 4], "finetune_images": 4000, "finetune_epochs": 1, "qat_epochs": 1,
         "max_finetune": 1, "representative": 300}
# Published designs on the same chip, as given in the issue this benchmark answers.
PUBLISHED = [
    {"design": "hls4ml ResNet-style CNN", "accuracy": 0.835, "latency_ms": 27.3, "LUT": None, "BRAM_18K": None,
     "DSP": None},
    {"design": "FINN CNV (binarised)", "accuracy": 0.845, "latency_ms": 1.5, "LUT": 26_000, "BRAM_18K": 2 * 124,
     "DSP": 24},
]


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


def stand_in(data, seed: int):
    """Same layout as the baseline, two epochs: only for checking this script."""
    from tensorflow import keras

    from fpgacnn.zoo import vgg16_layout

    model = vgg16_layout(seed=seed)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.x_train[:10000], data.y_train[:10000], batch_size=128, epochs=2, verbose=0)
    return model


def markdown(res: dict) -> str:
    r, c = res["resources"], res["capacity"]
    ours = (f"| fpgacnn fit (this run) | {res['accuracy']:.1%} | {res['latency_ms']:.2f} | {res['fps']:,.0f} | "
            f"{r['LUT']:,} ({r['LUT'] / c['LUT']:.0%}) | {r['BRAM_18K']} ({r['BRAM_18K'] / c['BRAM_18K']:.0%}) | "
            f"{r['DSP']} ({r['DSP'] / c['DSP']:.0%}) | {r['FF']:,} |")
    rows = [ours]
    for p in PUBLISHED:
        fmt = lambda v: "not given" if v is None else f"{v:,}"  # noqa: E731
        rows.append(f"| {p['design']} | {p['accuracy']:.1%} | {p['latency_ms']} | not given | "
                    f"{fmt(p['LUT'])} | {fmt(p['BRAM_18K'])} | {fmt(p['DSP'])} | not given |")
    pts = []
    for t in res["table"]:
        if "used" not in t:
            pts.append(f"| {t['keep']:g} | {t['bits']} | {t['stage']} | - | - | - | - | - | - |")
            continue
        acc = f"{t['accuracy']:.1%}" if t["accuracy"] is not None else "-"
        pts.append(f"| {t['keep']:g} | {t['bits']} | {t['stage']} | {'yes' if t['fits'] else 'no'} | "
                   f"{t['used']['BRAM_18K']} | {t['used']['LUT']:,} | {t['fps']:,.1f} | {t['bottleneck']} | "
                   f"{t['accuracy_ptq']:.1%} / {acc} |")
    s = res["settings"]
    return "\n".join([
        "# Fitting the CIFAR-10 baseline to a Zynq-7020 (xc7z020clg400-1)",
        "",
        f"Generated by `{res.get('command', 'benchmarks/fit_xc7z020.py')}` ({res['wall_s'] / 60:.0f} min on {res['machine']}). Target: "
        f">= {FPS:g} fps at {CLOCK_MHZ:g} MHz, every resource <= {MAX_UTILIZATION:.0%} of the part. Our resources "
        "and speed are fpgacnn estimates of the generated hls4ml design (io_stream, 16-deep stream FIFOs: the "
        "layers form a chain, see `fpgacnn/hls/fifo.py`), not vendor synthesis; the published rows are the "
        "figures given for those designs on the same chip.",
        "",
        f"Baseline: {res['baseline']['params']:,} parameters, {res['baseline']['test_accuracy']:.1%} test accuracy "
        f"(float). Chosen: keep {res['keep']:g} of the kernels ({trim_words(s)}), {res['bits']}-bit weights and "
        f"activations, {res['params']:,} parameters; validation {res['validation_accuracy']:.1%}, "
        f"test {res['accuracy']:.1%} (QKeras model, the bit-exact reference of the generated C++).",
        "",
        "| design | CIFAR-10 accuracy | latency (ms) | images/s | LUT | BRAM_18K | DSP | FF |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Capacity of the part: {c['LUT']:,} LUT, {c['BRAM_18K']} BRAM_18K, {c['DSP']} DSP, {c['FF']:,} FF.",
        "",
        "## Points tried",
        "",
        "Screening: trimmed, batch-norm statistics re-estimated on the representative images, post-training "
        "quantized, reuse factors for exactly the frame budget. Fine-tuned: distilled from the baseline "
        f"({', '.join(f'{k} {v}' for k, v in s['finetune_options'].items())}), then quantization-aware training, reuse factors for the fastest design that "
        "still fits. 'skipped': a smaller point (less kept, fewer bits) already missed.",
        "",
        "| keep | bits | stage | fits | BRAM_18K | LUT | fps | bottleneck | val. accuracy (PTQ / fine-tuned) |",
        "|---:|---:|---|---|---:|---:|---:|---|---:|",
        *pts,
        "",
        "## Why the fit lands where it does",
        "",
        res["analysis"],
        "",
        f"Settings: {json.dumps(s)}",
        "",
    ])


def trim_words(s: dict) -> str:
    t = {"ranking": "layer", "criterion": "relevance", "rounds": 1, **s.get("trim_options", {})}
    how = "the same fraction in every layer" if t["ranking"] == "layer" else "one threshold over all layers"
    if t.get("cost"):
        how += f" on score per {t['cost'].replace('sqrt_', 'square root of ')}"
    if t.get("normalize", "mean") != "mean":
        how += f", scores normalised by {t['normalize']} within each layer"
    return f"{t['criterion']}, {how}, {t['rounds']} cut{'s' if t['rounds'] > 1 else ''}"


def breakdown(est) -> dict:
    """Where the chosen design's LUTs and BRAMs go: kernels (Conv/Dense), per-lane layers
    (ReLU, pooling, zero padding), stream FIFOs."""
    out = {"LUT": {"kernels": 0, "lanes": 0, "fifos": 0}, "BRAM_18K": {"kernels": 0, "lanes": 0, "fifos": 0}}
    for r in est.layers:
        kind = "kernels" if ("Conv" in r["class_name"] or "Dense" in r["class_name"]) else "lanes"
        for k in ("LUT", "BRAM_18K"):
            out[k]["fifos"] += int(r["fifo"][k])
            out[k][kind] += int(r[k] - r["fifo"][k])
    return out


def folded_words(res: dict) -> str:
    if res["design"].get("fold_activations", False):
        return " (the ReLUs included: each is folded into its convolution's output cast, `fpgacnn/hls/fuse.py`)"
    return ""


def lane_words(res: dict) -> str:
    if res["design"].get("fold_activations", False):
        return "pooling, the zero padding hls4ml inserts for 'same' convolutions"
    return "ReLU requantization, pooling, the zero padding hls4ml inserts for 'same' convolutions"


def analysis(res: dict) -> str:
    b, used, cap = res["breakdown"], res["resources"], res["capacity"]
    util = {k: used[k] / cap[k] for k in used}
    top = max(util, key=util.get)
    lut, bram = b["LUT"], b["BRAM_18K"]
    lines = [
        f"- The chosen design is limited by {top} ({util[top]:.0%} of the part, cap {MAX_UTILIZATION:.0%}). "
        f"Its LUTs: {lut['kernels']:,} in the conv/dense kernels{folded_words(res)}, {lut['lanes']:,} in "
        f"per-channel layers ({lane_words(res)}) and "
        f"{lut['fifos']:,} in stream FIFO control; its BRAM_18K: {bram['fifos']} stream FIFOs, "
        f"{bram['kernels']} weight memories. hls4ml's io_stream gives every channel of every layer output "
        "its own FIFO (hls4ml makes each as deep as the feature map, a BRAM_18K and about 100 LUTs of "
        "control once deeper than 16 entries; fpgacnn keeps them at 16 in a chain, shift registers) and "
        "processes all channels of a pixel in parallel, so these costs grow with the number of channels "
        "and barely with the bit width: the search has to trim.",
    ]
    bigger = [t for t in res["table"] if "used" in t and not t["fits"] and t["stage"] == "screen"
              and (t["keep"] > res["keep"] or t["bits"] > res["bits"])]
    if bigger:
        t = min(bigger, key=lambda t: (t["keep"], t["bits"]))
        lines.append(f"- The next larger point tried, keep {t['keep']:g} at {t['bits']} bits, needs "
                     f"{t['used'][t['bottleneck']]:,} {t['bottleneck']} where {t['budget'][t['bottleneck']]:,} are "
                     f"allowed ({t['peak']:.2f}x the budget).")
    lines.append("- LUTs are counted as Vivado HLS's C-synthesis report counts them (what the estimator is "
                 "calibrated on). For the SVHN reference design, Vivado logic synthesis reported about half of "
                 "HLS's LUTs (123,948 vs 245,466, `estimator_validation.md`), so the LUT cap is conservative.")
    lines.append(f"- Throughput is not the limit: one image every {res['ii_cycles']:,} cycles is {res['fps']:,.0f} "
                 f"fps at {CLOCK_MHZ:g} MHz against the {FPS:g} fps target; reuse factors were lowered until the "
                 "resources ran out.")
    for title, runs in (("Other runs of these settings", VARIANTS),
                        ("Earlier runs of this search, each with what differed (newest first)", EARLIER)):
        runs = [e for e in runs if e[0] != res.get("stem") and (RESULTS / f"{e[0]}.json").exists()]
        if runs:
            lines.append(f"- {title}:")
        for stem, how in runs:
            o = json.loads((RESULTS / f"{stem}.json").read_text())
            lines.append(f"  - `{stem}.md`, {how}: keep {o['keep']:g} at {o['bits']} bits, {o['params']:,} "
                         f"parameters, {o['accuracy']:.1%} test, {o['resources']['LUT']:,} LUT.")
    lines.append("- The published rows come with accuracy, latency and (for FINN) resources only; they were "
                 "built with other flows (FINN's CNV has binarised weights and activations), so the table "
                 "compares outcomes on the same chip, not methods.")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stand-in", action="store_true", help="train a 2-epoch model if the baseline is missing")
    ap.add_argument("--quick", action="store_true", help="tiny grids and 1 epoch: checks the script runs")
    ap.add_argument("--trim", choices=sorted(TRIM_VARIANTS), default="global",
                    help="how kernels are allocated (default global, rank-normalised; mean: the library default; "
                         "layer: an earlier result)")
    ap.add_argument("--write-only", action="store_true", help="rewrite the .md (and analysis) from the .json")
    args = ap.parse_args(argv)
    stem, trim_options = TRIM_VARIANTS[args.trim]
    if args.write_only:
        res = json.loads((RESULTS / f"{stem}.json").read_text())
        res.setdefault("command", f"nice -n 10 .venv/bin/python benchmarks/fit_xc7z020.py --trim {args.trim}")
        res["settings"].setdefault("trim_options", trim_options or SETTINGS["trim_options"])
        res["stem"] = stem
        res["analysis"] = analysis(res)
        (RESULTS / f"{stem}.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
        (RESULTS / f"{stem}.md").write_text(markdown(res))
        return 0
    from fpgacnn.estimate.fit import fit
    from fpgacnn.modelio import file_sha256, load_model
    from fpgacnn.zoo import accuracy

    settings = dict(SETTINGS, **(QUICK if args.quick else {}))
    if trim_options is not None:
        settings["trim_options"] = trim_options
    t0 = time.time()
    data = cifar10.load(seed=settings["seed"])
    if BASELINE.exists():
        model, source = load_model(BASELINE), {"file": str(BASELINE.relative_to(cifar10.ROOT)),
                                               "sha256": file_sha256(BASELINE)}
    elif args.stand_in:
        log("baseline missing: training a 2-epoch stand-in")
        model, source = stand_in(data, settings["seed"]), {"file": None, "stand_in": "2 epochs on 10k images"}
    else:
        print(f"baseline {BASELINE} not found (run benchmarks/trim_cifar10.py, or pass --stand-in)", file=sys.stderr)
        return 1
    out_dir = RESULTS if source["file"] and not args.quick else cifar10.WORK
    rng = np.random.default_rng(settings["seed"])
    idx = np.sort(rng.permutation(len(data.x_train))[: settings["finetune_images"]])
    log(f"fitting {model.count_params():,}-parameter model to {PART} at {FPS:g} fps")
    result = fit(model, data.x_train[idx], data.y_train[idx], PART, fps=FPS, clock_mhz=CLOCK_MHZ,
                 max_utilization=MAX_UTILIZATION, x_val=data.x_val, y_val=data.y_val,
                 keep_grid=settings["keep_grid"], bits_grid=settings["bits_grid"],
                 finetune_epochs=settings["finetune_epochs"], qat_epochs=settings["qat_epochs"],
                 max_finetune=settings["max_finetune"],
                 representative=settings["representative"], batch_size=settings["batch_size"],
                 learning_rate=settings["learning_rate"], seed=settings["seed"],
                 finetune_options=settings["finetune_options"], trim_options=settings["trim_options"], log=log)
    test_acc = accuracy(result.qmodel, result.input_type.snap(data.x_test), data.y_test)
    est = result.estimate
    cap = result.part.capacity()
    res = {
        "part": PART, "clock_mhz": CLOCK_MHZ, "accuracy": float(test_acc), "latency_ms": float(result.latency_ms),
        "fps": float(result.fps), "resources": {k: int(est.total[k]) for k in ("DSP", "BRAM_18K", "LUT", "FF")},
        "capacity": {k: int(cap[k]) for k in ("DSP", "BRAM_18K", "LUT", "FF")},
        "fps_target": FPS, "max_utilization": MAX_UTILIZATION, "ii_cycles": int(est.total["ii_cycles"]),
        "latency_cycles": int(est.total["latency_cycles"]),
        "breakdown": breakdown(est),
        "validation_accuracy": float(result.accuracy), "keep": result.keep, "bits": result.bits,
        "params": int(result.float_model.count_params()),
        "baseline": {**source, "params": int(model.count_params()),
                     "test_accuracy": float(accuracy(model, data.x_test, data.y_test))},
        "design": result.design.to_dict(), "table": result.table, "settings": settings,
        "published": PUBLISHED, "estimator": "fpgacnn estimator (not vendor synthesis)",
        "wall_s": round(time.time() - t0, 1), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    res["stem"] = stem
    res["analysis"] = analysis(res)
    out_dir.mkdir(parents=True, exist_ok=True)
    res["command"] = f"nice -n 10 .venv/bin/python benchmarks/fit_xc7z020.py --trim {args.trim}"
    (out_dir / f"{stem}.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(res))
    log(f"done: {result.summary()}; test accuracy {test_acc:.4f}; wrote {out_dir / f'{stem}.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
