"""``mintime export`` as a library call: networks → ONNX (+ fp16 ONNX, + TensorRT) → new model versions.

For each network (``backbone``, ``temporal``) :func:`export_to_repository`:

1. exports the per-video module to ONNX in a hidden staging folder of the model (batch 1 traced, dynamic batch
   axis) and checks ONNX Runtime against PyTorch at every ``check_batches`` size;
2. optionally exports an fp16 graph (``model_fp16.onnx``, float32 I/O) and keeps it only where it holds
   (within ``FP16_RTOL`` of the fp32 PyTorch output);
3. builds a strongly typed TensorRT engine (``model.plan`` + its tag) from the fp16 graph where it held (else
   fp32), batch profile 1..``max_batch_size`` of the production config, where TensorRT imports; checks its
   I/O and, on a GPU, its outputs against PyTorch (a failed check fails the export: nothing is committed);
4. copies the Python-backend ``model.py`` (from the committed repository), writes ``export.json`` (source
   checkpoint, SHA-256, date, parity errors, versions), renames the folder to version N+1 and checks it again
   from there (the same loader as the Triton Python model); only when every network is done
5. rewrites the tensor dims of the configs (channels ``C``, attention heads), writes each new version's
   completion marker (``export.complete``, last), and removes exported versions beyond ``keep``.

A failure before step 5 removes the staged/new folders and leaves the served versions untouched; a process
killed anywhere leaves versions without a marker, which the server refuses and the next export removes
(:func:`export.repository.remove_untrusted`). Nothing is written into the committed repository: the target is
a separate folder (default ``build/model_repository``, git-ignored), seeded from the committed one with what it
lacks; versions that export did not write (the committed ``1/model.py``) are never pruned or rewritten.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export import repository as repo
from export.modules import (
    NETWORKS,
    HalfPrecision,
    dynamic_batch_axes,
    example_inputs,
    export_module,
    io_names,
)
from export.onnx import ParityError, export_onnx, onnx_parity
from export.repository import committed_repository, default_export_repository
from mintime import contract

__all__ = [
    "FP16_ATOL",
    "FP16_RTOL",
    "ExportOptions",
    "NetworkExport",
    "export_to_repository",
    "committed_repository",
    "default_export_repository",
    "seed_repository",
]

logger = logging.getLogger(__name__)

#: fp16 "holds" when ``max |fp16 - fp32 torch| <= FP16_ATOL + FP16_RTOL * max |fp32 torch|`` for every output.
FP16_ATOL = 1e-3
FP16_RTOL = 2e-2
#: Python-backend files carried from the previous version into the new one.
CARRIED_FILES = ("model.py",)


def seed_repository(target: str | os.PathLike, source: str | os.PathLike) -> list[Path]:
    """Copy into ``target`` what it lacks of the committed repository ``source`` (never overwrites).

    Copied: each model's configs and its version folders that export did not write (``1/model.py``);
    skipped: generated artifacts (ONNX, plans, DALI pipelines, caches). Returns the files copied.
    """
    target, source = Path(target), Path(source)
    copied: list[Path] = []
    if not source.is_dir():
        return copied
    skip = {".onnx", ".plan", ".dali", ".pyc"}
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        parts = rel.parts
        if (
            not path.is_file()
            or path.suffix in skip
            or "__pycache__" in parts
            or parts[-1].startswith(".export")
        ):
            continue
        if len(parts) >= 3 and parts[1].isdigit() and repo.is_exported(source / parts[0] / parts[1]):
            continue
        dst = target / rel
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copy2(path, tmp)
        os.replace(tmp, dst)
        copied.append(dst)
    if copied:
        logger.info("seeded %s with %d files from %s", target, len(copied), source)
    return copied


@dataclass
class ExportOptions:
    """What to export and where.

    Attributes:
        model_repository: the Triton model repository (folders ``backbone/`` and ``temporal/``).
        networks: which networks to export.
        keep: versions kept per model after a successful export (the new one included).
        opset: ONNX opset.
        check_batches: batch sizes of the ONNX Runtime parity check (the first is the traced batch).
        atol, rtol: fp32 parity tolerance.
        fp16: also try an fp16 ONNX graph (kept where it holds).
        trt: ``"auto"`` (build where TensorRT imports), ``"require"`` (fail without it) or ``"off"``.
        max_batch: TensorRT profile maximum (default: ``max_batch_size`` of ``configs/production.pbtxt``).
        onnx_dir: also copy ``backbone.onnx`` / ``temporal.onnx`` here (for ``mintime predict --onnx-dir``).
        source_repository: the committed repository the target is seeded from and ``model.py`` is taken from
            (default :func:`committed_repository`); never written.
    """

    model_repository: Path
    networks: Sequence[str] = NETWORKS
    keep: int = 2
    opset: int = 17
    check_batches: Sequence[int] = (1, 3)
    atol: float = 1e-4
    rtol: float = 1e-4
    fp16: bool = True
    trt: str = "auto"
    max_batch: int | None = None
    onnx_dir: Path | None = None
    source_repository: Path | None = None


@dataclass
class NetworkExport:
    """The outcome for one network."""

    network: str
    version: int
    version_dir: Path
    dims: dict[str, list[int]]
    parity: dict[str, Any]
    fp16: dict[str, Any] | None = None
    tensorrt: dict[str, Any] | None = None
    removed_versions: list[int] = field(default_factory=list)


def _output_dims(which: str, outputs: Sequence[np.ndarray]) -> dict[str, list[int]]:
    """Config dims (no batch) of the tensors whose size depends on the weights."""
    if which == "backbone":
        return {"backbone_features": list(outputs[0].shape[1:])}
    return {"temporal_cls_attention": list(outputs[1].shape[1:])}


def _config_updates(dims: dict[str, list[int]]) -> dict[str, dict[str, list[int]]]:
    """Which config tensors each new dim goes to: ``{model: {tensor: dims}}``."""
    updates: dict[str, dict[str, list[int]]] = {}
    if "backbone_features" in dims:
        updates.setdefault("backbone", {})["backbone_features"] = dims["backbone_features"]
        updates.setdefault("temporal", {})["backbone_features"] = dims["backbone_features"]
    if "temporal_cls_attention" in dims:
        updates.setdefault("temporal", {})["temporal_cls_attention"] = dims["temporal_cls_attention"]
    return updates


def _channels(loaded: Any) -> int:
    config = getattr(loaded.temporal, "config", None)
    if config is not None and getattr(config, "channels", None):
        return int(config.channels)
    return int(getattr(loaded.backbone, "out_channels", 0) or contract.DEFAULT_CHANNELS)


def _try_fp16(
    which: str, module: Any, staging: Path, inputs: list[tuple], opts: ExportOptions
) -> dict[str, Any]:
    """Export an fp16 graph; keep it where it holds (float32 I/O)."""
    names_in, names_out = io_names(which)
    path = staging / "model_fp16.onnx"
    try:
        export_onnx(
            HalfPrecision(copy.deepcopy(module)),
            path,
            example_inputs=inputs[0],
            input_names=names_in,
            output_names=names_out,
            dynamic_axes=dynamic_batch_axes(which),
            opset=opts.opset,
            check=False,
        )
        report = onnx_parity(
            module, path, inputs, input_names=names_in, output_names=names_out, atol=FP16_ATOL, rtol=FP16_RTOL
        )
    except Exception as exc:  # fp16 is optional: any failure means "does not hold"
        path.unlink(missing_ok=True)
        logger.warning("%s: no fp16 ONNX graph (%s: %s)", which, type(exc).__name__, exc)
        return {"kept": False, "error": f"{type(exc).__name__}: {exc}"}
    info = {"kept": report.ok, "file": path.name if report.ok else None, **report.to_dict()}
    if not report.ok:
        path.unlink(missing_ok=True)
        logger.warning("%s: fp16 does not hold (%s); kept fp32 only", which, "; ".join(report.failures()))
    else:
        logger.info("%s: fp16 ONNX holds (max abs error %.3g)", which, report.worst())
    return info


#: A TensorRT engine "holds" when ``max |engine - fp32 torch| <= TRT_ATOL + TRT_RTOL * max |fp32 torch|``.
#: fp16 engines get the fp16 graph's tolerance; fp32 engines run TF32 matmuls, hence more than ``atol``.
TRT_ATOL = FP16_ATOL
TRT_RTOL = FP16_RTOL


def _try_tensorrt(
    which: str, model_dir: Path, staging: Path, module: Any, opts: ExportOptions, fp16_kept: bool
) -> dict[str, Any]:
    """Build ``model.plan`` where TensorRT exists and check it against PyTorch on the GPU.

    The engine is strongly typed: built from ``model_fp16.onnx`` when the fp16 graph held, else from
    ``model.onnx``. Its profile is 1 .. ``max_batch_size`` of ``configs/production.pbtxt``. An fp16 engine that
    fails its parity check (TensorRT's fp16 kernels can differ from ONNX Runtime's where the fp16 graph held) is
    replaced by an fp32 engine built from ``model.onnx``, checked the same way: the result says so
    (``precision: "fp32"``, ``fp16_rejected``: why) and a warning is logged, instead of refusing to serve.

    Raises:
        RuntimeError: ``trt="require"`` without TensorRT.
        EngineBuildError: the build failed or the engine lacks tensors.
        ParityError: the fp32 engine's outputs differ from PyTorch beyond ``TRT_ATOL``/``TRT_RTOL``.
    """
    from export import tensorrt as trt_export

    if opts.trt == "off":
        return {"built": False, "reason": "disabled (--no-trt)"}
    ok, detail = trt_export.tensorrt_available()
    if not ok:
        if opts.trt == "require":
            raise trt_export.TensorRTUnavailableError(detail)
        return {"built": False, "reason": detail}  # said once per export, by export_to_repository
    probe = example_inputs(which, 1, channels=_channels_of(module), num_slots=_slots_of(module))
    dims = {n: tuple(x.shape[1:]) for n, x in zip(io_names(which)[0], probe, strict=True)}
    if opts.max_batch:
        profile = trt_export.batch_profile(
            dims, min_batch=1, opt_batch=opts.max_batch, max_batch=opts.max_batch
        )
    else:
        profile = trt_export.production_profile(dims, model_dir / repo.PRODUCTION_CONFIG)
    precision = "fp16" if fp16_kept else "fp32"
    try:
        info = _build_checked_engine(which, staging, module, precision, profile, detail)
    except ParityError as exc:
        if precision == "fp32":
            raise
        logger.warning(
            "%s: the fp16 TensorRT engine failed its parity check (%s); rebuilding it from model.onnx (fp32) "
            "and serving that instead",
            which,
            exc,
        )
        info = _build_checked_engine(which, staging, module, "fp32", profile, detail)
        info["fp16_rejected"] = str(exc)
    return info


def _build_checked_engine(
    which: str, staging: Path, module: Any, precision: str, profile: Any, version: str
) -> dict[str, Any]:
    """Build the strongly typed ``precision`` engine into ``staging/model.plan`` and check it (:func:`_engine_parity`)."""
    from export import tensorrt as trt_export

    names_in, names_out = io_names(which)
    source = staging / ("model_fp16.onnx" if precision == "fp16" else "model.onnx")
    plan = trt_export.build_engine(source, staging / "model.plan", profiles=[profile])
    io = trt_export.engine_io(plan)
    missing = [n for n in names_in + names_out if n not in io]
    if missing:
        raise trt_export.EngineBuildError(
            f"{which}: the TensorRT engine lacks tensors {missing} (has {sorted(io)})"
        )
    info: dict[str, Any] = {
        "built": True,
        "version": version,
        "strongly_typed": True,
        "precision": precision,
        "source": source.name,
        "profile": {k: [list(s) for s in v] for k, v in profile.items()},
        "tag": trt_export.read_plan_tag(plan),
    }
    max_batch = profile[names_in[0]][2][0]
    errors = _engine_parity(which, plan, module, max_batch, precision)
    if errors is None:
        info["parity"] = "not checked: no CUDA device in this process"
        logger.warning("%s: TensorRT engine built but not checked (no CUDA device)", which)
    else:
        info["max_abs_error_vs_torch_fp32"] = errors
        logger.info("%s: %s TensorRT engine vs torch fp32: %s", which, precision, errors)
    return info


def _engine_parity(
    which: str, plan: Path, module: Any, max_batch: int, precision: str
) -> dict[str, float] | None:
    """Run the engine at batch 1, 3 and ``max_batch`` against PyTorch fp32: the worst error per output.

    Returns None where no CUDA device can run it.

    Raises:
        ParityError: an output is off by more than ``TRT_ATOL + TRT_RTOL * max|ref|``.
    """
    import torch

    from export import tensorrt as trt_export

    if not torch.cuda.is_available():
        return None
    names_in, names_out = io_names(which)
    errors: dict[str, float] = {}
    for seed, batch in enumerate(sorted({1, min(3, max_batch), max_batch})):
        inputs = example_inputs(
            which, batch, channels=_channels_of(module), seed=100 + seed, num_slots=_slots_of(module)
        )
        got = trt_export.run_engine(plan, {n: x.numpy() for n, x in zip(names_in, inputs, strict=True)})
        with torch.inference_mode():
            ref = module(*inputs)
        ref = ref if isinstance(ref, tuple) else (ref,)
        for name, r in zip(names_out, ref, strict=True):
            r = r.float().numpy()
            err = float(np.max(np.abs(got[name] - r)))
            errors[name] = max(errors.get(name, 0.0), err)
            if not err <= TRT_ATOL + TRT_RTOL * float(np.max(np.abs(r))):
                raise ParityError(
                    f"{which}: the {precision} TensorRT engine differs from PyTorch fp32 on {name} by "
                    f"{err:.3g} at batch {batch} (allowed {TRT_ATOL} + {TRT_RTOL} * max|ref|); not committed"
                )
    return errors


def _slots_of(module: Any) -> int:
    """F, the face slots a network is exported for (set by :func:`export_to_repository` on the module)."""
    return int(getattr(module, "num_slots", contract.NUM_SLOTS))


def _loaded_slots(loaded: Any) -> int:
    """F of the loaded networks: :attr:`mintime.networks.Networks.num_slots`, else the temporal config's."""
    if getattr(loaded, "num_slots", None):
        return int(loaded.num_slots)
    config = getattr(loaded.temporal, "config", None)
    return int(getattr(config, "num_frames", 0) or contract.NUM_SLOTS)


def _slot_config_updates(f: int) -> dict[str, dict[str, list[int]]]:
    """The config dims that follow the slot count ``F`` (every model that carries slot tensors)."""
    t = 1 + f * contract.NUM_PATCHES
    slots = {
        contract.MASK: [f],
        contract.IDENTITIES_MASK: [f, f],
        contract.SIZE_IDS: [f],
        contract.POSITIONS: [t],
    }
    faces = {contract.FACES: [f, 3, contract.IMAGE_SIZE, contract.IMAGE_SIZE]}
    return {
        "face_pipeline": {**faces, **slots, contract.SLOT_IDENTITY: [f]},
        "backbone": dict(faces),
        "temporal": dict(slots),
        "explain": {contract.SLOT_IDENTITY: [f], contract.TEMPORAL_CLS_ATTENTION: [2, -1, t]},
    }


_NUM_SLOTS_PARAMETER = re.compile(
    r'parameters\s*\{\s*key:\s*"num_slots"\s*value\s*\{\s*string_value:\s*"\d+"\s*\}\s*\}'
)


def _set_num_slots_parameter(path: Path, f: int) -> None:
    """Give face_pipeline's config the ``num_slots`` parameter ``f`` (replaced where set; added where the
    default, 16, would be wrong)."""
    text = path.read_text()
    line = f'parameters {{ key: "num_slots" value {{ string_value: "{f}" }} }}'
    if _NUM_SLOTS_PARAMETER.search(text):
        new = _NUM_SLOTS_PARAMETER.sub(line, text)
    elif f != contract.NUM_SLOTS:
        new = text.rstrip("\n") + "\n" + line + "\n"
    else:
        return
    if new != text:
        repo.parse_config(new)
        path.write_text(new)


def _channels_of(module: Any) -> int:
    temporal = getattr(module, "temporal", None)
    if temporal is not None:
        return int(temporal.config.channels)
    return int(getattr(module, "out_channels", contract.DEFAULT_CHANNELS))


def _carry_python_files(model_dir: Path, staging: Path, source_dir: Path | None) -> list[str]:
    """Copy the Python-backend files into the new version: from the committed repository's version that
    export did not write (the current code), else from the served version of the target."""
    candidates: list[Path] = []
    if source_dir is not None:
        candidates += [
            source_dir / str(v)
            for v in reversed(repo.versions(source_dir))
            if not repo.is_exported(source_dir / str(v))
        ]
    latest = repo.latest_version(model_dir)
    if latest is not None:
        candidates.append(model_dir / str(latest))
    carried = []
    for name in CARRIED_FILES:
        src = next((d / name for d in candidates if (d / name).is_file()), None)
        if src is not None:
            shutil.copy2(src, staging / name)
            carried.append(name)
    if not carried:
        logger.warning(
            "%s: no model.py in the current version: the new version serves only as TensorRT", model_dir
        )
    return carried


def _copy_atomic(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _verify_version(which: str, version_dir: Path, module: Any, inputs: tuple, opts: ExportOptions) -> float:
    """Run the committed version through the Python-backend loader; returns the worst error vs torch."""
    import torch

    from mintime.engines import load_runner

    runner = load_runner(which, version_dir=version_dir, runtime="onnx", device="cpu")
    names_in, names_out = io_names(which)
    got = runner({n: x.numpy() for n, x in zip(names_in, inputs, strict=True)})
    with torch.inference_mode():
        ref = module(*inputs)
    ref = ref if isinstance(ref, tuple) else (ref,)
    worst = 0.0
    for name, r in zip(names_out, ref, strict=True):
        r = r.float().numpy()
        err = float(np.max(np.abs(got[name] - r)))
        if not err <= opts.atol + opts.rtol * float(np.max(np.abs(r))):
            raise ParityError(f"{version_dir}: {name} differs from torch by {err:.3g} after commit")
        worst = max(worst, err)
    return worst


def export_to_repository(loaded: Any, opts: ExportOptions, source: dict[str, Any]) -> list[NetworkExport]:
    """Export the networks of ``loaded`` into new versions of the model repository.

    Args:
        loaded: the networks (:class:`mintime.networks.Networks`).
        opts: the options.
        source: provenance of the weights (checkpoint path and SHA-256, ...), written into ``export.json``.

    Returns:
        One :class:`NetworkExport` per network.

    Raises:
        ParityError: an exported graph does not match PyTorch (nothing in the repository changed for it).
        RuntimeError: ``trt="require"`` without TensorRT, or a TensorRT build failure.
        ValueError: the target is the committed repository (export never writes tracked files).
    """
    import onnx
    import onnxruntime
    import torch

    if opts.trt != "off":  # "require": fail before writing anything; "auto": say once why there is no engine
        from export.tensorrt import TensorRTUnavailableError, tensorrt_available

        ok, detail = tensorrt_available()
        if not ok and opts.trt == "require":
            raise TensorRTUnavailableError(detail)
        if not ok:
            logger.warning("no TensorRT engines: %s", detail)
    root = Path(opts.model_repository)
    source_root = Path(opts.source_repository) if opts.source_repository else committed_repository()
    if root.resolve() == source_root.resolve():
        raise ValueError(
            f"refusing to export into the committed model repository {root}: export never writes tracked files; "
            f"name another folder (default {default_export_repository()})"
        )
    seed_repository(root, source_root)
    for which in NETWORKS:
        if (root / which).is_dir():
            repo.remove_untrusted(root / which)
    channels = _channels(loaded)
    num_slots = _loaded_slots(loaded)
    export_id = uuid.uuid4().hex
    results: list[NetworkExport] = []
    written: list[Path] = []
    for which in opts.networks:
        model_dir = root / which
        if not model_dir.is_dir():
            raise FileNotFoundError(f"model folder not found: {model_dir}")
        module = export_module(which, loaded)
        module.num_slots = num_slots  # the traced slot count (the graphs fix F)
        batches = [
            example_inputs(which, b, channels=channels, seed=i, num_slots=num_slots)
            for i, b in enumerate(opts.check_batches)
        ]
        names_in, names_out = io_names(which)
        version = repo.next_version(model_dir)
        staging = repo.staging_dir(model_dir, version)
        committed: Path | None = None
        try:
            report = export_onnx(
                module,
                staging / "model.onnx",
                example_inputs=batches[0],
                input_names=names_in,
                output_names=names_out,
                dynamic_axes=dynamic_batch_axes(which),
                opset=opts.opset,
                check=True,
                check_inputs=batches[1:],
                atol=opts.atol,
                rtol=opts.rtol,
            )
            assert report is not None
            with torch.inference_mode():
                ref = module(*batches[0])
            ref = ref if isinstance(ref, tuple) else (ref,)
            dims = _output_dims(which, [r.numpy() for r in ref])
            fp16 = _try_fp16(which, module, staging, batches, opts) if opts.fp16 else None
            trt_info = _try_tensorrt(which, model_dir, staging, module, opts, bool(fp16 and fp16.get("kept")))
            source_dir = source_root / which
            carried = _carry_python_files(model_dir, staging, source_dir if source_dir.is_dir() else None)
            record = {
                "network": which,
                "version": version,
                "source": source,
                "onnx": {"file": "model.onnx", "opset": opts.opset, "dynamic_axes": "batch (axis 0)"},
                "io": {"inputs": names_in, "outputs": names_out, "dims": dims},
                "parity_fp32": report.to_dict(),
                "fp16": fp16,
                "tensorrt": trt_info,
                "carried": carried,
                "versions": {
                    "torch": torch.__version__,
                    "onnx": onnx.__version__,
                    "onnxruntime": onnxruntime.__version__,
                },
            }
            repo.write_provenance(staging, record)
            committed = repo.commit_version(staging, model_dir, version)
            written.append(committed)
            worst = _verify_version(which, committed, module, batches[0], opts)
            logger.info("%s: version %d written and checked (max abs error %.3g)", which, version, worst)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for path in written:  # nothing of this export stays: no half pair
                shutil.rmtree(path, ignore_errors=True)
            raise
        results.append(
            NetworkExport(which, version, committed, dims, report.to_dict(), fp16=fp16, tensorrt=trt_info)
        )

    # configs, then the markers (last: a version is trusted only once everything above is done), then pruning
    updates: dict[str, dict[str, list[int]]] = {}
    for model, tensors in _slot_config_updates(num_slots).items():
        if (root / model).is_dir():
            updates.setdefault(model, {}).update(tensors)
    for r in results:
        for model, tensors in _config_updates(r.dims).items():
            updates.setdefault(model, {}).update(tensors)
    for model, tensors in updates.items():
        for path in repo.config_paths(root / model):
            production = path.parent.name == "configs"
            repo.update_config_dims(path, tensors, keep_dynamic=not production)
    for path in repo.config_paths(root / "face_pipeline"):
        _set_num_slots_parameter(path, num_slots)
    for r in results:
        repo.write_marker(r.version_dir, export_id)
    for r in results:
        r.removed_versions = repo.prune_versions(root / r.network, opts.keep)
    if opts.onnx_dir is not None:
        for r in results:
            _copy_atomic(r.version_dir / "model.onnx", Path(opts.onnx_dir) / f"{r.network}.onnx")
    return results
