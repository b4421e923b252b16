"""Stream FIFO depths: shallow in chains, hls4ml's where a branch could deadlock."""
from __future__ import annotations

import numpy as np
import pytest
from tensorflow import keras

from fpgacnn.errors import InputError
from fpgacnn.hls.fifo import SHALLOW_DEPTH, fifo_depths, is_chain, set_fifo_depths

L = keras.layers


def _convert(model, tmp_path):
    import hls4ml

    config = hls4ml.utils.config_from_keras_model(model, granularity="name")
    return hls4ml.converters.convert_from_keras_model(model, hls_config=config, output_dir=str(tmp_path / "p"),
                                                      io_type="io_stream", backend="Vitis")


def chain():
    keras.utils.set_random_seed(0)
    i = keras.Input((12, 12, 1))
    h = L.Conv2D(3, 3, padding="same", activation="relu")(i)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(4, 3, activation="relu")(h)
    return keras.Model(i, L.Dense(2)(L.Flatten()(h)))


def residual():
    keras.utils.set_random_seed(0)
    i = keras.Input((12, 12, 2))
    h = L.Conv2D(2, 3, padding="same", activation="relu")(i)
    h = L.Add()([h, L.Conv2D(2, 3, padding="same")(h)])
    return keras.Model(i, L.Dense(2)(L.Flatten()(h)))


def test_chain_fifos_become_shallow_and_never_deeper(tmp_path):
    hm = _convert(chain(), tmp_path)
    assert is_chain(hm)
    before = fifo_depths(hm)
    assert max(before.values()) == 14 * 14  # hls4ml: a whole feature map (the 12x12 input zero-padded)
    changed = set_fifo_depths(hm, "auto")
    after = fifo_depths(hm)
    assert changed == sum(d > SHALLOW_DEPTH for d in before.values()) > 0
    assert after == {k: min(d, SHALLOW_DEPTH) for k, d in before.items()}


def test_branching_graph_keeps_hls4ml_depths(tmp_path):
    hm = _convert(residual(), tmp_path)
    assert not is_chain(hm)
    before = fifo_depths(hm)
    assert set_fifo_depths(hm, "auto") == 0
    assert fifo_depths(hm) == before


def test_full_and_explicit_depths(tmp_path):
    hm = _convert(chain(), tmp_path)
    before = fifo_depths(hm)
    assert set_fifo_depths(hm, "full") == 0 and fifo_depths(hm) == before
    set_fifo_depths(hm, 3)
    assert set(fifo_depths(hm).values()) == {3}


def test_shallow_fifos_cut_the_estimated_bram(tmp_path):
    from fpgacnn.estimate.estimator import estimate_resources

    hm = _convert(chain(), tmp_path)
    full = estimate_resources(hm, part="xc7z020").total
    set_fifo_depths(hm, "auto")
    shallow = estimate_resources(hm, part="xc7z020").total
    assert shallow["BRAM_18K"] < full["BRAM_18K"]
    assert shallow["LUT"] < full["LUT"]


@pytest.mark.parametrize("bad", ["deep", 0, -4, 2.5, True, None])
def test_bad_fifo_depth_is_an_input_error(tmp_path, bad):
    hm = _convert(chain(), tmp_path)
    with pytest.raises(InputError, match="fifo_depth"):
        set_fifo_depths(hm, bad)
    assert np.all(np.array(list(fifo_depths(hm).values())) > 0)
