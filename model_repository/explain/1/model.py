"""explain (Python backend): logit + CLS attention + face_slots_json -> the verdict (mintime.pipeline.finalize).

Inputs/outputs: mintime.contract.EXPLAIN. RESULT_JSON is the same object as `mintime predict --json` (without
the "video" key: the server never sees the file name); FAKE_PROBABILITY is NaN when no face was found.
"""

import triton_python_backend_utils as pb_utils

from mintime.serving.backend import explain_outputs, tensor_to_json
from mintime.serving.triton_models import triton_error

OUTPUTS = ("FAKE_PROBABILITY", "IDENTITY_SCORES", "RESULT_JSON")


class TritonPythonModel:
    def initialize(self, args):
        import mintime.pipeline  # noqa: F401  (import once here, not on the first request)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                logit = pb_utils.get_input_tensor_by_name(request, "temporal_logit").as_numpy()
                attention = pb_utils.get_input_tensor_by_name(request, "temporal_cls_attention").as_numpy()
                analysis = tensor_to_json(
                    pb_utils.get_input_tensor_by_name(request, "face_slots_json").as_numpy()
                )
                out = explain_outputs(analysis, logit, attention)
                responses.append(
                    pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(n, out[n]) for n in OUTPUTS])
                )
            except Exception as exc:  # one bad request must not fail the others
                responses.append(
                    pb_utils.InferenceResponse(error=triton_error(f"explain: {type(exc).__name__}: {exc}"))
                )
        return responses
