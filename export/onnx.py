"""Torch → ONNX with a parity check against ONNX Runtime (``onnx`` and ``onnxruntime`` are imported lazily).

The check runs the exported graph on inputs of several batch sizes (the export batch and another one), so a batch
dimension baked into the graph fails loudly instead of at serving time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ParityError", "ParityReport", "export_onnx", "onnx_parity", "run_onnx", "to_numpy_inputs"]

logger = logging.getLogger(__name__)


class ParityError(RuntimeError):
    """ONNX Runtime's outputs differ from PyTorch's beyond the tolerance."""


@dataclass
class ParityReport:
    """Largest differences between ONNX Runtime and PyTorch, per batch size and output.

    Attributes:
        max_abs: ``{batch: {output: max |ort - torch|}}``.
        max_ref: ``{batch: {output: max |torch|}}`` (scale of the reference).
        atol, rtol: the tolerance used: an output passes when ``max_abs <= atol + rtol * max_ref``.
    """

    max_abs: dict[int, dict[str, float]] = field(default_factory=dict)
    max_ref: dict[int, dict[str, float]] = field(default_factory=dict)
    atol: float = 1e-4
    rtol: float = 1e-4

    def failures(self) -> list[str]:
        """Human-readable lines for the outputs that exceed the tolerance."""
        out = []
        for batch, errors in self.max_abs.items():
            for name, err in errors.items():
                bound = self.atol + self.rtol * self.max_ref[batch][name]
                if not err <= bound:  # also catches NaN
                    out.append(f"batch {batch}, {name}: max abs error {err:.3g} > {bound:.3g}")
        return out

    @property
    def ok(self) -> bool:
        """Every output of every batch is within tolerance."""
        return not self.failures()

    def worst(self) -> float:
        """The largest absolute error over all batches and outputs."""
        return max((e for errs in self.max_abs.values() for e in errs.values()), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for the provenance file)."""
        return {
            "atol": self.atol,
            "rtol": self.rtol,
            "max_abs_error": {str(b): v for b, v in self.max_abs.items()},
            "max_abs_reference": {str(b): v for b, v in self.max_ref.items()},
            "ok": self.ok,
        }


def to_numpy_inputs(inputs: Sequence[Any], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Torch tensors (or arrays) → ``{name: numpy array}`` feeds for ONNX Runtime."""
    feeds = {}
    for name, x in zip(names, inputs, strict=True):
        feeds[name] = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return feeds


def run_onnx(
    path: str | os.PathLike, feeds: dict[str, np.ndarray], output_names: Sequence[str]
) -> list[np.ndarray]:
    """Run an ONNX file with ONNX Runtime on the CPU (inputs the graph dropped are left out)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(list(output_names), {k: v for k, v in feeds.items() if k in names})


def _torch_outputs(model: Any, inputs: Sequence[Any]) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        out = model(*inputs)
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().float().cpu().numpy() for o in out]


def onnx_parity(
    model: Any,
    path: str | os.PathLike,
    batches: Sequence[Sequence[Any]],
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> ParityReport:
    """Compare ONNX Runtime with PyTorch on several input batches.

    Args:
        model: the torch module (eval mode), called as ``model(*inputs)``.
        path: the exported ``.onnx``.
        batches: one input tuple per check, e.g. batch 1 and batch 3 (first dim = batch).
        input_names, output_names: as exported.
        atol, rtol: tolerance recorded in the report (see :class:`ParityReport`).

    Returns:
        The report (use :attr:`ParityReport.ok`; nothing is raised here).
    """
    report = ParityReport(atol=atol, rtol=rtol)
    for inputs in batches:
        batch = int(inputs[0].shape[0])
        ref = _torch_outputs(model, inputs)
        got = run_onnx(path, to_numpy_inputs(inputs, input_names), output_names)
        report.max_abs[batch], report.max_ref[batch] = {}, {}
        for name, r, g in zip(output_names, ref, got, strict=True):
            if r.shape != g.shape:
                raise ParityError(
                    f"{Path(path).name}: batch {batch}, {name}: ONNX shape {g.shape} != torch {r.shape}"
                )
            report.max_abs[batch][name] = float(np.max(np.abs(g.astype(np.float64) - r))) if r.size else 0.0
            report.max_ref[batch][name] = float(np.max(np.abs(r))) if r.size else 0.0
    return report


def export_onnx(
    model: Any,
    path: str | os.PathLike,
    *,
    example_inputs: Sequence[Any],
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int = 17,
    check: bool = True,
    check_inputs: Sequence[Sequence[Any]] = (),
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> ParityReport | None:
    """Export a module to ONNX (TorchScript-based exporter) and check it.

    Args:
        model: the module, in eval mode, called as ``model(*example_inputs)``.
        path: the ``.onnx`` file to write (its folder is created).
        example_inputs: inputs traced for the export (their batch size is the export batch).
        input_names, output_names: graph I/O names (the ``mintime.contract`` tensor names).
        dynamic_axes: e.g. ``{"face_slots_faces": {0: "batch"}, "backbone_features": {0: "batch"}}``.
        opset: ONNX opset.
        check: run ``onnx.checker`` and compare ONNX Runtime with PyTorch on ``example_inputs`` and on each
            of ``check_inputs`` (other batch sizes).
        check_inputs: more input tuples for the parity check.
        atol, rtol: parity tolerance (see :class:`ParityReport`).

    Returns:
        The parity report (None when ``check`` is False).

    Raises:
        ParityError: ONNX Runtime differs from PyTorch beyond the tolerance (the file is kept for inspection).
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(
            model,
            tuple(example_inputs),
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    logger.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    if not check:
        return None
    import onnx

    onnx.checker.check_model(str(path))
    report = onnx_parity(
        model,
        path,
        [tuple(example_inputs), *[tuple(b) for b in check_inputs]],
        input_names=input_names,
        output_names=output_names,
        atol=atol,
        rtol=rtol,
    )
    failures = report.failures()
    if failures:
        raise ParityError(f"{path.name}: ONNX Runtime differs from PyTorch: " + "; ".join(failures))
    logger.info("%s: ONNX Runtime matches PyTorch (max abs error %.3g)", path.name, report.worst())
    return report
