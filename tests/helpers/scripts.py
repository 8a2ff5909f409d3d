"""Import a script of the repository (a benchmark, a Triton ``model.py``) by its path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_script(path: Path, name: str | None = None, *, register: bool = True) -> ModuleType:
    """The module in ``path``, imported under ``name`` (default: the file's stem).

    ``register`` puts it in ``sys.modules`` first (dataclasses and pickling look their module up there)."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
