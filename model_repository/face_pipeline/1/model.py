"""face_pipeline (Python backend): sampled frames -> the face-stage outputs (mintime.faces.stage.FaceStage).

Inputs/outputs: mintime.contract.FACE_PIPELINE. A video without a usable face is not an error: the slots are
empty and face_slots_json says status "no_face" (explain then reports P(fake) = NaN).
The request loop and the device choice (args["model_instance_kind"], args["model_instance_device_id"]) live in
mintime.serving.triton_models.FaceStageModel.
"""

from mintime.serving.triton_models import FaceStageModel


class TritonPythonModel(FaceStageModel):
    pass
