"""video_decode (Python backend): encoded video bytes -> sampled RGB frames (mintime.video.decode_sampled).

Inputs/outputs: mintime.contract.VIDEO_DECODE. The decode budget is mintime.limits.DecodeLimits; a model
parameter named like one of its fields overrides the default (e.g. ``max_bytes``). An input over ``max_bytes``
is refused before it is copied or decoded; frames are scaled on decode to the budget. An undecodable video, or
one over the budget, gets an INVALID_ARG error in its own response; the other requests of the batch and the
next requests are unaffected (mintime.serving.triton_models.DecodeModel).
"""

from mintime.serving.triton_models import DecodeModel


class TritonPythonModel(DecodeModel):
    pass
