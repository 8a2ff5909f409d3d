"""ONNX → TensorRT engine (``model.plan`` for Triton's ``tensorrt_plan`` platform), for TensorRT 10 and 11.

TensorRT exists only where NVIDIA ships it (the NGC tritonserver image: its libnvinfer plus the
``tensorrt-cu13-bindings`` wheel of the same version; a user's GPU machine). :func:`tensorrt_available` says why
not elsewhere, and callers skip with that message.

The build is **strongly typed**: the precision of every layer is the precision of the ONNX graph, so an fp16
engine is built from the fp16 graph that ``mintime export`` writes (``model_fp16.onnx``, fp16 inside, float32
I/O) and an fp32 engine from ``model.onnx``. That is the only precision control TensorRT 11 has
(``BuilderFlag.FP16``, ``Builder.platform_has_fast_fp16`` and ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``
are gone; ``STRONGLY_TYPED`` is accepted and ignored because 11 is always strongly typed), and TensorRT 10
supports it through ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``. No removed name is used here.

Every plan is written with a tag (``model.plan.tag.json``: TensorRT version, GPU name, compute capability): a
plan only deserializes in the TensorRT that built it and is tuned for one GPU model, so ``mintime export
--trt --if-missing`` (what the Docker entrypoint runs at every start) rebuilds a plan whose tag does not
match the running TensorRT and GPU (:func:`plan_matches`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mintime.errors import UserError

__all__ = [
    "Shape",
    "Profile",
    "EngineBuildError",
    "TensorRTUnavailableError",
    "DeviceInfo",
    "PLAN_TAG_SUFFIX",
    "import_tensorrt",
    "tensorrt_available",
    "api_major",
    "batch_profile",
    "config_batch_range",
    "production_profile",
    "build_engine",
    "current_device",
    "plan_tag",
    "read_plan_tag",
    "plan_matches",
    "engine_io",
    "run_engine",
]

logger = logging.getLogger(__name__)

Shape = tuple[int, ...]
#: One optimization profile: ``{input name: (min shape, opt shape, max shape)}`` (batch first).
Profile = dict[str, tuple[Shape, Shape, Shape]]
#: ``<plan>.tag.json`` next to every plan.
PLAN_TAG_SUFFIX = ".tag.json"


class TensorRTUnavailableError(UserError, RuntimeError):
    """``--trt`` was asked for where TensorRT cannot be imported."""


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX graph or build/load the engine (the message carries its errors)."""


@dataclass(frozen=True)
class DeviceInfo:
    """The GPU a plan is built for: name and compute capability (``"9.0"`` for H100/H200)."""

    name: str
    compute_capability: str


def import_tensorrt() -> ModuleType:
    """The TensorRT Python module: ``tensorrt`` (the meta package), else ``tensorrt_bindings`` (the bindings
    wheel alone, as the image installs it next to the image's libnvinfer).

    Raises:
        ImportError: neither imports (the last error is chained).
    """
    try:
        import tensorrt

        return tensorrt
    except ImportError as first:
        try:
            import tensorrt_bindings

            return tensorrt_bindings
        except ImportError as exc:
            raise ImportError(f"{first}; tensorrt_bindings: {exc}") from exc


def tensorrt_available() -> tuple[bool, str]:
    """``(True, version)`` when TensorRT imports, else ``(False, reason)``."""
    try:
        trt = import_tensorrt()
    except Exception as exc:  # ImportError, or a broken install (missing libnvinfer) raising anything
        return False, (
            f"TensorRT is not available ({type(exc).__name__}: {exc}); engines are built where TensorRT exists "
            "(the NGC tritonserver image: the Docker entrypoint runs `mintime export --trt`)"
        )
    return True, str(getattr(trt, "__version__", "?"))


def api_major(trt: ModuleType) -> int:
    """Major version of a TensorRT module (10, 11, ...)."""
    m = re.match(r"(\d+)", str(getattr(trt, "__version__", "")))
    if m is None:
        raise EngineBuildError(f"cannot read the TensorRT version from {trt!r}")
    return int(m.group(1))


# ---------------------------------------------------------------------------------------------------------------
# optimization profiles
# ---------------------------------------------------------------------------------------------------------------
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


def config_batch_range(config: str | os.PathLike) -> tuple[int, list[int]]:
    """``(max_batch_size, preferred_batch_size list)`` of a Triton config file.

    Raises:
        ValueError: no positive ``max_batch_size`` (a TensorRT config with dynamic batching needs one).
    """
    text = Path(config).read_text()
    text = re.sub(r"#[^\n]*", "", text)
    found = re.findall(r"\bmax_batch_size\s*:\s*(\d+)", text)
    if len(found) != 1 or int(found[0]) < 1:
        raise ValueError(f"{config}: need exactly one positive max_batch_size, found {found}")
    preferred: list[int] = []
    m = re.search(r"\bpreferred_batch_size\s*:\s*\[([^\]]*)\]", text)
    if m:
        preferred = sorted(int(x) for x in m.group(1).replace(",", " ").split())
    return int(found[0]), preferred


def production_profile(input_dims: Mapping[str, Sequence[int]], config: str | os.PathLike) -> Profile:
    """The batch profile a production config needs: 1 .. ``max_batch_size``, optimized for the largest
    preferred batch size (Triton's dynamic batcher forms those), else for ``max_batch_size``."""
    max_batch, preferred = config_batch_range(config)
    bad = [b for b in preferred if b > max_batch]
    if bad:
        raise ValueError(f"{config}: preferred_batch_size {bad} above max_batch_size {max_batch}")
    opt = preferred[-1] if preferred else max_batch
    return batch_profile(input_dims, min_batch=1, opt_batch=opt, max_batch=max_batch)


# ---------------------------------------------------------------------------------------------------------------
# device and plan tags
# ---------------------------------------------------------------------------------------------------------------
def current_device(index: int = 0) -> DeviceInfo | None:
    """The GPU that builds the plan (torch's view, else ``nvidia-smi``); None without a GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(index)
            return DeviceInfo(torch.cuda.get_device_name(index), f"{major}.{minor}")
    except Exception as exc:  # a broken CUDA install: try nvidia-smi
        logger.debug("torch cannot describe GPU %d: %s", index, exc)
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    out = subprocess.run(
        [smi, f"--id={index}", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0 or "," not in out.stdout:
        return None
    name, cap = (s.strip() for s in out.stdout.strip().splitlines()[0].rsplit(",", 1))
    return DeviceInfo(name, cap)


def _tag_path(plan_path: str | os.PathLike) -> Path:
    return Path(str(plan_path) + PLAN_TAG_SUFFIX)


def plan_tag(tensorrt_version: str, device: DeviceInfo | None) -> dict[str, Any]:
    """What a plan is bound to: the TensorRT version and the GPU."""
    return {
        "tensorrt": str(tensorrt_version),
        "gpu": None if device is None else asdict(device),
    }


def read_plan_tag(plan_path: str | os.PathLike) -> dict[str, Any] | None:
    """The tag written next to a plan, None when there is none (or it is unreadable)."""
    path = _tag_path(plan_path)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def plan_matches(
    plan_path: str | os.PathLike,
    *,
    tensorrt_version: str | None = None,
    device: DeviceInfo | None = None,
) -> tuple[bool, str]:
    """Whether a plan can be served here: it exists, its tag names this TensorRT and this GPU.

    Args:
        plan_path: ``<version>/model.plan``.
        tensorrt_version: the running TensorRT (default: the importable one).
        device: the running GPU (default: :func:`current_device`).

    Returns:
        ``(True, "")`` or ``(False, why)``.
    """
    plan_path = Path(plan_path)
    if not plan_path.is_file():
        return False, f"no plan at {plan_path}"
    tag = read_plan_tag(plan_path)
    if tag is None:
        return (
            False,
            f"{plan_path} has no tag ({_tag_path(plan_path).name}): built elsewhere or by an old export",
        )
    if tensorrt_version is None:
        ok, tensorrt_version = tensorrt_available()
        if not ok:
            return False, tensorrt_version
    if tag.get("tensorrt") != tensorrt_version:
        return (
            False,
            f"{plan_path} was built by TensorRT {tag.get('tensorrt')}, this is TensorRT {tensorrt_version}",
        )
    device = device if device is not None else current_device()
    want = None if device is None else asdict(device)
    if tag.get("gpu") != want:
        return False, f"{plan_path} was built for GPU {tag.get('gpu')}, this is {want}"
    return True, ""


# ---------------------------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------------------------
def _network_flags(trt: ModuleType) -> int:
    """Creation flags of a strongly typed network (11: always strongly typed, the flag is accepted)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is None:
        if api_major(trt) >= 11:
            return 0
        raise EngineBuildError(
            f"TensorRT {trt.__version__} has no NetworkDefinitionCreationFlag.STRONGLY_TYPED (needs >= 10.0)"
        )
    return 1 << int(flag)


def _parser_errors(parser: Any) -> str:
    return "; ".join(str(parser.get_error(i)) for i in range(int(parser.num_errors))) or "no parser message"


def build_engine(
    onnx_path: str | os.PathLike,
    plan_path: str | os.PathLike,
    *,
    profiles: Sequence[Profile],
    workspace_gib: float = 4.0,
    device: DeviceInfo | None = None,
    trt_module: ModuleType | None = None,
) -> Path:
    """Build a serialized, strongly typed TensorRT engine from an ONNX file and tag it.

    Precision follows the graph: pass ``model_fp16.onnx`` for an fp16 engine, ``model.onnx`` for fp32.

    Args:
        onnx_path: the graph (dynamic batch axis).
        plan_path: where to write the engine (``<version>/model.plan``); the tag goes next to it.
        profiles: optimization profiles (at least one); Triton uses profile 0 unless told otherwise.
        workspace_gib: builder workspace limit.
        device: the GPU recorded in the tag (default: :func:`current_device`).
        trt_module: the TensorRT module to use (default: :func:`import_tensorrt`).

    Returns:
        ``plan_path``.

    Raises:
        RuntimeError: TensorRT is not installed.
        EngineBuildError: parsing or building failed, or a profile names an input the graph lacks.
        ValueError: no profile.
    """
    if trt_module is None:
        ok, why = tensorrt_available()
        if not ok:
            raise RuntimeError(why)
        trt_module = import_tensorrt()
    trt = trt_module
    if not profiles:
        raise ValueError("at least one optimization profile is needed for a dynamic batch axis")
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {_parser_errors(parser)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    for k, prof in enumerate(profiles):
        unknown = sorted(set(prof) - names)
        missing = sorted(names - set(prof))
        if unknown or missing:
            raise EngineBuildError(
                f"profile {k} does not cover the graph's inputs: unknown {unknown}, missing {missing}"
            )
        p = builder.create_optimization_profile()
        for name, (mn, opt, mx) in prof.items():
            p.set_shape(name, tuple(mn), tuple(opt), tuple(mx))
        config.add_optimization_profile(p)
    logger.info(
        "building a strongly typed TensorRT %s engine from %s (%d profile(s))",
        trt.__version__,
        onnx_path,
        len(profiles),
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)"
        )
    plan_path = Path(plan_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    tag = plan_tag(str(trt.__version__), device if device is not None else current_device())
    _tag_path(plan_path).write_text(json.dumps(tag, indent=2) + "\n")
    logger.info("wrote %s (%.1f MB), tag %s", plan_path, plan_path.stat().st_size / 1e6, tag)
    return plan_path


# ---------------------------------------------------------------------------------------------------------------
# load and run (export-time checks)
# ---------------------------------------------------------------------------------------------------------------
def _load_engine(plan_path: str | os.PathLike, trt: ModuleType) -> Any:
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
    if engine is None:
        raise EngineBuildError(f"TensorRT cannot deserialize {plan_path}")
    return engine


def engine_io(
    plan_path: str | os.PathLike, trt_module: ModuleType | None = None
) -> dict[str, dict[str, Any]]:
    """Names, modes, dtypes and shapes (-1 = dynamic) of an engine's I/O tensors (TensorRT 10/11 API)."""
    trt = trt_module or import_tensorrt()
    engine = _load_engine(plan_path, trt)
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
    import torch

    trt = import_tensorrt()
    engine = _load_engine(plan_path, trt)
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
    return {k: v.float().cpu().numpy() for k, v in outputs.items()}
