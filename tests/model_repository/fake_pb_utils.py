"""A small stand-in for ``triton_python_backend_utils`` (only importable inside Triton) for unit tests."""

from __future__ import annotations

import types
from typing import Any

import numpy as np


class TritonError(Exception):
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE = 0, 1, 2, 3, 4

    def __init__(self, msg: str, code: int = 1) -> None:
        super().__init__(msg)
        self._msg, self.code = msg, code

    def message(self) -> str:
        return self._msg


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class InferenceRequest:
    def __init__(self, tensors: list[Tensor]) -> None:
        self.tensors = {t.name(): t for t in tensors}


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None) -> None:
        self.outputs = {t.name(): t.as_numpy() for t in output_tensors or []}
        self._error = error

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return request.tensors.get(name)


class Logger:
    messages: list[str] = []

    @classmethod
    def log_info(cls, msg: str) -> None:
        cls.messages.append(msg)

    log_warn = log_error = log_verbose = log_info


def module() -> types.ModuleType:
    """A fresh module object exposing the fake API."""
    mod = types.ModuleType("triton_python_backend_utils")
    for name in (
        "TritonError",
        "Tensor",
        "InferenceRequest",
        "InferenceResponse",
        "Logger",
        "get_input_tensor_by_name",
    ):
        setattr(mod, name, globals()[name])
    return mod


def request(**arrays: Any) -> InferenceRequest:
    """A request with one tensor per keyword."""
    return InferenceRequest([Tensor(k, np.asarray(v)) for k, v in arrays.items()])
