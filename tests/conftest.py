"""Shared fixtures and the central skips (markers are declared in pyproject.toml)."""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: Real footage and parity fixtures live outside the repository (never committed).
SHARED = Path(os.environ.get("MINTIME_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
PARITY = SHARED / "fixtures" / "parity"


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = {
        "needs_cuda": None if _cuda() else "no CUDA GPU on this machine",
        "needs_trt": None if _has("tensorrt") else "TensorRT is not installed (only in NGC containers)",
        "needs_dali": None if _has("nvidia.dali") else "nvidia.dali is not installed",
        "needs_triton": None
        if _has("pytriton")
        else "nvidia-pytriton (bundled tritonserver) is not installed",
        "needs_data": None
        if DATA.is_dir()
        else f"shared test footage not found at {DATA} (set MINTIME_SHARED)",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(autouse=True)
def _restore_rng():
    """Keep tests independent of each other's random draws."""
    py, np_state = random.getstate(), np.random.get_state()
    try:
        import torch

        t = torch.get_rng_state()
    except ImportError:
        torch, t = None, None
    yield
    random.setstate(py)
    np.random.set_state(np_state)
    if torch is not None:
        torch.set_rng_state(t)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared test footage not found at {DATA} (set MINTIME_SHARED)")
    return DATA


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not PARITY.is_dir():
        pytest.skip(f"parity fixtures not found at {PARITY} (set MINTIME_SHARED)")
    return PARITY
