"""Stand-ins for the TensorRT 10 and 11 Python modules (TensorRT cannot be installed here).

They have the builder/runtime surface :mod:`export.tensorrt` touches, with the differences between the two
major versions that matter (checked against the real bindings wheels in ``test_tensorrt.py``):

* 10: ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` and ``STRONGLY_TYPED``; ``BuilderFlag.FP16``,
  ``PREFER/OBEY_PRECISION_CONSTRAINTS``; ``Builder.platform_has_fast_fp16``. Like TensorRT 10, a strongly typed
  network refuses the precision flags (the build fails).
* 11: only ``STRONGLY_TYPED`` (accepted, always on); no ``BuilderFlag.FP16``, no ``platform_has_fast_fp16``.

The ONNX parser reads the real graph with ``onnx`` (inputs, outputs, element types), so a profile that does
not fit the graph fails as it would. The "engine" is a JSON description of what was built, which the runtime
stand-in deserializes for :func:`export.tensorrt.engine_io`.
"""

from __future__ import annotations

import enum
import json
import types
from typing import Any

import onnx

_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.UINT8: "uint8",
}


def make_trt(version: str) -> types.ModuleType:
    """A module object with the TensorRT ``version``'s (10.x or 11.x) API surface used by the export."""
    major = int(version.split(".")[0])
    if major not in (10, 11):
        raise ValueError(f"stubs exist for TensorRT 10 and 11, not {version}")
    trt = types.ModuleType(f"tensorrt_stub_{major}")
    trt.__version__ = version
    trt.calls = []  # every builder-side call, for the tests

    class _Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    class Logger:
        Severity = _Severity
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = tuple(_Severity)

        def __init__(self, min_severity: _Severity = _Severity.WARNING) -> None:
            self.min_severity = min_severity

    creation = {"STRONGLY_TYPED": 1} if major >= 11 else {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", creation)  # noqa: N806
    flags = ["DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS", "BF16",
             "DIRECT_IO", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "STRIP_PLAN"]  # fmt: skip
    if major == 10:
        flags += ["FP16", "INT8", "FP8", "PREFER_PRECISION_CONSTRAINTS", "OBEY_PRECISION_CONSTRAINTS"]
    BuilderFlag = enum.IntEnum("BuilderFlag", {f: i for i, f in enumerate(flags)})  # noqa: N806
    MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0, "TACTIC_SHARED_MEMORY": 2})  # noqa: N806
    TensorIOMode = enum.Enum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})  # noqa: N806
    DataType = enum.Enum("DataType", {"FLOAT": 0, "HALF": 1, "INT32": 3, "BOOL": 4, "INT64": 9})  # noqa: N806

    class Tensor:
        def __init__(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
            self.name, self.shape, self.dtype = name, shape, dtype

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[Tensor] = []
            self.outputs: list[Tensor] = []
            self.precisions: set[str] = set()

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        @property
        def num_outputs(self) -> int:
            return len(self.outputs)

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

        def get_output(self, i: int) -> Tensor:
            return self.outputs[i]

    class OnnxParser:
        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network
            self.errors: list[str] = []

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, i: int) -> str:
            return self.errors[i]

        def parse_from_file(self, path: str) -> bool:
            try:
                model = onnx.load(path)
            except Exception as exc:  # what TensorRT reports for an unreadable file
                self.errors.append(f"ModelImporter: failed to parse the ONNX model: {exc}")
                return False

            def tensor(v: Any) -> Tensor:
                t = v.type.tensor_type
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
                return Tensor(v.name, dims, _DTYPES.get(t.elem_type, str(t.elem_type)))

            self.network.inputs = [tensor(v) for v in model.graph.input]
            self.network.outputs = [tensor(v) for v in model.graph.output]
            self.network.precisions = {
                _DTYPES.get(i.data_type, str(i.data_type))
                for i in model.graph.initializer
                if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
            }
            return True

    class OptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, list[list[int]]] = {}

        def set_shape(self, name: str, min: tuple, opt: tuple, max: tuple) -> None:  # noqa: A002 - TRT names
            if not (len(min) == len(opt) == len(max)) or not all(
                a <= b <= c for a, b, c in zip(min, opt, max, strict=True)
            ):
                raise ValueError(f"invalid profile shapes for {name}: {min} {opt} {max}")
            self.shapes[name] = [list(min), list(opt), list(max)]

    class BuilderConfig:
        def __init__(self) -> None:
            self.flags_set: list[str] = []
            self.profiles: list[OptimizationProfile] = []
            self.pools: dict[str, int] = {}

        def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
            self.pools[pool.name] = int(size)

        def set_flag(self, flag: BuilderFlag) -> None:
            trt.calls.append(("set_flag", flag.name))
            self.flags_set.append(flag.name)

        def add_optimization_profile(self, profile: OptimizationProfile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

    class Builder:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def create_network(self, flags: int = 0) -> Network:
            trt.calls.append(("create_network", int(flags)))
            return Network(int(flags))

        def create_builder_config(self) -> BuilderConfig:
            return BuilderConfig()

        def create_optimization_profile(self) -> OptimizationProfile:
            return OptimizationProfile()

        def build_serialized_network(self, network: Network, config: BuilderConfig) -> bytes | None:
            strongly = major >= 11 or bool(
                network.flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED))
            )
            precision_flags = {"FP16", "INT8", "FP8", "BF16"} & set(config.flags_set)
            if (
                strongly and precision_flags
            ):  # TensorRT 10: precision flags are not allowed (error, no engine)
                trt.calls.append(("build_failed", sorted(precision_flags)))
                return None
            names = [t.name for t in network.inputs]
            for k, p in enumerate(config.profiles):
                if set(p.shapes) != set(names):
                    trt.calls.append(("build_failed", f"profile {k} does not cover {names}"))
                    return None
            if not config.profiles and any(-1 in t.shape for t in network.inputs):
                return None
            return json.dumps(
                {
                    "version": version,
                    "strongly_typed": strongly,
                    "precisions": sorted(network.precisions),
                    "flags": config.flags_set,
                    "workspace": config.pools.get("WORKSPACE"),
                    "profiles": [p.shapes for p in config.profiles],
                    "inputs": [[t.name, list(t.shape), t.dtype] for t in network.inputs],
                    "outputs": [[t.name, list(t.shape), t.dtype] for t in network.outputs],
                }
            ).encode()

    if major == 10:
        Builder.platform_has_fast_fp16 = property(lambda self: True)
        Builder.platform_has_fast_int8 = property(lambda self: True)

    _np_of = {"float32": DataType.FLOAT, "float16": DataType.HALF, "int32": DataType.INT32,
              "bool": DataType.BOOL, "int64": DataType.INT64}  # fmt: skip

    class Engine:
        def __init__(self, desc: dict[str, Any]) -> None:
            self.desc = desc
            self.io = [(n, s, d, TensorIOMode.INPUT) for n, s, d in desc["inputs"]]
            self.io += [(n, s, d, TensorIOMode.OUTPUT) for n, s, d in desc["outputs"]]

        @property
        def num_io_tensors(self) -> int:
            return len(self.io)

        def get_tensor_name(self, i: int) -> str:
            return self.io[i][0]

        def _get(self, name: str) -> tuple:
            return next(t for t in self.io if t[0] == name)

        def get_tensor_mode(self, name: str) -> TensorIOMode:
            return self._get(name)[3]

        def get_tensor_dtype(self, name: str) -> DataType:
            return _np_of[self._get(name)[2]]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self._get(name)[1])

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            try:
                desc = json.loads(bytes(data))
            except ValueError:
                return None
            return Engine(desc) if desc.get("version") == version else None

    for name, obj in dict(
        Logger=Logger, Builder=Builder, OnnxParser=OnnxParser, Runtime=Runtime,
        NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag, BuilderFlag=BuilderFlag,
        MemoryPoolType=MemoryPoolType, TensorIOMode=TensorIOMode, DataType=DataType,
    ).items():  # fmt: skip
        setattr(trt, name, obj)
    return trt


#: Names :mod:`export.tensorrt` and the stubs rely on, which both real bindings must contain.
COMMON_NAMES = (
    "Logger", "WARNING", "Builder", "create_network", "NetworkDefinitionCreationFlag", "STRONGLY_TYPED",
    "OnnxParser", "parse_from_file", "num_errors", "get_error", "create_builder_config",
    "set_memory_pool_limit", "MemoryPoolType", "WORKSPACE", "get_input", "num_inputs",
    "create_optimization_profile", "set_shape", "add_optimization_profile", "build_serialized_network",
    "Runtime", "deserialize_cuda_engine", "num_io_tensors", "get_tensor_name", "get_tensor_mode",
    "TensorIOMode", "get_tensor_dtype", "get_tensor_shape", "create_execution_context", "set_input_shape",
    "set_tensor_address", "execute_async_v3",
)  # fmt: skip
#: Names TensorRT 11 removed (the stubs of 10 have them, those of 11 do not).
REMOVED_IN_11 = ("platform_has_fast_fp16", "EXPLICIT_BATCH", "PREFER_PRECISION_CONSTRAINTS", "FP16")
