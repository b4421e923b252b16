"""Peak memory of ``quantize`` calibrating on many images (VGG16 layout, 32x32x3).

``quantize(model, x=...)`` runs the folded float model over ``x`` to find every ReLU's
range. It used to keep every ReLU output of every image: for this VGG about 69k floats
per image, 12.5 GB for CIFAR-10's 45,000 training images, and the kernel killed the
process. It now keeps a per-ReLU summary (``fpgacnn.quant.ranges``), so memory should be
the images, TensorFlow and one batch of activations, whatever the number of images.
Each size runs in its own process because the peak RSS (``ru_maxrss``) never goes down.

    .venv/bin/python benchmarks/quantize_memory.py
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from memory_probe import child_or_main, peak_rss_mb, rss_mb, run_children, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
N_IMAGES = (5_000, 20_000, 45_000)
TARGET_MB = 2048  # beyond the images themselves


def child(n: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np

    from fpgacnn.quantization import quantize
    from fpgacnn.zoo import vgg16_layout
    from trim_cifar10 import SETTINGS

    model = vgg16_layout(SETTINGS["widths"], SETTINGS["dense"], seed=0)
    relu_values = sum(int(np.prod(ly.output_shape[1:])) for ly in model.layers if "relu" in ly.name)
    x = np.random.default_rng(0).random((n, 32, 32, 3), dtype=np.float32)
    before = rss_mb()
    t0 = time.perf_counter()
    quantize(model, bits=8, x=x)
    return {"images": n, "rss_before_mb": round(before),
            "peak_rss_mb": peak_rss_mb(),
            "seconds": round(time.perf_counter() - t0, 1),
            "all_relu_outputs_mb": round(relu_values * n * 4 / 2**20),
            "relu_values_per_image": relu_values, "params": int(model.count_params())}


def main() -> None:
    runs = run_children(__file__, N_IMAGES, "quantize")
    for r in runs:
        r["added_mb"] = r["peak_rss_mb"] - r["rss_before_mb"]
    result = {
        "command": ".venv/bin/python benchmarks/quantize_memory.py",
        "model": "VGG16 layout, widths 16-32-64-128-128 (benchmarks/trim_cifar10.py)",
        "cores": os.cpu_count(), "machine": platform.machine(),
        "target_added_mb": TARGET_MB, "runs": runs, "met": all(r["added_mb"] < TARGET_MB for r in runs),
    }
    rows = "\n".join(f"| {r['images']:,} | {r['rss_before_mb']:,} | {r['peak_rss_mb']:,} | {r['added_mb']:,} | "
                     f"{r['all_relu_outputs_mb']:,} | {r['seconds']} |" for r in runs)
    write_results(RESULTS, "quantize_memory", result, (
        "# quantize: peak memory of the calibration\n\n"
        f"`{result['command']}` on {result['cores']} cores ({result['machine']}): post-training "
        f"`quantize(model, bits=8, x=x)` of the CIFAR-10 benchmark's VGG16-layout model "
        f"({runs[0]['params']:,} parameters, {runs[0]['relu_values_per_image']:,} ReLU outputs per image) on "
        "random 32x32x3 float32 images, one process per size.\n\n"
        "| images | RSS before (MB) | peak RSS (MB) | added (MB) | all ReLU outputs, float32 (MB) | seconds |\n"
        f"|---:|---:|---:|---:|---:|---:|\n{rows}\n\n"
        f"Target: the calibration adds < {TARGET_MB} MB: **{'met' if result['met'] else 'not met'}**. "
        "'All ReLU outputs' is what the calibration held before it was streamed (quantizing a trimmed "
        "CIFAR-10 VGG on the 45,000 training images was killed by the kernel at 21 GB); now it keeps a count, minimum "
        "and maximum per power-of-two bin for each ReLU.\n"
    ))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    child_or_main(child, main)
