"""Peak memory of augmented, distilled fine-tuning on a CIFAR-sized training set.

Augmented fine-tuning builds a new 45,000-image view every epoch. Handing each view to
``keras.Model.fit`` kept a copy of every view alive (about 0.55 GB an epoch), and a CIFAR
fit run was killed by the kernel at 13 GB; ``fpgacnn.distill`` now trains batch by batch.
This measures peak RSS after 2 and after 10 epochs: with the fix they are about equal.

    .venv/bin/python benchmarks/finetune_memory.py        # about 3 min on 2 cores
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
N_IMAGES = 45000


def child(epochs: int) -> None:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    from tensorflow import keras

    from fpgacnn.distill import finetune

    rng = np.random.default_rng(0)
    x = rng.random((N_IMAGES, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, N_IMAGES)
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, strides=4),
                                keras.layers.Flatten(), keras.layers.Dense(10)])
    student = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(2, 3, strides=4),
                                keras.layers.Flatten(), keras.layers.Dense(10)])
    t0 = time.perf_counter()
    finetune(student, x, y, teacher=teacher, epochs=epochs, batch_size=128, augment="flip_shift",
             lr_schedule="cosine", x_val=x[:2000], y_val=y[:2000])
    print(json.dumps({"epochs": epochs, "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                                               / 1e6, 2),
                      "seconds": round(time.perf_counter() - t0, 1)}))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
        return
    runs = []
    for epochs in (2, 10):
        out = subprocess.run([sys.executable, __file__, "--child", str(epochs)], capture_output=True, text=True,
                             check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    data = N_IMAGES * 32 * 32 * 3 * 4 / 1e9
    result = {"images": N_IMAGES, "image_set_gb": round(data, 2), "runs": runs,
              "command": ".venv/bin/python benchmarks/finetune_memory.py"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "finetune_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {r['epochs']} | {r['peak_rss_gb']} | {r['seconds']} |" for r in runs)
    (RESULTS / "finetune_memory.md").write_text(
        "# Peak memory of augmented, distilled fine-tuning\n\n"
        f"`{result['command']}`: {N_IMAGES:,} random 32x32x3 float32 images ({data:.2f} GB), a new "
        "flipped/shifted view and teacher pass every epoch, one fresh process per row.\n\n"
        "| epochs | peak RSS (GB) | seconds |\n|---:|---:|---:|\n" + rows + "\n")


if __name__ == "__main__":
    main()
