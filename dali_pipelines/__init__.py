"""DALI pipelines of the service (import :mod:`dali_pipelines.video_decode` explicitly: it imports nvidia.dali).

This package's ``__init__`` imports nothing heavy, so that listing or packaging it needs no DALI.
"""

__all__: list[str] = []
