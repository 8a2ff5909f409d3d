"""ONNX → TensorRT engine (``model.plan`` for Triton's ``tensorrt_plan`` platform).

TensorRT exists only where NVIDIA ships it (the NGC tritonserver/TensorRT containers, a user's GPU machine);
:func:`tensorrt_available` says why not elsewhere, and callers skip with that message. The engine has
optimization profiles over the batch dimension (min/opt/max per input), fp16 kernels where TensorRT finds them
faster (the I/O stays float32, as in the ONNX graph and the Triton config).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Shape",
    "Profile",
    "EngineBuildError",
    "tensorrt_available",
    "batch_profile",
    "build_engine",
    "engine_io",
    "run_engine",
]

logger = logging.getLogger(__name__)

Shape = tuple[int, ...]
#: One optimization profile: ``{input name: (min shape, opt shape, max shape)}`` (batch first).
Profile = dict[str, tuple[Shape, Shape, Shape]]


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX graph or build the engine (the message carries its errors)."""


def tensorrt_available() -> tuple[bool, str]:
    """``(True, version)`` when ``import tensorrt`` works, else ``(False, reason)``."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or a broken install raising anything
        return False, (
            f"TensorRT is not available ({type(exc).__name__}: {exc}); engines are built where TensorRT exists "
            "(the NGC tritonserver container: the Docker entrypoint runs `mintime export --trt`)"
        )
    return True, str(getattr(trt, "__version__", "?"))


def batch_profile(
    input_dims: Mapping[str, Sequence[int]], *, min_batch: int, opt_batch: int, max_batch: int
) -> Profile:
    """A profile that varies only the batch dimension.

    Args:
        input_dims: ``{input name: dims without batch}`` (all fixed, e.g. ``(16, 3, 224, 224)``).
        min_batch, opt_batch, max_batch: the batch range (``max_batch`` = the config's ``max_batch_size``).

    Raises:
        ValueError: ``1 <= min <= opt <= max`` does not hold, or a dim is not fixed.
    """
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(
            f"need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}, {opt_batch}, {max_batch}"
        )
    profile: Profile = {}
    for name, dims in input_dims.items():
        dims = tuple(int(d) for d in dims)
        if any(d <= 0 for d in dims):
            raise ValueError(f"{name}: every non-batch dim must be fixed for a batch profile, got {dims}")
        profile[name] = ((min_batch, *dims), (opt_batch, *dims), (max_batch, *dims))
    return profile


def build_engine(
    onnx_path: str | os.PathLike,
    plan_path: str | os.PathLike,
    *,
    profiles: Sequence[Profile],
    fp16: bool = True,
    workspace_gib: float = 4.0,
) -> Path:
    """Build a serialized TensorRT engine from an ONNX file.

    Args:
        onnx_path: the graph (dynamic batch axis).
        plan_path: where to write the engine (``<version>/model.plan``).
        profiles: optimization profiles (at least one); Triton uses profile 0 unless told otherwise.
        fp16: allow fp16 kernels.
        workspace_gib: builder workspace limit.

    Returns:
        ``plan_path``.

    Raises:
        RuntimeError: TensorRT is not installed.
        EngineBuildError: parsing or building failed.
    """
    ok, why = tensorrt_available()
    if not ok:
        raise RuntimeError(why)
    import tensorrt as trt

    if not profiles:
        raise ValueError("at least one optimization profile is needed for a dynamic batch axis")
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None:  # TensorRT 8.x needs it; 10.x is always explicit-batch
        flags |= 1 << int(explicit)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        if not builder.platform_has_fast_fp16:
            logger.warning("this GPU has no fast fp16: building fp32 kernels")
        else:
            config.set_flag(trt.BuilderFlag.FP16)
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    for k, prof in enumerate(profiles):
        unknown = sorted(set(prof) - names)
        if unknown:
            raise EngineBuildError(
                f"profile {k} names inputs the graph does not have: {unknown} (graph: {sorted(names)})"
            )
        p = builder.create_optimization_profile()
        for name, (mn, opt, mx) in prof.items():
            p.set_shape(name, tuple(mn), tuple(opt), tuple(mx))
        config.add_optimization_profile(p)
    logger.info("building TensorRT engine from %s (fp16=%s, %d profile(s))", onnx_path, fp16, len(profiles))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)"
        )
    plan_path = Path(plan_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    logger.info("wrote %s (%.1f MB)", plan_path, plan_path.stat().st_size / 1e6)
    return plan_path


def _load_engine(plan_path: str | os.PathLike) -> Any:
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
    if engine is None:
        raise EngineBuildError(f"TensorRT cannot deserialize {plan_path}")
    return engine


def engine_io(plan_path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Names, modes, dtypes and shapes (-1 = dynamic) of an engine's I/O tensors (TensorRT 10 API)."""
    import tensorrt as trt

    engine = _load_engine(plan_path)
    io = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        io[name] = {
            "mode": "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output",
            "dtype": str(engine.get_tensor_dtype(name)),
            "shape": tuple(int(d) for d in engine.get_tensor_shape(name)),
        }
    return io


def run_engine(plan_path: str | os.PathLike, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an engine once on a CUDA GPU (torch manages the device memory); for export-time checks.

    Args:
        plan_path: the engine.
        feeds: ``{input name: array}`` with the batch dimension, inside profile 0's range.

    Returns:
        ``{output name: array}``.
    """
    import tensorrt as trt
    import torch

    engine = _load_engine(plan_path)
    context = engine.create_execution_context()
    stream = torch.cuda.current_stream()
    keep: dict[str, torch.Tensor] = {}
    for name, value in feeds.items():
        t = torch.from_numpy(np.ascontiguousarray(value)).cuda()
        keep[name] = t
        context.set_input_shape(name, tuple(t.shape))
        context.set_tensor_address(name, t.data_ptr())
    outputs: dict[str, torch.Tensor] = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) != trt.TensorIOMode.OUTPUT:
            continue
        dtype = torch.from_numpy(np.empty(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        out = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device="cuda")
        outputs[name] = out
        context.set_tensor_address(name, out.data_ptr())
    if not context.execute_async_v3(stream.cuda_stream):
        raise EngineBuildError(f"TensorRT execution failed for {plan_path}")
    stream.synchronize()
    return {k: v.cpu().numpy() for k, v in outputs.items()}
