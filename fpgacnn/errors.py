"""Every error fpgacnn raises on purpose.

One module so the CLI can map them to exit codes and one-line messages, and so API
users can catch ``FpgacnnError`` without catching TensorFlow's internals.
Exit codes: 2 for bad usage or input (``InputError``), 1 for a check that failed
(``CheckFailed``), 1 for a tool that failed (``ToolError``).
"""
from __future__ import annotations


class FpgacnnError(Exception):
    """Base class: the message is one line a user can act on."""

    exit_code = 1


class InputError(FpgacnnError):
    """The user gave us something we cannot work with (file, model, data, option)."""

    exit_code = 2


class ModelLoadError(InputError):
    """A model file is missing, corrupt or not a Keras model."""


class UnsupportedLayerError(InputError):
    """A layer type the stage cannot handle; names the layer and its type."""

    def __init__(self, layer_name: str, layer_type: str, stage: str = "", hint: str = ""):
        self.layer_name = layer_name
        self.layer_type = layer_type
        where = f" for {stage}" if stage else ""
        msg = f"unsupported layer '{layer_name}' of type {layer_type}{where}"
        if hint:
            msg += f": {hint}"
        super().__init__(msg)


class DataError(InputError):
    """Data whose shape, dtype, labels or size do not fit the model or the stage."""


class OutputExistsError(InputError):
    """Refuse to overwrite a non-empty output directory unless asked (--force)."""

    def __init__(self, path):
        self.path = path
        super().__init__(f"output directory '{path}' exists and is not empty (use --force to replace it)")


class ToolError(FpgacnnError):
    """An external tool (g++, the testbench binary, a vendor tool) is missing or failed."""


class CheckFailed(FpgacnnError):
    """A verification ran and said no (e.g. csim not bit-exact)."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived (see ``fpgacnn.atomic.signals_as_exceptions``).

    A ``BaseException`` like ``KeyboardInterrupt``: ``except Exception`` blocks must not
    swallow it, but ``finally`` blocks run, so temporary outputs are removed on the way out.
    The CLI exits with the shell's code for the signal, 128 + its number.
    """

    def __init__(self, signum: int):
        import signal

        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        try:
            name = signal.Signals(self.signum).name
        except ValueError:
            name = f"signal {self.signum}"
        super().__init__(f"terminated by {name}")


class BudgetError(InputError):
    """No design meets the resource and frame-rate budget; names the bottleneck and by how much."""
