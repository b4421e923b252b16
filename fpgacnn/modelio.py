"""Loading users' model files: clear errors, QKeras layers known, no code from the file.

Keras can deserialize Lambda layers and custom classes by executing code stored in the
model file. We load with Keras' safe mode and without custom objects beyond QKeras', so a
model file cannot run code on the user's machine unless they opt in (``allow_code``).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import ModelLoadError


def _custom_objects() -> dict:
    from qkeras.utils import _add_supported_quantized_objects

    objs: dict = {}
    _add_supported_quantized_objects(objs)
    return objs


def file_sha256(path) -> str:
    """sha256 of a model file or, for a SavedModel directory, of its files in sorted order."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def load_model(path, allow_code: bool = False):
    """A Keras model from .h5, .keras or a SavedModel directory, or a ModelLoadError."""
    from tensorflow import keras

    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file '{path}' does not exist")
    if path.is_dir() and not (path / "saved_model.pb").is_file():
        raise ModelLoadError(f"'{path}' is a directory but not a SavedModel (no saved_model.pb)")
    if not allow_code:
        _refuse_code_layers(path)
    kwargs = {"custom_objects": _custom_objects(), "compile": False}
    if path.suffix == ".keras":
        kwargs["safe_mode"] = not allow_code
    try:
        model = keras.models.load_model(path, **kwargs)
    except Exception as exc:  # Keras raises many types for bad files; the message is what matters.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load model '{path}': {first[:300]}") from None
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"'{path}' does not hold a Keras model")
    return model


def _stored_config(path: Path) -> str | None:
    """The model config JSON stored in an .h5 or .keras file, read without deserializing."""
    import zipfile

    try:
        if path.suffix == ".keras" and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return zf.read("config.json").decode("utf-8", "replace")
        if path.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                cfg = f.attrs.get("model_config")
                return cfg.decode() if isinstance(cfg, bytes) else cfg
    except Exception:
        return None  # unreadable here: load_model reports the real problem
    return None


def _refuse_code_layers(path: Path) -> None:
    """Lambda layers carry (marshalled) Python code; Keras would run it while loading."""
    import json

    text = _stored_config(path)
    if not text:
        return
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError:
        return
    stack = [cfg]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                name = (node.get("config") or {}).get("name", "?")
                raise ModelLoadError(
                    f"model '{path}' contains Lambda layer '{name}', which runs code stored in the file; "
                    "refusing to load it (allow_code=True / --allow-code if you trust the file)"
                )
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
