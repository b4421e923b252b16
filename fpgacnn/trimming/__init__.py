"""Relevance-based trimming: score kernels on representative images, remove the weakest.

Method: Ressi et al., "Relevance-based trimming of CNNs" (AIxIA 2021). Kernels (conv
filters, dense units) are scored by their post-activation output over the images and
the least relevant ones are physically removed, with every dependent slice (batch
norm entries, next layer's input channels, Dense rows behind a Flatten).

Modules: ``graph`` (which slices depend on which kernels), ``relevance`` (scores and
criteria), ``surgery`` (rebuild and weight slicing), ``core`` (selection, report).
"""
from __future__ import annotations

from fpgacnn.trimming.core import TrimResult, trim, trim_model
from fpgacnn.trimming.graph import ChannelGraph, ChannelGroup
from fpgacnn.trimming.relevance import relevance_scores
from fpgacnn.trimming.surgery import count_macs, masked_copy

__all__ = ["ChannelGraph", "ChannelGroup", "TrimResult", "count_macs", "masked_copy",
           "relevance_scores", "trim", "trim_model"]

