"""Exceptions that mean "the user gave something wrong" (the CLI prints them without a traceback)."""

from __future__ import annotations

import importlib

__all__ = ["UserError", "USER_ERRORS"]


class UserError(Exception):
    """Base of errors that mean "the user asked for something this setup cannot do" (one line, no traceback)."""


def _collect() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [FileNotFoundError, ValueError, UserError]
    for module, name in (
        ("mintime.checkpoints", "CheckpointError"),
        ("mintime.video", "VideoDecodeError"),
        ("mintime.networks", "WeightsNotFoundError"),
    ):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


USER_ERRORS: tuple[type[BaseException], ...] = _collect()
