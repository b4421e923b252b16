"""The demo job: digits → small VGG → trim → 8-bit QAT → Vitis io_stream project → csim."""
from __future__ import annotations

from pathlib import Path

from .data import load_digits_split
from .pipeline import PipelineOptions, StageTimer, check_output_dir, run_pipeline


def run_demo(out_dir="hw_projects/demo", force: bool = False, seed: int = 0, epochs: int = 40,
             log=print) -> dict:
    from .zoo import small_vgg, train

    check_output_dir(out_dir, force)
    timer = StageTimer()
    split = load_digits_split(seed=seed)
    with timer.stage("train", log):
        model = small_vgg(input_shape=split.x_train.shape[1:], n_classes=len(split.classes), seed=seed)
        train(model, split.x_train, split.y_train, split.x_val, split.y_val, epochs=epochs, seed=seed)
    opts = PipelineOptions(keep=0.5, bits=8, seed=seed, name="digits_cnn", force=force)
    return run_pipeline(model, split, Path(out_dir), opts, timer=timer, log=log)
