"""Export the two networks to ONNX and TensorRT and refresh the Triton model repository.

* :mod:`export.onnx`: :func:`~export.onnx.export_onnx` (torch → ONNX, checked with ONNX Runtime)
* :mod:`export.tensorrt`: :func:`~export.tensorrt.build_engine` (ONNX → TensorRT plan, where TensorRT exists)
* :mod:`export.repository`: numbered version folders, config dims, provenance JSON
* :mod:`export.cli`: ``mintime export``

Importing this package imports nothing heavy (torch, onnx and tensorrt are imported where used).
"""

__all__: list[str] = []
