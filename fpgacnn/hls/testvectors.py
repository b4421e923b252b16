"""Test-vector files in ``tb_data/``: one sample a line, values printed exactly.

Every value we write is a float32 (inputs on the input grid, QKeras logits); ``repr`` of its
float64 widening is the shortest string that reads back to exactly that value, in C++ too.
The expected outputs are the QKeras logits even when the design ends in a hardware softmax:
the manifest's ``testbench.compare = "argmax"`` then says to compare each sample's argmax.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

INPUTS = "tb_data/tb_input_features.dat"
EXPECTED = "tb_data/tb_output_predictions.dat"
FLOAT = "tb_data/float_predictions.dat"
LABELS = "tb_data/labels.dat"


def format_row(values) -> str:
    return " ".join(repr(float(v)) for v in np.asarray(values, dtype=np.float64).reshape(-1))


def write_matrix(path: Path, rows) -> None:
    rows = np.asarray(rows)
    rows = rows.reshape(len(rows), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        for row in rows:
            fh.write(format_row(row) + "\n")


def write_labels(path: Path, labels) -> None:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1).astype(np.int64)
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        for v in labels:
            fh.write(f"{int(v)}\n")


def read_matrix(path) -> np.ndarray:
    """Rows of floats from a ``.dat``/``.log`` file (blank lines skipped)."""
    rows = [[float(t) for t in line.split()] for line in Path(path).read_text().splitlines() if line.strip()]
    return np.asarray(rows, dtype=np.float64)
