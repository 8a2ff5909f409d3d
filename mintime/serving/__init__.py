"""Serving: the local Triton server (``mintime serve``) and the helpers behind the Python-backend models.

Importing this package is cheap (no torch, no tritonclient): :mod:`mintime.serving.server` starts the
``tritonserver`` bundled with nvidia-pytriton, :mod:`mintime.serving.backend` holds the pure functions the
``model_repository/*/1/model.py`` files call, :mod:`mintime.engines` loads the two networks for the
Python-backend variant of the ``backbone`` and ``temporal`` models.
"""

__all__: list[str] = []
