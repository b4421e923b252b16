"""A generated HLS project on disk: the handle every later stage works from.

Everything a stage needs is read from the project directory itself (``fpgacnn.json``
and ``tb_data/``), so a project generated on one machine can be checked on another.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

MANIFEST = "fpgacnn.json"


@dataclass
class Project:
    dir: Path
    name: str
    manifest: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path) -> "Project":
        path = Path(path)
        mf = path / MANIFEST
        if not mf.is_file():
            raise InputError(f"'{path}' is not an fpgacnn project (no {MANIFEST})")
        try:
            manifest = json.loads(mf.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"'{mf}' is not valid JSON: {exc}") from None
        return cls(dir=path, name=manifest.get("project", {}).get("name", path.name), manifest=manifest)
