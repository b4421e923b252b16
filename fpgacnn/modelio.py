"""Loading users' model files: clear errors, QKeras layers known, no code from the file.

Keras can deserialize Lambda layers and custom classes by executing code stored in or
named by the model file. We scan the stored config before deserializing anything, load with
Keras' safe mode and without custom objects beyond QKeras', so a model file cannot run code
on the user's machine unless they opt in (``allow_code``).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .errors import InputError, ModelLoadError
from .hls.identifiers import safe_text
from .validate import check_model_weights


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
    """A Keras model from .h5, .keras or a SavedModel directory, or a ModelLoadError.

    The file's format is decided from its content (HDF5 signature, zip archive, directory)
    before Keras sees it, so a corrupt, truncated or mislabelled file gets a message that
    says so. Unless ``allow_code``, the stored config is scanned first and refused if
    loading it would run code (see ``_refuse_code``). Weights must be finite.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file '{path}' does not exist")
    kind = _model_format(path)
    if not allow_code:
        _refuse_code(path, kind)
    from tensorflow import keras  # only now: a broken or refused file is reported without it
    kwargs = {"custom_objects": _custom_objects(), "compile": False}
    if kind == "keras":
        kwargs["safe_mode"] = not allow_code
    try:
        model = keras.models.load_model(path, **kwargs)
    except Exception as exc:  # Keras raises many types for bad files; the message is what matters.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load model '{path}': {first[:300]}") from None
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"'{path}' does not hold a Keras model")
    try:
        check_model_weights(model, f"model '{path}'")
    except InputError as exc:
        raise ModelLoadError(str(exc)) from None
    return model


def _model_format(path: Path) -> str:
    """'h5', 'keras' or 'savedmodel', from what the file is rather than what it is called."""
    import zipfile

    import h5py

    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelLoadError(f"'{path}' is a directory but not a SavedModel (no saved_model.pb)")
        return "savedmodel"
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file '{path}' is empty")
    if h5py.is_hdf5(path):
        return "h5"
    if zipfile.is_zipfile(path):
        if path.suffix != ".keras":
            raise ModelLoadError(f"model file '{path}' is a zip archive; a Keras v3 model must be named *.keras")
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError):
            names = []
        if "config.json" not in names:
            raise ModelLoadError(f"model file '{path}' is a zip archive but not a .keras model (no config.json)")
        return "keras"
    if path.suffix == ".keras":
        raise ModelLoadError(f"model file '{path}' is not a valid .keras archive (corrupt or truncated)")
    if path.suffix in (".h5", ".hdf5"):
        raise ModelLoadError(f"model file '{path}' is not an HDF5 file (corrupt, or not a Keras .h5 model)")
    raise ModelLoadError(f"'{path}' is not a Keras model: expected an .h5/.hdf5 file, a .keras archive "
                         "or a SavedModel directory")


def _stored_configs(path: Path, kind: str) -> list:
    """The model config(s) stored in the file, parsed from JSON without deserializing anything.

    A SavedModel keeps one JSON document per layer in ``keras_metadata.pb``.
    """
    import json
    import zipfile

    texts: list = []
    try:
        if kind == "keras":
            with zipfile.ZipFile(path) as zf:
                texts.append(zf.read("config.json").decode("utf-8", "replace"))
        elif kind == "h5":
            import h5py

            with h5py.File(path, "r") as f:
                cfg = f.attrs.get("model_config")
                texts.append(cfg.decode("utf-8", "replace") if isinstance(cfg, bytes) else cfg)
        elif kind == "savedmodel" and (path / "keras_metadata.pb").is_file():
            from keras.protobuf import saved_metadata_pb2

            meta = saved_metadata_pb2.SavedMetadata()
            meta.ParseFromString((path / "keras_metadata.pb").read_bytes())
            texts.extend(node.metadata for node in meta.nodes)
    except Exception:
        return []  # unreadable here: keras.models.load_model reports the real problem
    out = []
    for text in texts:
        if not text:
            continue
        try:
            out.append(json.loads(text))
        except (TypeError, ValueError):
            continue
    return out


# Modules Keras may import while loading a .keras file: its own, QKeras' and TensorFlow's.
_SAFE_MODULES = ("keras", "qkeras", "tensorflow", "tf_keras")
# Layers whose config names code or functions that run when the model is built or called.
_CODE_LAYERS = {
    "Lambda": "runs Python code stored in the file",
    "TFOpLambda": "calls a TensorFlow function named in the file",
    "SlicingOpLambda": "calls a TensorFlow function named in the file",
}


def _refuse_code(path: Path, kind: str) -> None:
    """Refuse configs that would run code while loading or predicting.

    Lambda layers carry marshalled Python bytecode that Keras runs while rebuilding the
    model; a .keras config may name any Python module, which Keras imports (running its
    top-level code) even in safe mode, e.g. to find a custom layer class.
    """
    stack = _stored_configs(path, kind)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            cls = node.get("class_name")
            if isinstance(cls, str) and cls in _CODE_LAYERS:
                cfg = node.get("config")
                name = cfg.get("name", "?") if isinstance(cfg, dict) else "?"
                raise ModelLoadError(
                    f"model '{path}' contains {cls} layer '{safe_text(name, 80)}', which {_CODE_LAYERS[cls]}; "
                    "refusing to load it (allow_code=True / --allow-code if you trust the file)")
            module = node.get("module")
            if isinstance(module, str) and module.split(".")[0] not in _SAFE_MODULES:
                raise ModelLoadError(
                    f"model '{path}' refers to '{safe_text(cls, 80)}' in Python module '{safe_text(module, 80)}', "
                    "which Keras would import to load it; refusing to load it "
                    "(allow_code=True / --allow-code if you trust the file)")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def save_model(model, path) -> Path:
    """``model.save(path)`` that never leaves a half-written file: saved under a temporary
    name in the same directory (same suffix, so Keras picks the same format), then renamed."""
    import shutil
    import tempfile

    from .atomic import deferred_signals, replace_dir

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        staged = tmp_dir / path.name
        model.save(staged)
        if staged.is_dir():
            replace_dir(staged, path)
        else:
            os.replace(staged, path)
    finally:
        with deferred_signals():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return path
