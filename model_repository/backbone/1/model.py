"""backbone (Python backend) for the pip-installed server without TensorRT.

Inputs/outputs: mintime.contract.BACKBONE. ONNX Runtime on <version>/model.onnx when `mintime export` wrote
one, else PyTorch; requests batched by Triton run as one batch (mintime.serving.triton_models.NetworkModel).
"""

from mintime.serving.triton_models import NetworkModel


class TritonPythonModel(NetworkModel):
    NETWORK = "backbone"
