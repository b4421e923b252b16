"""Peak memory of a relevance pass: 10,000 images 32x32x3 through a VGG16-layout model.

Target (issue: relevance-based trimmer for real CNN graphs): peak RSS < 2 GB. The pass
keeps running per-channel sums only, so memory should be the images (123 MB as
float32), TensorFlow and one batch of activations, whatever the number of images.
Each batch size runs in its own process because the peak RSS (``ru_maxrss``) of a
process never goes down.

    .venv/bin/python benchmarks/relevance_memory.py
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
N_IMAGES = 10_000
BATCH_SIZES = (64, 256)
TARGET_MB = 2048


def child(batch_size: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np

    from fpgacnn.trimming import relevance_scores
    from fpgacnn.zoo import vgg16_layout
    from trim_cifar10 import SETTINGS

    model = vgg16_layout(SETTINGS["widths"], SETTINGS["dense"], seed=0)
    x = np.random.default_rng(0).random((N_IMAGES, 32, 32, 3), dtype=np.float32)
    before = rss_mb()
    t0 = time.perf_counter()
    scores = relevance_scores(model, x, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    return {
        "batch_size": batch_size,
        "rss_before_pass_mb": round(before),
        "peak_rss_mb": peak_rss_mb(),
        "seconds": round(seconds, 1),
        "images_per_s": round(N_IMAGES / seconds),
        "layers_scored": len(scores),
        "params": int(model.count_params()),
    }


def main() -> None:
    runs = run_children(__file__, BATCH_SIZES, "relevance pass")
    result = {
        "command": ".venv/bin/python benchmarks/relevance_memory.py",
        "images": N_IMAGES, "image_shape": [32, 32, 3],
        "model": "VGG16 layout, widths 16-32-64-128-128 (benchmarks/trim_cifar10.py)",
        "cores": os.cpu_count(), "machine": platform.machine(),
        "target_peak_rss_mb": TARGET_MB, "runs": runs,
        "met": all(r["peak_rss_mb"] < TARGET_MB for r in runs),
    }
    rows = "\n".join(f"| {r['batch_size']} | {r['rss_before_pass_mb']} | {r['peak_rss_mb']} | {r['seconds']} | "
                     f"{r['images_per_s']} |" for r in runs)
    write_results(RESULTS, "relevance_memory", result, (
        "# Relevance pass: peak memory\n\n"
        f"`{result['command']}` on {result['cores']} cores ({result['machine']}): `relevance_scores` over "
        f"{N_IMAGES:,} random 32x32x3 float32 images on the CIFAR-10 benchmark's VGG16-layout model "
        f"({runs[0]['params']:,} parameters, {runs[0]['layers_scored']} layers scored), one process per "
        "batch size.\n\n"
        "| batch size | RSS before the pass (MB) | peak RSS (MB) | seconds | images/s |\n|---|---|---|---|---|\n"
        f"{rows}\n\nTarget: peak RSS < {TARGET_MB} MB: **{'met' if result['met'] else 'not met'}**. "
        "The RSS before the pass already holds TensorFlow, the model and the images "
        f"({N_IMAGES * 32 * 32 * 3 * 4 / 2**20:.0f} MB); the pass itself adds one batch of activations.\n"
    ))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    child_or_main(child, main)
