"""video_decode (Python backend): encoded video bytes -> sampled RGB frames (mintime.video.decode_sampled).

Inputs/outputs: mintime.contract.VIDEO_DECODE. The decode budget is mintime.limits.DecodeLimits; a model
parameter named like one of its fields overrides the default (e.g. ``max_bytes``). An input over ``max_bytes``
is refused before it is copied or decoded; frames are scaled on decode to the budget. An undecodable video, or
one over the budget, gets an INVALID_ARG error in its own response; the other requests of the batch and the
next requests are unaffected.
"""

import json

import triton_python_backend_utils as pb_utils

from mintime.limits import DecodeLimits
from mintime.serving.backend import clip_to_arrays, model_parameters
from mintime.serving.triton_models import triton_error

OUTPUTS = ("video_decode_frames", "video_decode_frame_indices", "video_decode_info")


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(json.loads(args["model_config"]))
        self.num_frames = int(params.get("num_frames", "32"))
        self.limits = DecodeLimits.from_parameters(params)
        self.decoder = params.get("decoder", "pyav") or "pyav"
        if self.decoder == "pyav":
            from mintime.video import VideoDecodeError, decode_sampled

            self.decode = lambda data, n: decode_sampled(data, n, limits=self.limits)
        elif self.decoder == "dali_cpu":
            from dali_pipelines.video_decode import decode_with_dali
            from mintime.video import VideoDecodeError

            self.decode = lambda data, n: decode_with_dali(
                data, n, device="cpu", max_bytes=self.limits.max_bytes
            )
        else:
            raise ValueError(f"video_decode: unknown decoder parameter {self.decoder!r} (pyav or dali_cpu)")
        self.decode_errors = (VideoDecodeError,)
        pb_utils.Logger.log_info(
            f"video_decode: {self.decoder}, {self.num_frames} frames per video, limits {self.limits.as_dict()}"
        )

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                video = pb_utils.get_input_tensor_by_name(request, "VIDEO").as_numpy()
                if video.ndim != 2 or video.shape[0] != 1:
                    raise ValueError(
                        f"VIDEO must have shape [1, nbytes] (one video per request), got {video.shape}"
                    )
                if video.shape[1] == 0:
                    raise self.decode_errors[0]("empty VIDEO input (0 bytes)")
                if video.nbytes > self.limits.max_bytes:  # before any copy or decode
                    raise self.decode_errors[0](
                        f"too large: {video.nbytes} bytes exceeds max_bytes={self.limits.max_bytes}"
                    )
                arrays = clip_to_arrays(self.decode(video[0], self.num_frames))
                outputs = [pb_utils.Tensor(name, arrays[name][None]) for name in OUTPUTS]
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            except self.decode_errors as exc:
                responses.append(
                    pb_utils.InferenceResponse(
                        error=triton_error(f"video_decode: cannot decode the video: {exc}", "INVALID_ARG")
                    )
                )
            except ValueError as exc:
                responses.append(
                    pb_utils.InferenceResponse(error=triton_error(f"video_decode: {exc}", "INVALID_ARG"))
                )
            except Exception as exc:  # one bad request must not fail the others
                responses.append(
                    pb_utils.InferenceResponse(
                        error=triton_error(f"video_decode: {type(exc).__name__}: {exc}")
                    )
                )
        return responses
