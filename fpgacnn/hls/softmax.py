"""Types and table sizes for hls4ml's softmax so the hardware argmax equals the logits' argmax.

hls4ml's ``stable`` softmax computes, for logits ``x`` of one sample::

    d_j = x_max - x_j                        in inp_norm_t (table index = the top bits of d_j)
    e_j = exp_table[d_j]  (= exp(-d_j))      in exp_table_t, then accum_t
    s   = sum_j e_j                          in accum_t, then inv_inp_t
    p_j = e_j * inv_table[s]  (= e_j / s)    in the result type

The winner has ``d = 0`` and so ``e = exp(0) = 1`` exactly. Its output is strictly the
largest, and the hardware argmax equals the logits' argmax (ties go to the lower index on
both sides, as equal logits give equal outputs), when:

1. every non-zero ``d`` lands on a non-zero table index: the table step ``2^-f`` must not
   exceed the smallest gap between the top logit and any other. With ``f`` = the logits'
   own fractional bits this holds for every input. That table has ``2^(D + f)`` entries
   (``D = DIFF_INT_BITS``: differences saturate at ``2^D``, where ``exp(-d) < 4e-4``), so
   when it would exceed ``MAX_EXACT_TABLE`` entries, ``f`` is the fewest bits that separate
   the top logit from the others on the logits given (the test vectors), but at least
   ``log2(MAX_EXACT_TABLE) - D``; the guarantee then covers those inputs. Test logits
   closer than a ``MAX_TABLE``-entry table resolves are refused (``InputError``): the
   logits stay exact with the softmax on the host;
2. ``exp(-2^-f)`` rounds below 1 in ``exp_table_t`` (``EXP_FRAC_BITS >= f + 2`` fractional bits);
3. ``accum_t`` keeps all of ``exp_table_t``'s fractional bits and holds the sum of ``n`` ones;
4. the result type is fine enough that ``(1 - e_j) * inv >= 2^-F_exp * 2^-(I_s + 1)`` survives
   truncation: ``F_exp + I_s + 1`` fractional bits, where ``s < 2^I_s``.

``inv_table`` is indexed by the top ``log2(INV_TABLE_SIZE)`` bits of ``s`` (truncated), so
``inv >= 1/s``: probabilities are over-estimated by at most one table step (about 1.5% at
``s = 1`` for 10 classes) and never exceed 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .fixed import Fixed

__all__ = ["SoftmaxTypes", "softmax_types", "separating_bits", "DIFF_INT_BITS", "MAX_EXACT_TABLE", "MAX_TABLE",
           "INV_TABLE_SIZE"]

DIFF_INT_BITS = 3
MAX_EXACT_TABLE = 4096  # 18-bit entries: 4 BRAM_18K
MAX_TABLE = 65536
INV_TABLE_SIZE = 1024
EXP_FRAC_BITS = 17


@dataclass(frozen=True)
class SoftmaxTypes:
    inp_norm: Fixed
    exp_table: Fixed
    accum: Fixed
    inv_inp: Fixed
    inv_table: Fixed
    result: Fixed
    exp_table_size: int
    inv_table_size: int
    every_input: bool  # argmax guaranteed for every input, not only the logits given

    def hls_layer_config(self) -> dict:
        """Keys for the softmax layer's entry in hls4ml's ``LayerName`` config."""
        return {
            "Implementation": "stable",
            "TableSize": self.exp_table_size,
            "exp_table_size": self.exp_table_size,
            "inv_table_size": self.inv_table_size,
            # hls4ml takes these table types only as top-level '<name>_t' keys of the layer config
            "inp_norm_t": self.inp_norm.cpp(),
            "exp_table_t": self.exp_table.cpp(),
            "inv_table_t": self.inv_table.cpp(),
            "inv_inp_t": self.inv_inp.cpp(),
            "Precision": {"result": self.result.cpp(), "accum": self.accum.cpp()},
        }

    def manifest(self) -> dict:
        return {"implementation": "stable", "exp_table_size": self.exp_table_size,
                "inv_table_size": self.inv_table_size, "inp_norm_t": self.inp_norm.cpp(),
                "exp_table_t": self.exp_table.cpp(), "inv_table_t": self.inv_table.cpp(),
                "inv_inp_t": self.inv_inp.cpp(), "accum_t": self.accum.cpp(), "result_t": self.result.cpp(),
                "argmax_guarantee": "every input" if self.every_input else "test vectors"}


def separating_bits(logits) -> int:
    """Fewest fractional bits ``f`` with ``2^-f`` <= every gap between a row's top logit and the others."""
    z = np.asarray(logits, np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        return 0
    gaps = z.max(axis=1, keepdims=True) - z
    gaps = gaps[gaps > 0]
    if gaps.size == 0:
        return 0
    return max(0, math.ceil(-math.log2(float(gaps.min()))))


def softmax_types(logits: Fixed, n: int, logit_values=None) -> SoftmaxTypes:
    """Softmax settings for ``n`` logits of type ``logits``; ``logit_values`` are the test logits."""
    f_exact = max(logits.frac, 0)
    exact_bits = DIFF_INT_BITS + f_exact
    if 2 ** exact_bits <= MAX_EXACT_TABLE:
        f, every = f_exact, True
    else:
        floor_bits = int(math.log2(MAX_EXACT_TABLE)) - DIFF_INT_BITS
        need = separating_bits(logit_values) if logit_values is not None else 0
        f = min(f_exact, max(floor_bits, need))
        if 2 ** (DIFF_INT_BITS + f) > MAX_TABLE:
            raise InputError(f"hardware softmax: two test logits differ by only 2^-{need}, which needs a "
                             f"{2 ** (DIFF_INT_BITS + f)}-entry exp table (limit {MAX_TABLE}); use softmax='host'")
        every = f == f_exact
    inp_norm = Fixed(DIFF_INT_BITS + f, DIFF_INT_BITS, False, "AP_TRN", "AP_SAT")
    fe = max(EXP_FRAC_BITS, f + 2)
    exp_table = Fixed(fe + 1, 1, False, "AP_RND", "AP_SAT")  # [0, 2): exp(0) = 1 is exact
    sum_int = max(1, math.floor(math.log2(n)) + 1)  # sum of n values <= 1 stays below 2^sum_int
    accum = Fixed(sum_int + fe, sum_int, False)
    inv_bits = int(math.log2(INV_TABLE_SIZE))
    inv_inp = Fixed(max(inv_bits, sum_int + fe), sum_int, False, "AP_TRN", "AP_SAT")
    inv_table = Fixed(EXP_FRAC_BITS + 1, 1, False, "AP_RND", "AP_SAT")  # 1/s for s >= 1
    result = Fixed(1 + fe + sum_int + 1, 1, False)
    return SoftmaxTypes(inp_norm, exp_table, accum, inv_inp, inv_table, result, 2 ** (DIFF_INT_BITS + f),
                        INV_TABLE_SIZE, every)
