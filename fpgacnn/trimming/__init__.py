"""Relevance-based trimming: score kernels on representative images, remove the weakest.

Method: Ressi et al., "Relevance-based trimming of CNNs" (AIxIA 2021). Kernels (conv
filters, dense units) are scored by their post-activation output over the images and
the least relevant ones are physically removed, with every dependent slice (batch
norm entries, next layer's input channels, Dense rows behind a Flatten).

Modules: ``graph`` (which slices depend on which kernels), ``relevance`` (scores and
criteria), ``select`` (normalisation, layer/global ranking, floors), ``surgery``
(rebuild, weight slicing, size of a trimmed model), ``core`` (one trim and its
report), ``calibrate`` (batch-norm statistics after a cut), ``schedule`` (one-shot or
iterative trimming to a size target, fine-tuned).
"""
from __future__ import annotations

from fpgacnn.trimming.calibrate import recalibrate_batchnorm
from fpgacnn.trimming.core import TrimResult, trim, trim_model
from fpgacnn.trimming.graph import ChannelGraph, ChannelGroup
from fpgacnn.trimming.relevance import relevance_scores
from fpgacnn.trimming.schedule import trim_schedule
from fpgacnn.trimming.select import normalize_scores
from fpgacnn.trimming.surgery import count_macs, masked_copy, trimmed_size

__all__ = ["ChannelGraph", "ChannelGroup", "TrimResult", "count_macs", "masked_copy",
           "normalize_scores", "recalibrate_batchnorm", "relevance_scores", "trim", "trim_model", "trim_schedule",
           "trimmed_size"]

