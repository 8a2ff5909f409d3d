"""The face stage: sampled frames → detections → identities → slot plan → slot tensors, as one typed result.

One implementation shared by ``mintime predict`` (:mod:`mintime.pipeline`), the Triton ``face_pipeline`` model,
``mintime preprocess``, the annotated video and evaluation. Every consumer reads the :class:`FaceStageResult`
object; JSON (:meth:`FaceStageResult.to_json`) is only a rendering of it for the edge (result files, the
``face_slots_json`` tensor), never parsed back.

Steps: :class:`mintime.faces.mtcnn.MTCNN` (batched over the sampled frames) → embeddings
(:mod:`mintime.faces.embedder`) + :func:`mintime.faces.identities.cluster_identities` → square 1/3-margin crops
from each face's own frame (:mod:`mintime.faces.crops`) → :func:`mintime.slots.build_slots` → tensors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mintime import contract
from mintime.arrays import concatenate, contiguous, host, is_torch
from mintime.config import PipelineConfig
from mintime.slots import FaceRecord, NoFaceError, SlotPlan, build_slots

__all__ = [
    "ClipInfo",
    "Face",
    "Identity",
    "SlotTensors",
    "FaceStageResult",
    "FaceStage",
    "PASS_DEFAULT",
    "PASS_RELAXED",
    "stretch_contrast",
]

logger = logging.getLogger(__name__)

#: Values of :attr:`FaceStageResult.detection_pass`.
PASS_DEFAULT = "default"
PASS_RELAXED = "relaxed"


@dataclass(frozen=True)
class ClipInfo:
    """What the decoder says about the clip.

    Attributes:
        fps: frames per second (0 when unknown).
        width, height: size in pixels of the frames analysed (display orientation, after the decode budget's
            downscale): every box of the result is in these pixels.
        total_frames: frames in the file (as counted or declared by the decoder).
        sampled_frames: (T,) frame index in the file of each sampled frame.
        warnings: the decoder's warnings (a partial decode), one sentence each.
        source_size: (width, height) of the video itself (display orientation); (0, 0) when the decoder did not
            say (the server's face_pipeline receives the frames only).
    """

    fps: float
    width: int
    height: int
    total_frames: int
    sampled_frames: tuple[int, ...]
    warnings: tuple[str, ...] = ()
    source_size: tuple[int, int] = (0, 0)

    @classmethod
    def of(cls, clip: Any) -> ClipInfo:
        """From a :class:`mintime.video.DecodedClip`."""
        return cls(
            fps=float(clip.fps),
            width=int(clip.width),
            height=int(clip.height),
            total_frames=int(clip.total_frames),
            sampled_frames=tuple(int(i) for i in clip.indices),
            warnings=tuple(getattr(clip, "warnings", ())),
            source_size=tuple(int(v) for v in getattr(clip, "source_size", (0, 0))),  # type: ignore[arg-type]
        )

    @property
    def scale(self) -> float | None:
        """Analysed size / source size (1.0: not scaled; None: source size unknown)."""
        return round(self.width / self.source_size[0], 6) if self.source_size[0] > 0 else None

    def to_json(self) -> dict[str, Any]:
        known = self.source_size[0] > 0
        return {
            "fps": round(self.fps, 3),
            "width": self.width,
            "height": self.height,
            "source_width": self.source_size[0] if known else None,
            "source_height": self.source_size[1] if known else None,
            "scale": self.scale,
            "boxes_in": "analysed frame pixels (width x height); divide by scale for source pixels",
            "total_frames": self.total_frames,
            "sampled_frames": list(self.sampled_frames),
        }


@dataclass(frozen=True)
class Face:
    """One detected face that belongs to an identity.

    Attributes:
        position: index of its sampled frame in the clip (0..T-1).
        frame: index of that frame in the file.
        index: index among that frame's detections (largest first, as the detector sorts them).
        box: (4,) float32 x1, y1, x2, y2 in full-resolution pixels.
        score: detector confidence.
        crop_box: ``(x0, y0, x1, y1)`` of its square 1/3-margin crop in its own frame (half-open pixels).
        crop: (h, w, 3) uint8 RGB pixels of that crop (the reference path keeps them; the device path cuts
            the slot faces straight from the frames tensor and leaves this None).
    """

    position: int
    frame: int
    index: int
    box: np.ndarray
    score: float
    crop_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    crop: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def crop_size(self) -> tuple[int, int]:
        """(height, width) of the crop in pixels."""
        x0, y0, x1, y1 = self.crop_box
        return y1 - y0, x1 - x0


@dataclass(frozen=True)
class Identity:
    """One person found in the clip.

    Attributes:
        id: rank in the clustering order (0 = the identity the clustering lists first).
        faces: its faces, in frame order.
        rank: position among the kept identities (the ``face_slots_identity`` value), None when not kept.
        slots: the slots its faces fill (empty when not kept).
    """

    id: int
    faces: tuple[Face, ...]
    rank: int | None
    slots: tuple[int, ...]

    @property
    def kept(self) -> bool:
        return self.rank is not None


@dataclass(frozen=True)
class SlotTensors:
    """The face stage's array outputs for one video (no batch dimension), named by :mod:`mintime.contract`.

    Attributes:
        faces: (F, 3, 224, 224) float32 BGR 0..255, zeros on dummy slots (numpy, or a torch tensor on the GPU).
        mask: (F,) bool, slots the model may attend.
        identities_mask: (F, F) bool.
        size_ids: (F,) int64.
        positions: (1 + F*P,) int64.
        slot_identity: (F,) int64, kept-identity rank of each slot's face, -1 on dummy slots.
    """

    faces: np.ndarray
    mask: np.ndarray
    identities_mask: np.ndarray
    size_ids: np.ndarray
    positions: np.ndarray
    slot_identity: np.ndarray

    @classmethod
    def from_plan(cls, plan: SlotPlan, faces: np.ndarray) -> SlotTensors:
        """Tensors of a slot plan and its face pixels (F, 3, 224, 224)."""
        owner = np.where(plan.is_dummy, -1, plan.slot_identity).astype(np.int64)
        return cls(
            faces=contiguous(faces) if is_torch(faces) else np.ascontiguousarray(faces, dtype=np.float32),
            mask=np.ascontiguousarray(plan.mask, dtype=np.bool_),
            identities_mask=np.ascontiguousarray(plan.identities_mask, dtype=np.bool_),
            size_ids=np.ascontiguousarray(plan.size_ids, dtype=np.int64),
            positions=np.ascontiguousarray(plan.positions, dtype=np.int64),
            slot_identity=owner,
        )

    @classmethod
    def empty(cls, num_slots: int) -> SlotTensors:
        """A video with no face: one visible dummy slot so that attention stays well defined."""
        size = contract.IMAGE_SIZE
        mask = np.zeros(num_slots, bool)
        mask[0] = True
        return cls(
            faces=np.zeros((num_slots, 3, size, size), np.float32),
            mask=mask,
            identities_mask=np.ones((num_slots, num_slots), bool),
            size_ids=np.zeros(num_slots, np.int64),
            positions=np.zeros(1 + num_slots * contract.NUM_PATCHES, np.int64),
            slot_identity=np.full(num_slots, -1, np.int64),
        )

    def as_inputs(self) -> dict[str, np.ndarray]:
        """``{contract name: array}`` for :data:`mintime.contract.SLOT_TENSORS` (no batch dimension)."""
        return {
            contract.FACES: self.faces,
            contract.MASK: self.mask,
            contract.IDENTITIES_MASK: self.identities_mask,
            contract.SIZE_IDS: self.size_ids,
            contract.POSITIONS: self.positions,
            contract.SLOT_IDENTITY: self.slot_identity,
        }

    @classmethod
    def from_inputs(cls, arrays: dict[str, np.ndarray]) -> SlotTensors:
        """Inverse of :meth:`as_inputs` (arrays of one video, no batch dimension)."""
        return cls(
            faces=arrays[contract.FACES],
            mask=arrays[contract.MASK],
            identities_mask=arrays[contract.IDENTITIES_MASK],
            size_ids=arrays[contract.SIZE_IDS],
            positions=arrays[contract.POSITIONS],
            slot_identity=arrays[contract.SLOT_IDENTITY],
        )


@dataclass
class FaceStageResult:
    """Everything the face stage found for one clip.

    Attributes:
        clip: the decoder's description of the clip.
        status: ``contract.STATUS_OK`` or ``contract.STATUS_NO_FACE``.
        reason: why no face was found (None when ok).
        detections: per sampled frame, the detector's :class:`~mintime.faces.mtcnn.FrameDetections`.
        identities: every identity the clustering kept as a person (kept in the slots or not).
        plan: the slot plan (None when no face).
        tensors: the slot tensors (empty slots when no face).
        timings: seconds per step (``detect``, ``identities``, ``crops_slots``; ``relaxed`` for a second pass).
        detection_pass: ``"default"`` or ``"relaxed"`` (the pass whose detections these are).
    """

    clip: ClipInfo
    status: str
    reason: str | None
    detections: list[Any]
    identities: list[Identity]
    plan: SlotPlan | None
    tensors: SlotTensors
    timings: dict[str, float] = field(default_factory=dict)
    detection_pass: str = PASS_DEFAULT

    @property
    def ok(self) -> bool:
        return self.status == contract.STATUS_OK

    @property
    def kept(self) -> list[Identity]:
        """The identities in the slots, in kept-rank order."""
        return sorted((i for i in self.identities if i.kept), key=lambda i: i.rank)

    def to_json(self) -> dict[str, Any]:
        """The JSON rendering (the ``face_slots_json`` tensor; the face part of ``mintime predict --json``)."""
        out: dict[str, Any] = {
            "clip": self.clip.to_json(),
            "detections": int(sum(len(d.boxes) for d in self.detections)),
            "detection_pass": self.detection_pass,
        }
        if self.clip.warnings:
            out["warnings"] = list(self.clip.warnings)
        if not self.ok:
            out.update(status=self.status, reason=self.reason, identities=[], slots=[])
            return out
        assert self.plan is not None
        kept = self.kept
        out.update(
            status=self.status,
            identities=[
                {
                    "id": ident.id,
                    "kept": ident.kept,
                    "num_faces": len(ident.faces),
                    "faces": [
                        {
                            "frame": f.frame,
                            "box": [round(float(v), 2) for v in f.box],
                            "score": round(float(f.score), 4),
                        }
                        for f in ident.faces
                    ],
                    "slots": list(ident.slots),
                }
                for ident in self.identities
            ],
            slots=[
                {
                    "slot": s,
                    "identity": kept[int(self.plan.slot_identity[s])].id,
                    "frame": int(self.plan.frame_indices[s]),
                    "dummy": rec is None,
                }
                for s, rec in enumerate(self.plan.faces)
            ],
        )
        return out


class FaceStage:
    """Detect faces on the sampled frames, group them into identities and fill the slots.

    Heavy models (MTCNN, the embedder) are created on first use, so constructing this is cheap.
    """

    def __init__(self, cfg: PipelineConfig | None = None) -> None:
        self.cfg = cfg or PipelineConfig()
        self._detector = None
        self._embedder = None

    @property
    def detector(self) -> Any:
        if self._detector is None:
            from mintime.faces.mtcnn import MTCNN

            self._detector = MTCNN(
                device=self.cfg.device, thresholds=self.cfg.thresholds, min_face_size=self.cfg.min_face_size
            )
        return self._detector

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from mintime.faces.embedder import create_embedder

            self._embedder = create_embedder(
                self.cfg.embedder, weights=self.cfg.embedder_weights, device=self.cfg.device
            )
        return self._embedder

    def __call__(self, clip: Any) -> FaceStageResult:
        """Run detect → identities → crops → slots on a decoded clip (:meth:`batch` of one)."""
        return self.batch([clip])[0]

    def batch(self, clips: list[Any]) -> list[FaceStageResult]:
        """The face stage of several clips in shared batched passes (the Triton model's dynamic batch).

        Detection runs once per frame size over the frames of every clip of that size; the embedder runs once
        over the chosen faces of every clip; identities, crops and slots are per clip. When a clip's default pass
        finds no identity, or none seen on ``cfg.relaxed_min_coverage`` of its sampled frames, and
        ``cfg.relaxed_retry`` is set, a second pass detects on contrast-stretched frames at the relaxed thresholds
        and resolution (crops always come from the original frames); the pass whose best identity is seen on
        more frames wins.

        Args:
            clips: :class:`mintime.video.DecodedClip` objects (frames (T, H, W, 3) uint8 RGB, indices (T,)); any
                mix of sizes and lengths.

        Returns:
            One :class:`FaceStageResult` per clip, in order; ``status == "no_face"`` when no identity survives.
        """
        cfg = self.cfg
        results = self._run(clips, [c.frames for c in clips], cfg.thresholds, cfg.detect_scale, PASS_DEFAULT)
        retry = [
            i
            for i, (clip, r) in enumerate(zip(clips, results, strict=True))
            if cfg.relaxed_retry and _coverage(r) < max(cfg.relaxed_min_coverage * len(clip.indices), 1)
        ]
        if not retry:
            return results
        t0 = time.perf_counter()
        again = self._run(
            [clips[i] for i in retry],
            [stretch_contrast(clips[i].frames) for i in retry],
            cfg.relaxed_thresholds,
            cfg.relaxed_detect_scale,
            PASS_RELAXED,
        )
        seconds = (time.perf_counter() - t0) / len(retry)
        for i, relaxed in zip(retry, again, strict=True):
            first = results[i]
            if _coverage(relaxed) > _coverage(first):
                logger.info("the relaxed detection pass found %d identities", len(relaxed.identities))
                relaxed.timings.update({f"default_{k}": v for k, v in first.timings.items()}, relaxed=seconds)
                results[i] = relaxed
            else:
                first.timings["relaxed"] = seconds
        return results

    def _run(
        self,
        clips: list[Any],
        detect_frames: list[np.ndarray],
        thresholds: tuple[float, ...],
        scale: float,
        which: str,
    ) -> list[FaceStageResult]:
        """One pass over several clips: detect on ``detect_frames`` ((T, H, W, 3) uint8 each), crop from the
        clips' own frames. Shared batched work is timed once and shared equally among the clips."""
        n = len(clips)
        t0 = time.perf_counter()
        detections = self._detect(detect_frames, thresholds, scale)
        timings = [{"detect": (time.perf_counter() - t0) / n} for _ in clips]
        infos = [ClipInfo.of(c) for c in clips]
        rows = [[(t, k) for t, det in enumerate(d) for k in range(len(det.boxes))] for d in detections]
        results: list[FaceStageResult | None] = [
            None if r else self._no_face(info, d, tm, "no face detected in the sampled frames", which)
            for r, info, d, tm in zip(rows, infos, detections, timings, strict=True)
        ]
        todo = [i for i in range(n) if results[i] is None]
        if todo:
            t0 = time.perf_counter()
            clusters = self._identities(
                [clips[i] for i in todo], [detections[i] for i in todo], [rows[i] for i in todo]
            )
            seconds = (time.perf_counter() - t0) / len(todo)
            for i, found in zip(todo, clusters, strict=True):
                timings[i]["identities"] = seconds
                results[i] = self._finish(
                    clips[i], infos[i], detections[i], rows[i], found, timings[i], which
                )
        return results  # type: ignore[return-value]

    def _detect(
        self, frames: list[np.ndarray], thresholds: tuple[float, ...], scale: float
    ) -> list[list[Any]]:
        """MTCNN over the frames of several clips: one call per frame size (the frames of equal-size clips are
        concatenated), split back per clip."""
        out: list[list[Any]] = [[] for _ in frames]
        sizes: dict[tuple[int, ...], list[int]] = {}
        for i, f in enumerate(frames):
            sizes.setdefault(tuple(f.shape[1:]), []).append(i)
        for group in sizes.values():
            stacked = frames[group[0]] if len(group) == 1 else concatenate([frames[i] for i in group])
            found = self.detector.detect(stacked, scale=scale, thresholds=thresholds)
            start = 0
            for i in group:
                out[i] = found[start : start + len(frames[i])]
                start += len(frames[i])
        return out

    def _finish(
        self,
        clip: Any,
        info: ClipInfo,
        detections: list[Any],
        rows: list[tuple[int, int]],
        clusters: Any,
        timings: dict[str, float],
        which: str,
    ) -> FaceStageResult:
        """Crops, slot plan and slot tensors of one clip whose identities are known."""
        cfg = self.cfg
        if not clusters.identities:
            reason = "faces were detected but none recurs enough to form an identity"
            return self._no_face(info, detections, timings, reason, which)
        t0 = time.perf_counter()
        members = [self._faces(clip, detections, rows, [int(i) for i in m]) for m in clusters.identities]
        try:
            plan = build_slots(
                [[FaceRecord(f.frame, *f.crop_size, key=f) for f in faces] for faces in members],
                frame_size=(info.width, info.height),
                num_slots=cfg.num_slots,
                max_identities=cfg.max_identities,
                mask_regime=cfg.mask_regime,
            )
        except NoFaceError as exc:
            return self._no_face(info, detections, timings, str(exc), which)
        tensors = SlotTensors.from_plan(plan, self._slot_pixels(clip, plan))
        identities = []
        for cid, faces in enumerate(members):
            rank = plan.identity_order.index(cid) if cid in plan.identity_order else None
            slots = () if rank is None else tuple(int(s) for s in np.flatnonzero(plan.slot_identity == rank))
            identities.append(Identity(id=cid, faces=tuple(faces), rank=rank, slots=slots))
        timings["crops_slots"] = time.perf_counter() - t0
        return FaceStageResult(
            info, contract.STATUS_OK, None, detections, identities, plan, tensors, timings, which
        )

    @property
    def device_path(self) -> bool:
        """True when identities come from the batched network (tracklets first, faces cut on the device)."""
        return hasattr(self.embedder, "descriptors_from_chips")

    def _frames_tensor(self, clip: Any) -> Any:
        """The clip's frames as a (T, H, W, 3) uint8 torch tensor on the stage's device (no copy on the CPU)."""
        import torch

        frames = clip.frames
        if not isinstance(frames, torch.Tensor):
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        return frames.to(self.cfg.device)

    def _identities(
        self, clips: list[Any], detections: list[list[Any]], rows: list[list[tuple[int, int]]]
    ) -> list[Any]:
        """Group each clip's detections into identities (:class:`mintime.faces.identities.IdentityClusters`),
        with one embedder pass over the faces of every clip.

        Device path (a batched embedder): per clip, tracklets by position first, faces below the size filter
        dropped, a bounded number of faces per tracklet chosen (:func:`mintime.faces.tracklets.faces_to_embed`);
        their chips are aligned on the device from MTCNN's landmarks, the chips of all clips go through dlib's
        ResNet in one batch, and tracklets merge by appearance per clip. Reference path (dlib): every detection
        embedded, then :func:`mintime.faces.identities.cluster_identities` per clip.
        """
        from mintime.faces.identities import cluster_identities, clusters_from_labels

        cfg = self.cfg
        per_clip = []
        for clip, dets, rws in zip(clips, detections, rows, strict=True):
            positions = np.asarray([t for t, _ in rws], np.int64)
            boxes = np.stack([np.asarray(dets[t].boxes[k], np.float32) for t, k in rws])
            per_clip.append((positions, boxes, np.asarray(clip.indices, np.int64)[positions]))
        rules = {
            "min_cluster_ratio": cfg.min_cluster_ratio,
            "min_faces": cfg.min_faces,
            "min_size_ratio": cfg.min_size_ratio,
        }
        sizes = [(int(c.width), int(c.height)) for c in clips]
        if not self.device_path:
            frames = [host(c.frames[t]) for c, (pos, _, _) in zip(clips, per_clip, strict=True) for t in pos]
            boxes = [b for _, bx, _ in per_clip for b in bx]
            frame_ids = [f for _, _, fid in per_clip for f in fid]
            embeddings = self.embedder.embed(frames, boxes, frame_ids)
            bounds = np.cumsum([0, *(len(p[0]) for p in per_clip)])
            return [
                cluster_identities(
                    embeddings[bounds[i] : bounds[i + 1]],
                    bx,
                    fid,
                    frame_size=sizes[i],
                    distance_threshold=self.embedder.threshold,
                    metric=self.embedder.metric,
                    **rules,
                )
                for i, (_, bx, fid) in enumerate(per_clip)
            ]
        import torch

        from mintime.faces.align import align_faces
        from mintime.faces.tracklets import face_labels, faces_to_embed

        plans, chips = [], []
        for clip, dets, rws, (pos, bx, fid) in zip(clips, detections, rows, per_clip, strict=True):
            scores = np.asarray([float(dets[t].scores[k]) for t, k in rws], np.float32)
            tracklets, chosen = faces_to_embed(bx, fid, per_track=cfg.faces_per_tracklet, scores=scores)
            plans.append((tracklets, chosen))
            if len(chosen):
                marks = np.stack(
                    [np.asarray(dets[t].landmarks[k], np.float32) for t, k in (rws[j] for j in chosen)]
                )
                chips.append(align_faces(self._frames_tensor(clip), pos[chosen], marks))
        embedded = (
            self.embedder.descriptors_from_chips(torch.cat(chips)).float().cpu().numpy()
            if chips
            else np.zeros((0, 1), np.float32)
        )
        out, start = [], 0
        for i, ((tracklets, chosen), (_, bx, fid)) in enumerate(zip(plans, per_clip, strict=True)):
            emb = embedded[start : start + len(chosen)]
            start += len(chosen)
            labels = face_labels(
                tracklets, chosen, emb, threshold=self.embedder.threshold, metric=self.embedder.metric
            )
            out.append(clusters_from_labels(labels, bx, fid, frame_size=sizes[i], **rules))
        return out

    def _faces(
        self, clip: Any, detections: list[Any], rows: list[tuple[int, int]], members: list[int]
    ) -> list[Face]:
        """The :class:`Face` of each member row with its square crop box (and pixels on the reference path)."""
        from mintime.faces.crops import crop_face
        from mintime.faces.crops_torch import square_crop_boxes

        boxes = np.stack(
            [np.asarray(detections[t].boxes[k], np.float32) for t, k in (rows[i] for i in members)]
        )
        crop_boxes = square_crop_boxes(boxes, np.array([clip.width, clip.height]))
        faces = []
        for j, i in enumerate(members):
            t, k = rows[i]
            faces.append(
                Face(
                    position=t,
                    frame=int(clip.indices[t]),
                    index=k,
                    box=boxes[j],
                    score=float(detections[t].scores[k]),
                    crop_box=tuple(int(v) for v in crop_boxes[j]),
                    crop=None if self.device_path else crop_face(host(clip.frames[t]), boxes[j]),
                )
            )
        return faces

    def _slot_pixels(self, clip: Any, plan: SlotPlan) -> Any:
        """(F, 3, 224, 224) float32 BGR 0..255 of the plan's faces, zeros on dummy slots: numpy, or a torch tensor
        on the GPU when the stage runs there (the frames never leave the device)."""
        size = contract.IMAGE_SIZE
        pixels = np.zeros((plan.num_slots, 3, size, size), np.float32)
        real = [(s, rec.key) for s, rec in enumerate(plan.faces) if rec is not None]
        if not real:
            return pixels
        if self.device_path:
            from mintime.faces.crops_torch import crop_resize_pad

            frames = self._frames_tensor(clip)
            batch, _ = crop_resize_pad(
                frames,
                np.stack([face.box for _, face in real]),
                np.array([face.position for _, face in real]),
                size=size,
            )
            if frames.is_cuda:  # the slot tensor stays on the GPU (handed to the backbone by DLPack)
                import torch

                on_device = torch.zeros(
                    (plan.num_slots, 3, size, size), dtype=torch.float32, device=frames.device
                )
                on_device[torch.as_tensor([s for s, _ in real], device=frames.device)] = batch.float()
                return on_device
            batch = batch.float().cpu().numpy()
        else:
            from mintime.faces.crops import resize_for_model, to_model_input

            batch = to_model_input(np.stack([resize_for_model(face.crop, size) for _, face in real]))
        for j, (s, _) in enumerate(real):
            pixels[s] = batch[j]
        return pixels

    def _no_face(
        self, info: ClipInfo, detections: list[Any], timings: dict[str, float], reason: str, which: str
    ) -> FaceStageResult:
        logger.info("no face (%s pass): %s", which, reason)
        return FaceStageResult(
            info,
            contract.STATUS_NO_FACE,
            reason,
            detections,
            [],
            None,
            SlotTensors.empty(self.cfg.num_slots),
            timings,
            which,
        )


def _coverage(result: FaceStageResult) -> int:
    """Sampled frames on which the result's best identity is seen (0 without identity)."""
    return max((len({f.position for f in i.faces}) for i in result.identities), default=0)


def stretch_contrast(
    frames: np.ndarray, *, percentile: float = 99.5, max_gain: float = 8.0, bright: float = 128.0
) -> np.ndarray:
    """Brighten dark frames for detection: each frame scaled so its ``percentile`` maps to 255.

    Args:
        frames: (T, H, W, 3) uint8 RGB (numpy, or a torch tensor: computed on its device).
        percentile: the brightness level that becomes white (robust to a few hot pixels).
        max_gain: the largest factor applied (noise is amplified too).
        bright: frames whose ``percentile`` level is at least this are left as they are.

    Returns:
        (T, H, W, 3) uint8; bright frames unchanged.
    """
    if is_torch(frames):
        return _stretch_contrast_torch(frames, percentile, max_gain, bright)
    sample = frames[:, ::4, ::4].reshape(len(frames), -1)
    level = np.percentile(sample, percentile, axis=1).clip(1.0, None)
    gain = np.where(level >= bright, 1.0, np.clip(255.0 / level, 1.0, max_gain)).astype(np.float32)
    if not (gain > 1.0).any():
        return frames
    out = frames.astype(np.float32) * gain[:, None, None, None]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _stretch_contrast_torch(frames: Any, percentile: float, max_gain: float, bright: float) -> Any:
    """:func:`stretch_contrast` on a (T, H, W, 3) uint8 torch tensor, on its device."""
    import torch

    sample = frames[:, ::4, ::4].reshape(len(frames), -1).float()
    level = torch.quantile(sample, percentile / 100.0, dim=1).clamp_min(1.0)
    gain = torch.where(level >= bright, torch.ones_like(level), (255.0 / level).clamp(1.0, max_gain))
    if not bool((gain > 1.0).any()):
        return frames
    return (frames.float() * gain[:, None, None, None] + 0.5).clamp(0, 255).to(torch.uint8)
