"""Fold a quantized activation into the Conv/Dense layer that feeds it.

hls4ml builds a QKeras ``QConv2D -> QActivation(quantized_relu)`` pair as two dataflow
processes: the convolution writes its exact, wide accumulator (about 20 bits) into a
stream, and a ReLU process reads it, rounds and saturates it to the activation's 8 bits.
In io_stream every channel is a lane of its own, so each conv channel pays for a wide
FIFO, a ReLU comparator and a rounding/saturation lane, and a FIFO behind it: in a
trimmed VGG on a Zynq-7020 the ReLU processes alone take more LUTs than the arithmetic.

The convolution already converts its accumulator into its output type (``cast`` in
``nnet_dense_latency.h`` / ``nnet_dense_resource.h``); ``ap_ufixed<b, i, AP_RND_CONV,
AP_SAT>`` of an exact sum is exactly ``quantized_relu(b, i)`` of it (a negative sum rounds
to a value <= 0, which unsigned saturation makes 0). So the producer is given the
activation's type, and the activation, now the identity on its input, is removed from
the hls4ml graph. The same holds for a ``quantized_bits`` activation (signed type, same
cast). Bit-exactness is checked like every design, by the C simulation against QKeras.

Two steps, because hls4ml gets explicit per-layer types from ``fpgacnn.hls.precision``:
``fold_activation_types`` (on the Keras graph, before the hls4ml config is written) and
``remove_identity_activations`` (on the converted hls4ml graph, before it is written or
estimated).
"""
from __future__ import annotations

PRODUCERS = ("QConv2D", "QDense", "QDepthwiseConv2D")


def foldable_activations(graph) -> dict[str, str]:
    """``{QActivation name: producer name}`` for each QActivation that is the only reader
    of a Conv/Dense layer (``graph``: ``fpgacnn.quant.graph.ModelGraph``)."""
    by_name = {n.name: n for n in graph.nodes}
    readers = graph.consumers()
    pairs = {}
    for node in graph.nodes:
        if node.class_name != "QActivation" or len(node.inputs) != 1:
            continue
        src = by_name.get(node.inputs[0])
        if src is not None and src.class_name in PRODUCERS and readers[src.name] == [node.name]:
            pairs[node.name] = src.name
    return pairs


def fold_activation_types(precisions: list, pairs: dict[str, str]) -> list:
    """Give each producer in ``pairs`` its activation's (rounding, saturating) result type;
    the accumulator stays exact. ``precisions``: ``LayerPrecision`` list, changed in place."""
    by_name = {lp.name: lp for lp in precisions}
    for act, producer in pairs.items():
        a, p = by_name[act], by_name[producer]
        p.result = a.result
        p.info["activation_folded"] = act
        a.info["folded_into"] = producer
    return precisions


def folded_names(precisions: list) -> list[str]:
    """Names of the activations ``fold_activation_types`` folded, in model order."""
    return [lp.name for lp in precisions if "folded_into" in lp.info]


class RemoveIdentityActivation:
    """hls4ml-graph pass: drop an activation that cannot change any value it reads.

    ``relu`` on an unsigned input, or ``linear``, whose output type has the input's
    width, integer bits and signedness (rounding and saturation modes never act then).
    """

    def match(self, node) -> bool:
        if node.class_name not in ("Activation", "ReLU") or len(node.inputs) != 1:
            return False
        act = str(node.get_attr("activation", "")).lower()
        try:
            tin = node.get_input_variable().type.precision
            tout = node.get_output_variable().type.precision
        except Exception:  # noqa: BLE001 - a node without typed variables is not ours to touch
            return False
        from hls4ml.model.types import FixedPrecisionType

        if not (isinstance(tin, FixedPrecisionType) and isinstance(tout, FixedPrecisionType)):
            return False
        same_grid = (tin.width, tin.integer, tin.signed) == (tout.width, tout.integer, tout.signed)
        return same_grid and (act == "linear" or (act == "relu" and not tin.signed))

    def transform(self, model, node) -> bool:
        removed, kept = node.get_output_variable(), node.get_input_variable()
        model.remove_node(node)
        # hls4ml makes a Flatten (io_stream) or Reshape (io_parallel) output an alias of its
        # input; one that aliased the activation's output now aliases what it read
        for var in model.output_vars.values():
            if getattr(var, "input_var", None) is removed:
                var.input_var, var.type = kept, kept.type
        return True


def remove_identity_activations(hls_model, only=None) -> list[str]:
    """Apply ``RemoveIdentityActivation`` to the converted ``hls_model`` (restricted to the
    layer names in ``only`` when given) and regenerate its C++ calls. Returns the names of
    ``only`` no longer in the graph, in ``only``'s order (hls4ml's own pass already drops
    a ``linear`` one while converting); without ``only``, the names removed."""
    rule = RemoveIdentityActivation()
    removed = []
    for node in list(hls_model.get_layers()):
        if (only is None or node.name in only) and rule.match(node):
            rule.transform(hls_model, node)
            removed.append(node.name)
    if removed:
        # function calls were formatted at conversion with the removed layer's stream name
        hls_model.apply_flow(f"{hls_model.config.backend.name.lower()}:apply_templates")
    if only is None:
        return removed
    return [name for name in only if name not in hls_model.graph]
