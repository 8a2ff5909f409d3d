"""Shared pieces of the Python-backend ``model.py`` files (importable only inside Triton's Python stub).

``triton_python_backend_utils`` is looked up on every call rather than bound at import, so that tests can
install a fake module per test (``tests/model_repository/fake_pb_utils.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mintime import contract
from mintime.serving.backend import (
    instance_device,
    model_parameters,
    resolve_checkpoint,
    split_outputs,
    stack_inputs,
)

__all__ = ["triton_error", "NetworkModel"]


def _pb() -> Any:
    import triton_python_backend_utils as pb_utils

    return pb_utils


def triton_error(message: str, code: str = "INTERNAL") -> Any:
    """A ``pb_utils.TritonError`` with the given code name (``INVALID_ARG``, ``INTERNAL``, ...) when supported."""
    pb_utils = _pb()
    codes = getattr(pb_utils.TritonError, code, None)
    return pb_utils.TritonError(message) if codes is None else pb_utils.TritonError(message, codes)


class NetworkModel:
    """``TritonPythonModel`` for one of the two networks (``backbone`` or ``temporal``).

    Runs ``<version>/model.onnx`` with ONNX Runtime when ``mintime export`` wrote one, else PyTorch with the
    checkpoint's weights (:func:`mintime.engines.load_runner`). Dynamic batching hands several requests to one
    ``execute``: they run as one batch and the outputs are split back per request. Subclasses set ``NETWORK``.
    """

    NETWORK: str = ""

    @property
    def inputs(self) -> tuple[str, ...]:
        """The network's input tensor names, from :mod:`mintime.contract`."""
        spec = {"backbone": contract.BACKBONE, "temporal": contract.TEMPORAL}[self.NETWORK]
        return tuple(t.name for t in spec.inputs)

    def initialize(self, args: dict[str, Any]) -> None:
        from mintime.engines import load_runner

        params = model_parameters(json.loads(args["model_config"]))
        model_dir = Path(args["model_repository"])
        device = instance_device(
            args["model_instance_kind"], args["model_instance_device_id"], params.get("device", "")
        )
        self.runner = load_runner(
            self.NETWORK,
            version_dir=model_dir / str(args["model_version"]),
            runtime=params.get("runtime", "auto") or "auto",
            checkpoint=resolve_checkpoint(params.get("checkpoint", ""), model_dir),
            device=device,
        )
        _pb().Logger.log_info(f"{self.NETWORK}: {self.runner.description}")

    def execute(self, requests: list[Any]) -> list[Any]:
        pb_utils = _pb()
        per_request = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs}
            for r in requests
        ]
        try:
            batch, sizes = stack_inputs(per_request)
            outputs = split_outputs(self.runner(batch), sizes)
        except Exception as exc:  # the whole batch failed: every request gets the error
            message = f"{self.NETWORK}: {type(exc).__name__}: {exc}"
            return [pb_utils.InferenceResponse(error=triton_error(message)) for _ in requests]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in out.items()])
            for out in outputs
        ]
