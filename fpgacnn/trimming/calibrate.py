"""Re-estimate batch-norm statistics after trimming.

Removing input channels of a convolution shifts the distribution of its output, but
the BatchNormalization behind it still normalises with the moving mean and variance
of the untrimmed network. At inference that mismatch compounds layer after layer: a
VGG trimmed to half its kernels can drop to chance accuracy although its weights are
fine. Fine-tuning repairs the statistics only slowly (moving averages with momentum
0.99 forget ~1 % per step), so schedules first recompute them on representative
images: for each BatchNormalization, in topological order, the exact per-channel
mean and variance of its input under the already re-estimated layers before it.
"""
from __future__ import annotations

import numpy as np

from fpgacnn.trimming.graph import BATCHNORM, layer_map


def recalibrate_batchnorm(model, x, batch_size: int = 256) -> list[str]:
    """Set every BatchNormalization's moving mean/variance to its input statistics on ``x``.

    Works in place, in inference mode (dropout off), streaming ``batch_size`` images at
    a time with float64 running sums. Returns the names of the layers it updated.
    """
    from tensorflow import keras

    layers = [ly for ly in layer_map(model).values() if type(ly).__name__ in BATCHNORM]
    order = {ly.name: i for i, ly in enumerate(model.layers)}
    layers.sort(key=lambda ly: order.get(ly.name, -1))
    n = len(x[0]) if isinstance(x, list) else len(x)
    done = []
    for bn in layers:
        axis = bn.axis[0] if isinstance(bn.axis, (list, tuple)) else bn.axis
        feeder = keras.Model(model.inputs, bn.input)
        total = total_sq = None
        count = 0
        for start in range(0, n, int(batch_size)):
            xb = [a[start:start + batch_size] for a in x] if isinstance(x, list) else x[start:start + batch_size]
            a = np.asarray(feeder(xb, training=False), dtype=np.float64)
            a = np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])
            s, sq = a.sum(axis=0), (a * a).sum(axis=0)
            total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
            count += a.shape[0]
        mean = total / count
        var = np.maximum(total_sq / count - mean * mean, 0.0)
        bn.moving_mean.assign(mean.astype(np.float32))
        bn.moving_variance.assign(var.astype(np.float32))
        done.append(bn.name)
    return done
