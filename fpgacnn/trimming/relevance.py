"""Kernel scores: data-driven relevance (Ressi et al. 2021) and the usual baselines.

Relevance of a kernel is a statistic of its *post-activation* output over
representative images: a filter whose ReLU output is almost always zero contributes
nothing downstream, whatever its weight norm. We therefore score the tensor after the
kernel's non-linearity: the layer's own activation when it has one, else the
activation that follows it (possibly behind a BatchNormalization), else the raw output.

Activations are never held in memory for the whole data set: one multi-output
``keras.Model`` yields the needed tensors batch by batch and we keep running
per-channel sums only.

``relevance_weighted`` multiplies a kernel's mean |post-activation| by the L2 norm of
the weights that read its channel in the consuming layers. Where every conv is followed
by batch norm and a ReLU, the mean activation of a channel is a fixed function of its
batch-norm (gamma, beta) and says nothing about whether the next layer uses it; the
weighted score is the expected size of what the kernel adds to the next layer's input.

Every score is "higher = more relevant". For APoZ (Average Percentage of Zeros,
Hu et al. 2016), where a *high* fraction of zeros means an *irrelevant* kernel, the
score is ``1 - APoZ``.
"""
from __future__ import annotations

import numpy as np

from fpgacnn.errors import DataError, InputError
from fpgacnn.trimming.graph import ACTIVATIONS, BATCHNORM, DEPTHWISE, PRODUCERS, SEPARABLE, ChannelGraph

STATISTICS = ("mean", "mean_abs", "apoz")
CRITERIA = ("relevance", "relevance_weighted", "l1", "apoz", "random")


def relevance_scores(model, x, batch_size: int = 64, statistic: str = "mean",
                     *, graph: ChannelGraph | None = None) -> dict[str, np.ndarray]:
    """Per-kernel statistic of every producer's post-activation output over ``x``.

    Returns ``{producer layer name: array of shape (kernels,)}``. ``statistic`` is
    ``"mean"`` (default), ``"mean_abs"`` or ``"apoz"`` (scored as ``1 - APoZ`` so
    that higher always means more relevant). Reduction is over the batch and every
    spatial axis; computed with running sums, ``batch_size`` images at a time.
    """
    if statistic not in STATISTICS:
        raise InputError(f"unknown relevance statistic '{statistic}' (choose from {', '.join(STATISTICS)})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    graph = graph or ChannelGraph(model)
    x = check_data(model, x)
    producers = graph.producers
    if not producers:
        return {}
    taps = {p: post_activation_layer(graph, p) for p in producers}
    tap_names = sorted(set(taps.values()))
    import tensorflow as tf
    from tensorflow import keras

    feeder = keras.Model(model.inputs, [graph.layers[n].output for n in tap_names])
    sums = {n: None for n in tap_names}
    counts = dict.fromkeys(tap_names, 0)
    n_images = len(x[0]) if isinstance(x, list) else len(x)
    for start in range(0, n_images, int(batch_size)):
        xb = [a[start:start + batch_size] for a in x] if isinstance(x, list) else x[start:start + batch_size]
        outs = feeder(xb, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for name, t in zip(tap_names, outs):
            a = tf.reshape(tf.cast(t, tf.float64), (-1, t.shape[-1]))
            if statistic == "mean":
                s = tf.reduce_sum(a, axis=0)
            elif statistic == "mean_abs":
                s = tf.reduce_sum(tf.abs(a), axis=0)
            else:  # count of non-zeros -> 1 - APoZ
                s = tf.reduce_sum(tf.cast(tf.not_equal(a, 0.0), tf.float64), axis=0)
            s = s.numpy()
            sums[name] = s if sums[name] is None else sums[name] + s
            counts[name] += int(a.shape[0])
    return {p: (sums[taps[p]] / max(counts[taps[p]], 1)).astype(np.float64) for p in producers}


def post_activation_layer(graph: ChannelGraph, producer: str) -> str:
    """Name of the layer whose output is ``producer``'s post-activation tensor."""
    cfg = graph.layers[producer].get_config()
    if cfg.get("activation") not in (None, "linear"):
        return producer
    current = producer
    for _ in range(2):  # at most one BatchNormalization, then the activation
        consumers = graph.consumers.get(current, [])
        if len(consumers) != 1 or current in graph.outputs:
            break
        nxt = consumers[0]
        cname = graph.nodes[nxt].class_name
        if cname in BATCHNORM and current == producer:
            current = nxt
            continue
        if cname in ACTIVATIONS and graph.layers[nxt].get_config().get("activation") != "linear":
            return nxt
        break
    return producer


def l1_scores(graph: ChannelGraph) -> dict[str, np.ndarray]:
    """L1 norm of each kernel's weights (Li et al. 2017): sum |W| over all but the output axis."""
    out = {}
    for p in graph.producers:
        layer = graph.layers[p]
        kernel = layer.pointwise_kernel if graph.nodes[p].class_name in SEPARABLE else layer.kernel
        k = np.asarray(kernel.numpy(), dtype=np.float64)
        out[p] = np.abs(k).reshape(-1, k.shape[-1]).sum(axis=0)
    return out


def consumer_weight_norms(graph: ChannelGraph) -> dict[str, np.ndarray]:
    """Per kernel, the L2 norm of every consumer weight that reads its channel.

    Consumers are the layers with weights (conv, dense, depthwise, separable) whose input
    carries the channel, wherever it travels (pooling, padding, Flatten's many rows,
    Concatenate offsets, Add-tied groups). A group no weighted layer reads gets norm 1
    (no information, so the activation statistic alone decides).
    """
    sizes = {g.id: g.size for g in graph.groups}
    sq: dict[int, np.ndarray] = {}
    for name, node in graph.nodes.items():
        cname = node.class_name
        if cname not in PRODUCERS | DEPTHWISE | SEPARABLE or not node.in_specs:
            continue
        layer = graph.layers[name]
        kernel = layer.depthwise_kernel if cname in DEPTHWISE | SEPARABLE else layer.kernel
        k = np.asarray(kernel.numpy(), dtype=np.float64)
        per_input = np.square(np.moveaxis(k, -2, 0)).reshape(k.shape[-2], -1).sum(axis=1)
        spec = node.in_specs[0]
        if len(spec) != len(per_input):
            continue
        for gid in np.unique(spec[:, 0]):
            at = spec[:, 0] == gid
            root = graph.find(int(gid))
            acc = sq.setdefault(root, np.zeros(sizes[root]))
            np.add.at(acc, spec[at, 1], per_input[at])
    out = {}
    for p in graph.producers:
        g = graph.group(p)
        norms = np.sqrt(sq.get(g.id, np.zeros(g.size)))
        out[p] = norms if np.any(norms > 0) else np.ones(g.size)
    return out


def random_scores(graph: ChannelGraph, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random scores: the baseline every criterion should beat."""
    rng = np.random.default_rng(seed)
    return {p: rng.random(graph.group(p).size) for p in graph.producers}


def criterion_scores(model, x, criterion: str, graph: ChannelGraph, batch_size: int = 64,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Scores for one criterion; data is only needed for "relevance" and "apoz"."""
    if criterion == "relevance":
        return relevance_scores(model, _need(x, criterion), batch_size, "mean", graph=graph)
    if criterion == "relevance_weighted":
        act = relevance_scores(model, _need(x, criterion), batch_size, "mean_abs", graph=graph)
        norms = consumer_weight_norms(graph)
        return {p: act[p] * norms[p] for p in act}
    if criterion == "apoz":
        return relevance_scores(model, _need(x, criterion), batch_size, "apoz", graph=graph)
    if criterion == "l1":
        return l1_scores(graph)
    if criterion == "random":
        return random_scores(graph, seed)
    raise InputError(f"unknown trim criterion '{criterion}' (choose from {', '.join(CRITERIA)})")


def _need(x, criterion):
    if x is None:
        raise DataError(f"criterion '{criterion}' needs representative images, got x=None")
    return x


def check_data(model, x):
    """``x`` as float32 array(s) whose shape fits the model input(s); DataError otherwise."""
    shapes = [tuple(t.shape) for t in model.inputs]
    xs = x if isinstance(x, (list, tuple)) else [x]
    if len(xs) != len(shapes):
        raise DataError(f"model has {len(shapes)} inputs but {len(xs)} arrays were given")
    out = []
    for arr, shape in zip(xs, shapes):
        try:
            arr = np.asarray(arr, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise DataError(f"images are not numeric: {exc}") from None
        want = tuple(d for d in shape[1:])
        if arr.ndim != len(shape) or any(w is not None and w != g for w, g in zip(want, arr.shape[1:])):
            raise DataError(f"images of shape {arr.shape} do not fit model input (batch, "
                            f"{', '.join(str(d) for d in want)})")
        if len(arr) == 0:
            raise DataError("no images given")
        if not np.all(np.isfinite(arr)):
            raise DataError("images contain NaN or infinity")
        if len(out) and len(arr) != len(out[0]):
            raise DataError("input arrays have different numbers of images")
        out.append(arr)
    return out if isinstance(x, (list, tuple)) else out[0]
