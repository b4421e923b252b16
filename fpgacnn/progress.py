"""Progress output for long stages: bars on a terminal, silence in CI and with --quiet.

One switch for the whole process, set by the CLI, so library code can ask for a bar
without knowing who called it. Bars go to stderr; stdout stays clean for --json.
"""
from __future__ import annotations

import sys

_state = {"quiet": False, "verbose": False}


def configure(quiet: bool = False, verbose: bool = False) -> None:
    _state["quiet"], _state["verbose"] = bool(quiet), bool(verbose)


def bars_enabled() -> bool:
    return not _state["quiet"] and sys.stderr.isatty()


def is_quiet() -> bool:
    return _state["quiet"]


def is_verbose() -> bool:
    return _state["verbose"]


def bar(iterable=None, total=None, desc: str = "", unit: str = "it"):
    """A tqdm bar when enabled, else a no-op wrapper with the same ``update``/``close``."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr,
                disable=not bars_enabled(), dynamic_ncols=True)


def epoch_callback(epochs: int, desc: str):
    """A Keras callback that advances one bar per epoch and shows the loss."""
    from tensorflow import keras

    class _EpochBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self._bar = bar(total=epochs, desc=desc, unit="epoch")

        def on_epoch_end(self, epoch, logs=None):
            self._bar.update(1)
            if logs and "loss" in logs:
                self._bar.set_postfix(loss=f"{logs['loss']:.4f}")

        def on_train_end(self, logs=None):
            self._bar.close()

    return _EpochBar()
