"""Client of the MINTIME Triton service (gRPC): :class:`client.api.MintimeClient` and the ``mintime-client`` tool.

Light on purpose: it needs numpy, tritonclient[grpc], tqdm and :mod:`mintime.contract` only (no torch), and
importing this package imports none of them until :mod:`client.api` is used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MintimeClient", "MintimeClientError", "Prediction"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from client import api

        return getattr(api, name)
    raise AttributeError(f"module 'client' has no attribute {name!r}")
