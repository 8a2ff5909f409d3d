"""backbone (Python backend): face slots -> feature maps, for the pip-installed server without TensorRT.

Inputs/outputs: mintime.contract.BACKBONE. Runs <version>/model.onnx with ONNX Runtime when `mintime export`
wrote one, else PyTorch with the checkpoint's weights (mintime.engines.load_runner). Dynamic batching
hands several requests to one execute(): they run as one batch.
"""

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from mintime.serving.backend import (
    instance_device,
    model_parameters,
    resolve_checkpoint,
    split_outputs,
    stack_inputs,
)

NETWORK = "backbone"
INPUTS = ("face_slots_faces",)


def _error(message, code="INTERNAL"):
    codes = getattr(pb_utils.TritonError, code, None)
    return pb_utils.TritonError(message) if codes is None else pb_utils.TritonError(message, codes)


class TritonPythonModel:
    def initialize(self, args):
        from mintime.engines import load_runner

        params = model_parameters(json.loads(args["model_config"]))
        model_dir = Path(args["model_repository"])
        device = instance_device(
            args["model_instance_kind"], args["model_instance_device_id"], params.get("device", "")
        )
        self.runner = load_runner(
            NETWORK,
            version_dir=model_dir / str(args["model_version"]),
            runtime=params.get("runtime", "auto") or "auto",
            checkpoint=resolve_checkpoint(params.get("checkpoint", ""), model_dir),
            device=device,
        )
        pb_utils.Logger.log_info(f"{NETWORK}: {self.runner.description}")

    def execute(self, requests):
        per_request = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in INPUTS} for r in requests
        ]
        try:
            batch, sizes = stack_inputs(per_request)
            outputs = split_outputs(self.runner(batch), sizes)
        except Exception as exc:  # the whole batch failed: every request gets the error
            message = f"{NETWORK}: {type(exc).__name__}: {exc}"
            return [pb_utils.InferenceResponse(error=_error(message)) for _ in requests]
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, a) for n, a in out.items()])
            for out in outputs
        ]
