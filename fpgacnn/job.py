"""``fpgacnn run CONFIG``: turn a validated config into data, a model and a pipeline run."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import Split, load_digits_split, load_npz_split
from .pipeline import PipelineOptions, StageTimer, check_output_dir, run_pipeline


def load_split(data_cfg: dict) -> tuple[Split, dict | None]:
    """The data split and, for image folders, the preprocessing recipe used."""
    source, seed = data_cfg["source"], data_cfg["seed"]
    if source == "digits":
        return load_digits_split(seed=seed, test_fraction=data_cfg["test_fraction"]), None
    if source == "npz":
        return load_npz_split(data_cfg["path"], seed=seed), None
    from sklearn.model_selection import train_test_split

    from .imagefolder import Preprocessing, load_image_folder

    pre = Preprocessing(tuple(data_cfg["image_size"]), data_cfg["color_mode"], data_cfg["scale"], data_cfg["offset"])
    x, y, classes = load_image_folder(data_cfg["path"], pre)
    strat = y if np.bincount(y).min() >= 2 else None
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=data_cfg["test_fraction"],
                                                      random_state=seed, stratify=strat)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.125, random_state=seed)
    return Split(x_train, y_train, x_val, y_val, x_test, y_test, classes), pre.to_dict()


def run_job(cfg: dict, log=None) -> dict:
    from .modelio import file_sha256, load_model
    from .zoo import small_vgg, train

    out = Path(cfg["output"]["dir"])
    check_output_dir(out, cfg["output"]["force"])
    timer = StageTimer()
    split, preprocessing = load_split(cfg["data"])
    sha = None
    if cfg["model"]["path"]:
        model = load_model(cfg["model"]["path"], allow_code=cfg["model"]["allow_code"])
        sha = file_sha256(cfg["model"]["path"])
    else:
        with timer.stage("train", log):
            model = small_vgg(input_shape=split.x_train.shape[1:], n_classes=len(split.classes), seed=cfg["data"]["seed"])
            train(model, split.x_train, split.y_train, split.x_val, split.y_val,
                  epochs=cfg["model"]["epochs"], seed=cfg["data"]["seed"])
    opts = PipelineOptions(
        keep=cfg["trim"]["keep"], bits=cfg["quantize"]["bits"], part=cfg["target"]["part"],
        backend=cfg["hls"]["backend"], io_type=cfg["hls"]["io_type"],
        clock_period_ns=1000.0 / cfg["target"]["clock_mhz"], finetune_epochs=cfg["trim"]["finetune_epochs"],
        qat_epochs=cfg["quantize"]["qat_epochs"], representative=cfg["trim"]["representative"],
        csim_samples=cfg["csim"]["samples"], seed=cfg["data"]["seed"], name=cfg["hls"]["name"],
        force=cfg["output"]["force"], criterion=cfg["trim"]["criterion"], preprocessing=preprocessing,
        augment=None if cfg["trim"]["augment"] == "none" else cfg["trim"]["augment"],
        lr_schedule=cfg["trim"]["lr_schedule"], fifo_depth=cfg["hls"]["fifo_depth"],
    )
    return run_pipeline(model, split, out, opts, timer=timer, log=log, source_sha256=sha)
