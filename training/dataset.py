"""The training / evaluation dataset over the face-crop layout (the original's ``DeepFakesDataset``, §4).

Each item is one video: its identity folders are read (:func:`training.layout.scan_video_folder`), ordered and
shared among the ``F`` slots by :func:`mintime.slots.build_slots` (the same function ``mintime predict`` and the
Triton ``face_pipeline`` call), the chosen crops are resized like at inference (isotropic resize + zero pad to
224), augmented with **one random draw per video** (:mod:`training.augment`), and returned as BGR float 0..255.

Sampling alternates with the item index as in the original (odd index: ``round(linspace(0, L-2, k))``, even:
``round(linspace(1, L-1, k))``) when ``sampling="alternate"``; evaluation uses ``"odd"``, the rule of
``mintime predict``. With a :class:`~training.features.FeatureCache`, items carry cached backbone features instead
of pixels.

Item (a dict of tensors; the default collate batches it):
    ``faces`` (F, 3, 224, 224) float32 BGR 0..255 (zeros on dummy slots) — or ``features`` (F, C, 7, 7) float32,
    ``mask`` (F,) bool, ``identities_mask`` (F, F) bool, ``size_ids`` (F,) int64, ``positions`` (1 + F*P,) int64,
    ``label`` () float32 (1 = fake), ``method`` () int64, ``index`` () int64, ``num_identities`` () int64 (identity
    folders with faces, before truncation to ``max_identities``).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mintime.slots import build_slots, variant_for_index
from training.augment import augment_faces
from training.features import FeatureCache, faces_to_tensor_input, load_face_image
from training.layout import VideoFaces, scan_video_folder
from training.split import ListRow, read_list

__all__ = ["FaceVideoDataset", "load_rows", "class_counts"]

logger = logging.getLogger(__name__)


def load_rows(
    list_file: str | Path,
    data_path: str | Path,
    *,
    methods: list[int] | None = None,
    max_videos: int = -1,
    seed: int = 42,
) -> list[ListRow]:
    """Read a list file and keep the rows whose folder has a ``boxes.json`` and at least one face.

    Args:
        list_file: ``<folder> <label> <method>`` lines (:func:`training.split.read_list`).
        data_path: root of the layout.
        methods: keep only these method ids (None = all).
        max_videos: keep a seeded random subset of this size (-1 = all; order otherwise preserved).
        seed: seed of that subset.
    """
    rows = read_list(list_file)
    if methods is not None:
        rows = [r for r in rows if r.method in set(methods)]
    root = Path(data_path)
    kept, empty = [], 0
    for r in rows:
        folder = root / r.path
        try:
            ok = scan_video_folder(folder).num_faces > 0
        except FileNotFoundError:
            ok = False
        if ok:
            kept.append(r)
        else:
            empty += 1
    if empty:
        logger.warning(
            "%s: %d of %d videos have no face folder or no face and are skipped", list_file, empty, len(rows)
        )
    if 0 <= max_videos < len(kept):
        idx = np.random.default_rng(seed).permutation(len(kept))[:max_videos]
        kept = [kept[i] for i in sorted(idx)]
    return kept


def class_counts(rows: list[ListRow]) -> tuple[int, int]:
    """(n_real, n_fake) of a list."""
    c = Counter(int(r.label) for r in rows)
    return c.get(0, 0), c.get(1, 0)


class FaceVideoDataset(Dataset):
    """Videos of the face-crop layout as model inputs.

    Args:
        rows: list rows (folder relative to ``data_path``, label, method).
        data_path: layout root.
        num_slots: F.
        max_identities: identities kept per video.
        ordering: ``size`` (mean crop width, descending), ``count`` (faces, descending) or ``random``.
        mask_regime: ``correct`` or ``all_true``.
        augmentation: ``none``, ``min`` or ``max`` (one draw per video and epoch).
        sampling: ``alternate`` (the original's odd/even rule by index), ``odd`` or ``even``.
        features: a built :class:`FeatureCache` → items carry ``features`` instead of ``faces``.
        seed: base seed of augmentation and random ordering (combined with the epoch and the index).
        image_size: model input side.
        num_patches: tokens per slot P.
    """

    def __init__(
        self,
        rows: list[ListRow],
        data_path: str | Path,
        *,
        num_slots: int = 16,
        max_identities: int = 2,
        ordering: str = "size",
        mask_regime: str = "correct",
        augmentation: str = "none",
        sampling: str = "alternate",
        features: FeatureCache | None = None,
        seed: int = 42,
        image_size: int = 224,
        num_patches: int = 49,
    ) -> None:
        if ordering not in ("size", "count", "random"):
            raise ValueError(f"unknown identities ordering {ordering!r}")
        if sampling not in ("alternate", "odd", "even"):
            raise ValueError(f"unknown sampling {sampling!r}")
        self.rows = list(rows)
        self.root = Path(data_path)
        self.num_slots = num_slots
        self.max_identities = max_identities
        self.ordering = ordering
        self.mask_regime = mask_regime
        self.augmentation = augmentation
        self.sampling = sampling
        self.features = features
        self.seed = seed
        self.image_size = image_size
        self.num_patches = num_patches
        self.epoch = 0
        self._scans: dict[int, VideoFaces] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation / random-ordering draw (call once per epoch, like DistributedSampler)."""
        self.epoch = int(epoch)

    def folder(self, index: int) -> Path:
        return self.root / self.rows[index].path

    def scan(self, index: int) -> VideoFaces:
        """The (memoised) scan of item ``index``'s folder."""
        if index not in self._scans:
            self._scans[index] = scan_video_folder(self.folder(index))
        return self._scans[index]

    def plan(self, index: int, rng: np.random.Generator | None = None):
        """The :class:`~mintime.slots.SlotPlan` of item ``index`` (without loading pixels)."""
        vf = self.scan(index)
        rng = rng if rng is not None else self._rng(index)
        identities = [ident for ident in vf.identities if ident]
        order_by_size = self.ordering == "size"
        if self.ordering == "count":
            identities = sorted(identities, key=lambda ident: -len(ident))
        elif self.ordering == "random":
            identities = [identities[i] for i in rng.permutation(len(identities))]
        sampling = variant_for_index(index) if self.sampling == "alternate" else self.sampling
        return build_slots(
            identities,
            frame_size=vf.frame_size,
            num_slots=self.num_slots,
            max_identities=self.max_identities,
            num_patches=self.num_patches,
            sampling=sampling,
            mask_regime=self.mask_regime,
            order_by_size=order_by_size,
        )

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self._rng(index)
        plan = self.plan(index, rng)
        folder = self.folder(index)
        row = self.rows[index]
        item: dict[str, torch.Tensor] = {}
        if self.features is not None:
            rows_of, arr = self.features.load(row.path)
            dummy = self.features.dummy()
            feats = np.stack(
                [
                    dummy if rec is None else np.asarray(arr[rows_of[str(rec.key)]], np.float32)
                    for rec in plan.faces
                ]
            )
            item["features"] = torch.from_numpy(feats)
        else:
            images = [
                None if rec is None else load_face_image(folder / str(rec.key), self.image_size)
                for rec in plan.faces
            ]
            images, _ = augment_faces(images, rng, self.augmentation)
            black = np.zeros((self.image_size, self.image_size, 3), np.uint8)
            item["faces"] = torch.from_numpy(
                faces_to_tensor_input([black if im is None else im for im in images])
            )
            if any(im is None for im in images):  # dummy slots are exact zeros, as at inference
                item["faces"][torch.from_numpy(plan.is_dummy)] = 0.0
        arrays = plan.as_arrays()
        item["mask"] = torch.from_numpy(arrays["mask"])
        item["identities_mask"] = torch.from_numpy(arrays["identities_mask"])
        item["size_ids"] = torch.from_numpy(arrays["size_ids"])
        item["positions"] = torch.from_numpy(arrays["positions"])
        item["label"] = torch.tensor(float(row.label), dtype=torch.float32)
        item["method"] = torch.tensor(int(row.method), dtype=torch.int64)
        item["index"] = torch.tensor(int(index), dtype=torch.int64)
        item["num_identities"] = torch.tensor(
            sum(1 for i in self.scan(index).identities if i), dtype=torch.int64
        )
        return item
