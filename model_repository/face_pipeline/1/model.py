"""face_pipeline (Python backend): sampled frames -> the 16 face slots (mintime.pipeline.FaceAnalyzer).

Inputs/outputs: mintime.contract.FACE_PIPELINE. A video without a usable face is not an error: the slots are
empty and face_slots_json says status "no_face" (explain then reports P(fake) = NaN).
"""

import json

import triton_python_backend_utils as pb_utils

from mintime.serving.backend import (
    clip_from_arrays,
    instance_device,
    json_to_tensor,
    model_parameters,
    pipeline_config_from_parameters,
)
from mintime.serving.triton_models import triton_error

ARRAY_OUTPUTS = (
    "face_slots_faces",
    "face_slots_mask",
    "face_slots_identities_mask",
    "face_slots_size_ids",
    "face_slots_positions",
)


class TritonPythonModel:
    def initialize(self, args):
        from mintime.pipeline import FaceAnalyzer

        params = model_parameters(json.loads(args["model_config"]))
        device = instance_device(
            args["model_instance_kind"], args["model_instance_device_id"], params.get("device", "")
        )
        self.cfg = pipeline_config_from_parameters(params, device=device)
        self.analyzer = FaceAnalyzer(self.cfg)
        # load the detector and the embedder now, not on the first request
        _ = self.analyzer.detector, self.analyzer.embedder
        pb_utils.Logger.log_info(f"face_pipeline: {self.cfg}")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                arrays = [
                    pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                    for name in ("video_decode_frames", "video_decode_frame_indices", "video_decode_info")
                ]
                if any(a.shape[0] != 1 for a in arrays):
                    raise ValueError("face_pipeline takes one video per request")
                analysis = self.analyzer.analyze(clip_from_arrays(*(a[0] for a in arrays)))
                out = analysis.arrays()
                tensors = [pb_utils.Tensor(name, out[name][None]) for name in ARRAY_OUTPUTS]
                tensors.append(pb_utils.Tensor("face_slots_json", json_to_tensor(analysis.to_json())))
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except ValueError as exc:
                responses.append(
                    pb_utils.InferenceResponse(error=triton_error(f"face_pipeline: {exc}", "INVALID_ARG"))
                )
            except Exception as exc:  # one bad request must not fail the others
                responses.append(
                    pb_utils.InferenceResponse(
                        error=triton_error(f"face_pipeline: {type(exc).__name__}: {exc}")
                    )
                )
        return responses
