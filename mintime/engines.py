"""The two networks behind one interface, in PyTorch or ONNX Runtime (in-process and Python-backend runtime).

Each runner maps the model's inputs (``mintime.contract`` names, batch first) to its outputs:

* ``backbone``: ``face_slots_faces`` (B, 16, 3, 224, 224) float32 → ``backbone_features`` (B, 16, C, 7, 7) float32
* ``temporal``: ``backbone_features``, ``face_slots_mask`` (B, 16) bool, ``face_slots_identities_mask``
  (B, 16, 16) bool, ``face_slots_size_ids`` (B, 16) int64, ``face_slots_positions`` (B, 785) int64 →
  ``temporal_logit`` (B, 1) float32, ``temporal_cls_attention`` (B, 2, heads, 785) float32

Runtime ``auto`` prefers the ONNX graph ``mintime export`` wrote into the model's version folder
(``model.onnx``, run by ONNX Runtime) and falls back to PyTorch with the checkpoint's weights.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from mintime import contract
from mintime.arrays import host

__all__ = [
    "Engines",
    "TorchEngines",
    "OnnxEngines",
    "ONNX_FILENAME",
    "ONNX_FP16_FILENAME",
    "RUNTIMES",
    "NetworkRunner",
    "OnnxRunner",
    "TorchRunner",
    "load_runner",
]

logger = logging.getLogger(__name__)

ONNX_FILENAME = "model.onnx"
#: fp16 graph with float32 I/O, written by ``mintime export`` only where fp16 holds.
ONNX_FP16_FILENAME = "model_fp16.onnx"
#: Values of the models' ``runtime`` parameter.
RUNTIMES = ("auto", "onnx", "onnx_fp16", "torch")
_SPECS = contract.NETWORKS


class NetworkRunner:
    """Base class: ``runner(inputs) -> outputs``, both ``{contract name: batched array}``."""

    which: str
    description: str

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _feeds(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = _SPECS[self.which]
        self._check_inputs(inputs)
        return {t.name: np.ascontiguousarray(host(inputs[t.name]), dtype=t.numpy_dtype) for t in spec.inputs}

    def _check_inputs(self, inputs: dict[str, Any]) -> None:
        missing = [t.name for t in _SPECS[self.which].inputs if t.name not in inputs]
        if missing:
            raise KeyError(f"{self.which}: missing inputs {missing}")


class OnnxRunner(NetworkRunner):
    """ONNX Runtime session on an exported graph.

    Args:
        which: ``"backbone"`` or ``"temporal"``.
        path: the ``.onnx`` file.
        device: ``"cpu"`` or ``"cuda:N"`` (CUDA execution provider when onnxruntime has it, else CPU).
    """

    def __init__(self, which: str, path: str | os.PathLike, device: str = "cpu") -> None:
        import onnxruntime as ort

        self.which = which
        providers: list[Any] = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            index = int(device.partition(":")[2] or 0)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.output_names = [t.name for t in _SPECS[which].outputs]
        self.description = f"onnxruntime {Path(path)} ({self.session.get_providers()[0]})"

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {k: v for k, v in self._feeds(inputs).items() if k in self.input_names}
        outs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outs, strict=True))


class TorchRunner(NetworkRunner):
    """PyTorch module from a checkpoint (see :func:`mintime.networks.load_networks`).

    A frame-baseline head (:class:`~mintime.models.baseline.FrameBaseline`) runs as the ``temporal`` network:
    it has no attention, so its ``temporal_cls_attention`` is zeros (1 head), and the explanation then
    shares the verdict among the identities by their slots.

    Args:
        which: ``"backbone"`` or ``"temporal"``.
        module: the backbone (per-face, (N, 3, 224, 224) → (N, C, 7, 7)), the temporal model or a baseline head.
        device: torch device string.
        description: where the weights came from (logged).
    """

    def __init__(self, which: str, module: Any, device: str = "cpu", description: str = "torch") -> None:
        import torch

        self.torch = torch
        self.which = which
        self.device = torch.device(device)
        if which == "backbone":
            from mintime.models.backbones.base import SlotBackbone

            module = module if isinstance(module, SlotBackbone) else SlotBackbone(module)
        self.module = module.to(self.device).eval()
        self.description = description

    def _tensor(self, value: Any, dtype: str) -> Any:
        """An input on this runner's device: torch tensors stay where they are if already there (no host
        round trip for frames and faces handed over by DLPack); numpy is copied over."""
        torch = self.torch
        want = getattr(torch, "bool" if dtype == "bool" else dtype)
        if isinstance(value, torch.Tensor):
            return value.to(device=self.device, dtype=want)
        return torch.from_numpy(np.ascontiguousarray(value, dtype=dtype)).to(self.device)

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        from mintime.models.baseline import FrameBaseline

        self._check_inputs(inputs)
        feeds = [self._tensor(inputs[t.name], t.numpy_dtype) for t in contract.NETWORKS[self.which].inputs]
        with torch.inference_mode():
            if self.which == "backbone":
                return {contract.BACKBONE_FEATURES: self.module(*feeds).float().cpu().numpy()}
            if isinstance(self.module, FrameBaseline):
                logit = self.module(feeds[0], feeds[1])
                attn = torch.zeros(logit.shape[0], 2, 1, contract.NUM_TOKENS)
            else:
                logit, attn = self.module(*feeds, return_attention=True)
        return {
            contract.TEMPORAL_LOGIT: logit.float().cpu().numpy(),
            contract.TEMPORAL_CLS_ATTENTION: attn.float().cpu().numpy(),
        }


def load_runner(
    which: str,
    *,
    version_dir: str | os.PathLike | None = None,
    runtime: str = "auto",
    checkpoint: str | None = None,
    device: str = "cpu",
) -> NetworkRunner:
    """The runner of one network for a Python-backend model instance.

    Args:
        which: ``"backbone"`` or ``"temporal"``.
        version_dir: the model's version folder (``<repo>/<model>/<version>``), where export writes ``model.onnx``.
        runtime: ``"auto"`` (ONNX if ``model.onnx`` exists, else torch), ``"onnx"``, ``"onnx_fp16"``
            (``model_fp16.onnx``) or ``"torch"``.
        checkpoint: project checkpoint for the torch runtime (None = the shipped default checkpoint).
        device: ``"cpu"`` or ``"cuda:N"``.

    Raises:
        ValueError: unknown ``which`` or ``runtime``.
        FileNotFoundError: ``runtime="onnx"`` without an exported graph, or missing weights.
    """
    if which not in _SPECS:
        raise ValueError(f"unknown network {which!r}; expected 'backbone' or 'temporal'")
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")
    filename = ONNX_FP16_FILENAME if runtime == "onnx_fp16" else ONNX_FILENAME
    onnx_path = Path(version_dir) / filename if version_dir is not None else None
    if runtime.startswith("onnx") or (runtime == "auto" and onnx_path is not None and onnx_path.is_file()):
        if onnx_path is None or not onnx_path.is_file():
            raise FileNotFoundError(
                f"runtime {runtime!r} but no exported graph at {onnx_path} (run `mintime export`)"
            )
        runner: NetworkRunner = OnnxRunner(which, onnx_path, device)
    else:
        from mintime.networks import load_networks

        nets = load_networks(checkpoint=checkpoint)
        module = nets.backbone if which == "backbone" else nets.head
        weights = nets.model["weights"][0]
        runner = TorchRunner(
            which,
            module,
            device,
            description=f"torch on {device}: {nets.model['name']} from {weights['file']} "
            f"(sha256 {weights['sha256'][:12]})",
        )
    logger.info("%s: %s", which, runner.description)
    return runner


class Engines:
    """Backbone + temporal model as one object (what :class:`mintime.pipeline.Predictor` runs).

    Args:
        backbone: runner ``face_slots_faces`` (B, F, 3, 224, 224) f32 → ``backbone_features`` (B, F, C, 7, 7) f32.
        temporal: runner (features, masks, size ids, positions) → ``temporal_logit`` (B, 1),
            ``temporal_cls_attention`` (B, 2, heads, 785).
    """

    def __init__(self, backbone: NetworkRunner, temporal: NetworkRunner) -> None:
        self.backbone = backbone
        self.temporal = temporal

    def __call__(self, slots: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Both networks on batched face-stage outputs.

        Args:
            slots: the ``contract.FACE_PIPELINE`` tensors by name, batch first (extra names are ignored).

        Returns:
            ``temporal_logit`` (B, 1) float32 and ``temporal_cls_attention`` (B, 2, heads, 785) float32.
        """
        features = self.backbone(slots)[contract.BACKBONE_FEATURES]
        return self.temporal({**slots, contract.BACKBONE_FEATURES: features})


def TorchEngines(backbone: Any, temporal: Any, device: str = "cpu") -> Engines:  # noqa: N802 - a factory
    """Engines from PyTorch modules (per-face backbone, :class:`~mintime.models.temporal.MintimeTemporal`)."""
    return Engines(TorchRunner("backbone", backbone, device), TorchRunner("temporal", temporal, device))


def OnnxEngines(  # noqa: N802 - a factory
    backbone_path: str | os.PathLike, temporal_path: str | os.PathLike, device: str = "cpu"
) -> Engines:
    """Engines from the ONNX graphs ``mintime export`` writes (``backbone.onnx``, ``temporal.onnx``)."""
    return Engines(
        OnnxRunner("backbone", backbone_path, device), OnnxRunner("temporal", temporal_path, device)
    )
