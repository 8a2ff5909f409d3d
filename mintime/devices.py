"""The torch device a command runs on (predict, train, evaluate), checked up front: a wrong ``--device`` is one line."""

from __future__ import annotations

import logging

__all__ = ["check_device"]

logger = logging.getLogger(__name__)


def check_device(name: str):
    """The ``torch.device`` for ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``), after checking that it exists
    here; ``auto`` is ``cuda`` where torch sees a CUDA GPU, else ``cpu``.

    Raises:
        ValueError: not a device name torch knows, or a CUDA device this torch build / machine does not have.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = (
                "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            )
            raise ValueError(
                f"device {name!r} is not available: torch {torch.__version__} ({build}) sees no CUDA GPU; "
                "use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} is not available: {torch.cuda.device_count()} CUDA GPU(s) here"
            )
    elif dev.type != "cpu":
        raise ValueError(f"device {name!r} is not supported here: use cpu, cuda or cuda:N")
    return dev
