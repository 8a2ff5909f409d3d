"""Backbone feature cache: with a frozen extractor, each face crop's (C, 7, 7) map is computed once.

Training a frozen-backbone model on CPU is dominated by the backbone (EfficientNet-Lite0: ~0.4 GFLOP per face,
16 faces per video, every epoch). The cache stores, per video folder, one float16 array ``(n_faces, C, 7, 7)``
(the order of ``files`` in its JSON sidecar) under ``<cache_dir>/<tag>/``, where ``tag`` names the backbone and
its weights, so a different extractor never reads stale features. Files are written atomically; a folder whose
face list changed is recomputed. Dummy (black) slots use the features of an all-zero image, as the model sees
them at inference.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mintime.fileio import atomic_write
from training.layout import scan_video_folder

__all__ = ["FeatureCache", "load_face_image", "faces_to_tensor_input", "weights_tag"]

logger = logging.getLogger(__name__)


def weights_tag(backbone: str, *, pretrained: bool, extractor_weights: str | None, seed: int) -> str:
    """A short name for (backbone, weights): ``efficientnet_lite0-pretrained``, ``...-file-<sha>``, ``...-init<seed>``."""
    if extractor_weights:
        st = os.stat(extractor_weights)
        digest = hashlib.sha1(f"{Path(extractor_weights).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
        return f"{backbone}-file-{digest.hexdigest()[:12]}"
    return f"{backbone}-pretrained" if pretrained else f"{backbone}-init{seed}"


def load_face_image(path: str | Path, size: int = 224) -> np.ndarray:
    """Read a crop PNG and bring it to the model size (isotropic resize + zero pad, as inference does).

    Returns:
        (size, size, 3) uint8 BGR.
    """
    from mintime.faces.crops import resize_for_model

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot read image {path}")
    return resize_for_model(img, size)


def faces_to_tensor_input(images: Sequence[np.ndarray]) -> np.ndarray:
    """BGR uint8 (H, W, 3) images → (N, 3, H, W) float32 BGR 0..255 (the backbone input convention)."""
    return (
        np.stack([np.asarray(im, np.float32).transpose(2, 0, 1) for im in images])
        if images
        else np.zeros((0, 3, 224, 224), np.float32)
    )


def _atomic_save(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as fh:
        np.save(fh, array)


class FeatureCache:
    """Per-video float16 feature arrays of a frozen backbone.

    Args:
        root: cache folder; arrays go to ``root/tag``.
        tag: backbone + weights name (:func:`weights_tag`).
    """

    def __init__(self, root: str | Path, tag: str) -> None:
        self.dir = Path(root) / tag
        self.tag = tag
        self._dummy: np.ndarray | None = None

    def _stem(self, rel: str) -> Path:
        return self.dir / hashlib.sha1(rel.encode()).hexdigest()[:24]

    def has(self, rel: str, files: Sequence[str]) -> bool:
        """Whether ``rel`` is cached with exactly these face files."""
        stem = self._stem(rel)
        meta = stem.with_suffix(".json")
        if not meta.is_file() or not stem.with_suffix(".npy").is_file():
            return False
        try:
            return json.loads(meta.read_text()).get("files") == list(files)
        except (OSError, json.JSONDecodeError):
            return False

    def load(self, rel: str) -> tuple[dict[str, int], np.ndarray]:
        """(file → row, (n, C, 7, 7) float16 memory map) of a cached video."""
        stem = self._stem(rel)
        files = json.loads(stem.with_suffix(".json").read_text())["files"]
        return {f: i for i, f in enumerate(files)}, np.load(stem.with_suffix(".npy"), mmap_mode="r")

    def dummy(self) -> np.ndarray:
        """(C, 7, 7) float32 features of a black face (dummy slots)."""
        if self._dummy is None:
            self._dummy = np.load(self.dir / "_dummy.npy").astype(np.float32)
        return self._dummy

    def build(
        self,
        videos: Sequence[tuple[str, Path]],
        backbone,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        rank: int = 0,
        world_size: int = 1,
        progress: bool = True,
    ) -> int:
        """Compute missing entries (this rank's share: ``videos[rank::world_size]``).

        Args:
            videos: (relative name, folder) pairs.
            backbone: module (N, 3, 224, 224) BGR 0..255 → (N, C, 7, 7); run in eval mode under no_grad.
            device: torch device.
            batch_size: faces per backbone call.
            rank / world_size: distributed share.
            progress: show a tqdm bar (rank 0 only).

        Returns:
            Number of videos computed by this rank.
        """
        import torch
        from tqdm import tqdm

        self.dir.mkdir(parents=True, exist_ok=True)
        backbone = backbone.to(device).eval()
        dummy_path = self.dir / "_dummy.npy"
        with torch.inference_mode():
            if rank == 0 and not dummy_path.is_file():
                z = torch.zeros(1, 3, 224, 224, device=device)
                _atomic_save(dummy_path, backbone(z)[0].float().cpu().numpy().astype(np.float16))
            todo = []
            for rel, folder in list(videos)[rank::world_size]:
                files = scan_video_folder(folder).files()
                if not self.has(rel, files):
                    todo.append((rel, folder, files))
            total = sum(len(f) for _, _, f in todo)
            bar = tqdm(
                total=total, unit="face", desc="feature cache", disable=not progress or rank != 0 or not total
            )
            for rel, folder, files in todo:
                out = []
                for i in range(0, len(files), batch_size):
                    chunk = files[i : i + batch_size]
                    x = torch.from_numpy(faces_to_tensor_input([load_face_image(folder / f) for f in chunk]))
                    out.append(backbone(x.to(device)).float().cpu().numpy().astype(np.float16))
                    bar.update(len(chunk))
                arr = np.concatenate(out) if out else np.zeros((0, 1, 7, 7), np.float16)
                stem = self._stem(rel)
                _atomic_save(stem.with_suffix(".npy"), arr)
                stem.with_suffix(".json").write_text(json.dumps({"rel": rel, "files": files}))
            bar.close()
        if todo:
            logger.info("feature cache %s: computed %d videos (%d faces)", self.dir, len(todo), total)
        return len(todo)
