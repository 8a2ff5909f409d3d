"""``mintime synth``: a synthetic face-manipulation benchmark built from a handful of real clips.

Why: the project cannot ship or download a deepfake dataset, yet training must be tested end to end and a demo
model must be trained on *something* whose labels are true. This module manufactures such data from the few real
videos and images available (``../shared/data``: 5 videos, 5 images, research-only footage that is never
committed). It detects faces **once per source** (MTCNN every ``detect_stride`` frames, tracks by IoU,
interpolated and smoothed), then derives many short clips analytically, reusing those boxes:

* **base clips**: a temporal window of a source (still images get a slow zoom/pan), cropped around a face at a
  random zoom and offset, maybe mirrored; **pairs** put two single-person panels side by side (two-identity
  videos), or frame two people of one source together.
* **manipulations** (per identity): the face is replaced by another identity's face of the same split (box-aligned,
  elliptical feathered mask, LAB colour transfer of random strength), with degradations on the pasted region:
  resolution loss (down/up-scaling), blur, per-frame brightness flicker and position jitter (temporal
  inconsistencies that only show across frames), JPEG re-compression. Each base clip gives a
  pristine video **and** its manipulated variants, so real and fake differ only by the manipulation.
* **methods**: 0 pristine, 1 the only identity swapped, 2 one of two identities swapped, 3 both swapped.
* **splits by source segment**: each source video's frames are cut into disjoint train / val / test ranges
  (60 % / 16 % / 20 %, with gaps), each still image belongs to one split, and donors come from the same split,
  so no source frame feeds two splits. The same people appear in several splits (different moments): the
  benchmark measures detection of the manipulation, not generalisation to unseen people.

Outputs under ``--out``: ``videos/<split>/<clip>.mp4`` (real H.264 files that ``mintime predict`` reads; every
clip, real or fake, encoded the same way), ``faces/<split>/<clip>.mp4/`` (the crop layout of
:mod:`training.layout`, written from the known boxes on ``layout_frames`` frames sampled like inference, with
per-identity labels in ``boxes.json``), ``lists/{train,val,test}.csv`` (``<folder> <label> <method>``),
``clips.json`` (every clip's recipe) and ``synth_meta.json`` (sources, counts, method names). Generation is
resumable (finished clips are skipped) and parallel (``--workers``).

Honest limits: three of the sources are themselves real-world deepfakes (FaceForensics++ FaceSwap, a DFDC fake,
the ForgeryNet two-person clip) but count as *pristine* here, since only this module's manipulation is labelled;
the boxes come from source detections, not from re-detecting each derived clip (``mintime preprocess`` on the
videos gives the inference-time crops). A model trained on it detects these synthetic swaps, not real deepfakes.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from training.split import ListRow, write_list

__all__ = [
    "SPLITS",
    "METHODS",
    "SynthConfig",
    "Source",
    "detect_source",
    "load_source",
    "source_from_arrays",
    "make_specs",
    "render_clip",
    "write_clip",
    "generate",
    "default_sources",
]

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
METHODS = {
    0: "pristine",
    1: "swap (single identity)",
    2: "swap one of two identities",
    3: "swap both identities",
}
#: Fractions of a source video's frames per split (start, end); the gaps keep neighbouring frames apart.
VIDEO_SPLIT_RANGES = {"train": (0.0, 0.6), "val": (0.62, 0.78), "test": (0.8, 1.0)}
#: Default split of the still images of ../shared/data/images (each whole image in one split).
DEFAULT_IMAGE_SPLITS = {
    "angelina_jolie": "train",
    "paul_rudd": "train",
    "kate_siegel": "val",
    "shea_whigham": "test",
}
#: Source videos left out by default: street_crowd (faces of 20-60 px in a crowd; too small to crop usefully).
DEFAULT_EXCLUDE = ("street_crowd",)


@dataclass
class SynthConfig:
    """Settings of one benchmark build.

    Attributes:
        out: output folder.
        videos / images: source files (default: everything usable in ``../shared/data``).
        image_splits: image stem → split.
        singles / pairs: base clips per split (each gives 1 pristine + fake variants).
        both_fake_fraction: share of pair bases that also get a "both swapped" variant.
        clip_frames: frames per clip (shorter when the source range is shorter).
        height: output height (single clips 4:3, pairs 16:9).
        layout_frames: frames sampled per clip for the face layout (the inference sampling rule).
        source_max_side: sources are decoded once and stored with this longest side.
        detect_stride / detect_scale: MTCNN on every n-th source frame at this scale.
        track_coverage: keep face tracks detected in at least this share of the detected frames.
        strength: 0..1, how visible the manipulation artefacts are (1 = the default ranges, lower = subtler).
        crf: x264 quality of every clip.
        seed: recipe seed (the whole benchmark is a deterministic function of config + sources).
        workers: processes rendering clips.
    """

    out: str = "outputs/synth"
    videos: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    image_splits: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGE_SPLITS))
    singles: dict[str, int] = field(default_factory=lambda: {"train": 100, "val": 28, "test": 32})
    pairs: dict[str, int] = field(default_factory=lambda: {"train": 90, "val": 26, "test": 40})
    both_fake_fraction: float = 0.3
    clip_frames: int = 40
    height: int = 360
    layout_frames: int = 16
    source_max_side: int = 960
    detect_stride: int = 3
    detect_scale: float = 0.5
    track_coverage: float = 0.6
    strength: float = 1.0
    crf: int = 20
    seed: int = 0
    workers: int = 1


def default_sources(data_dir: str | Path) -> tuple[list[str], list[str]]:
    """(videos, images) of a data folder like ``../shared/data`` (``videos/*.mp4``, ``images/*.jpg``), minus the
    crowd clip and images that are not in :data:`DEFAULT_IMAGE_SPLITS`."""
    root = Path(data_dir)
    videos = [
        str(p) for p in sorted((root / "videos").glob("*.mp4")) if not p.stem.startswith(DEFAULT_EXCLUDE)
    ]
    images = [str(p) for p in sorted((root / "images").glob("*.jpg")) if p.stem in DEFAULT_IMAGE_SPLITS]
    return videos, images


# ---------------------------------------------------------------------------------------------------------------
# sources: frames stored once, face tracks from one detection pass
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Source:
    """A source clip or image with its face tracks.

    Attributes:
        name: unique name (file stem).
        kind: ``video`` or ``image``.
        frames: (N, H, W, 3) uint8 RGB (a memory map for cached sources); N = 1 for an image.
        fps: frame rate (images: 25).
        tracks: per face track, (N, 4) float32 boxes x1, y1, x2, y2 in ``frames`` pixels.
        units: per split, the usable (start, end) frame range; images have one split.
    """

    name: str
    kind: str
    frames: np.ndarray
    fps: float
    tracks: list[np.ndarray]
    units: dict[str, tuple[int, int]]

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[1])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def build_tracks(
    detections: dict[int, np.ndarray],
    num_frames: int,
    *,
    min_coverage: float = 0.8,
    min_side: float = 40.0,
    smooth: int = 5,
) -> list[np.ndarray]:
    """Link per-frame boxes into tracks (greedy IoU), keep the stable ones, fill every frame.

    Args:
        detections: frame → (n, 4) boxes of the detected frames.
        num_frames: N, frames of the source.
        min_coverage: keep tracks present in at least this share of the detected frames.
        min_side: keep tracks whose median box side is at least this (pixels).
        smooth: moving-average window over the detected frames (odd).

    Returns:
        Tracks as (N, 4) float32 boxes (interpolated between detections, held at the ends), sorted left to right.
    """
    frames = sorted(detections)
    tracks: list[dict[int, np.ndarray]] = []
    for f in frames:
        boxes = np.asarray(detections[f], np.float32).reshape(-1, 4)
        used: set[int] = set()
        pairs = sorted(
            ((_iou(t[max(t)], b), ti, bi) for ti, t in enumerate(tracks) for bi, b in enumerate(boxes)),
            reverse=True,
        )
        matched_tracks: set[int] = set()
        for iou, ti, bi in pairs:
            if iou < 0.3 or ti in matched_tracks or bi in used:
                continue
            tracks[ti][f] = boxes[bi]
            matched_tracks.add(ti)
            used.add(bi)
        for bi, b in enumerate(boxes):
            if bi not in used:
                tracks.append({f: b})
    out = []
    for t in tracks:
        if len(t) < min_coverage * len(frames):
            continue
        keys = np.array(sorted(t))
        boxes = np.stack([t[k] for k in keys])
        if np.median(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])) < min_side:
            continue
        if smooth > 1 and len(keys) >= smooth:
            kernel = np.ones(smooth) / smooth
            pad = smooth // 2
            padded = np.pad(boxes, ((pad, pad), (0, 0)), mode="edge")
            boxes = np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(4)], axis=1)
        full = np.stack([np.interp(np.arange(num_frames), keys, boxes[:, j]) for j in range(4)], axis=1)
        out.append(full.astype(np.float32))
    out.sort(key=lambda b: float(np.median(b[:, 0] + b[:, 2])))
    return out


def source_from_arrays(
    name: str, frames: np.ndarray, tracks: list[np.ndarray], *, fps: float = 25.0, split: str | None = None
) -> Source:
    """A :class:`Source` from in-memory frames and known tracks (tests, custom data).

    Args:
        name: source name.
        frames: (N, H, W, 3) uint8 RGB.
        tracks: per face, (N, 4) boxes.
        fps: frame rate.
        split: put the whole source in one split (images); None = video ranges of :data:`VIDEO_SPLIT_RANGES`.
    """
    n = int(frames.shape[0])
    kind = "image" if n == 1 else "video"
    units = {split: (0, n)} if split else _video_units(n)
    return Source(name, kind, frames, float(fps), [np.asarray(t, np.float32) for t in tracks], units)


def _video_units(n: int) -> dict[str, tuple[int, int]]:
    return {
        s: (int(a * n), int(b * n)) for s, (a, b) in VIDEO_SPLIT_RANGES.items() if int(b * n) > int(a * n)
    }


def detect_source(path: str | Path, cache_dir: str | Path, cfg: SynthConfig, detector: Any = None) -> Path:
    """Decode a source once (longest side ``source_max_side``), detect and track its faces; cache both.

    Writes ``<cache_dir>/<stem>.frames.npy`` (N, H, W, 3) uint8 RGB and ``<stem>.json`` (fps, tracks, units).
    Does nothing when the cache exists.

    Returns:
        The JSON path.
    """
    path = Path(path)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    meta_path = cache / f"{path.stem}.json"
    if meta_path.is_file():
        return meta_path
    if detector is None:
        from mintime.faces.mtcnn import MTCNN

        detector = MTCNN()
    is_image = path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp")
    t0 = time.perf_counter()
    if is_image:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot read image {path}")
        s = min(1.0, cfg.source_max_side / max(bgr.shape[:2]))
        img = cv2.resize(
            bgr, (round(bgr.shape[1] * s), round(bgr.shape[0] * s)), interpolation=cv2.INTER_AREA
        )
        frames = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)[None]
        fps = 25.0
    else:
        from mintime.video import iter_frames, probe

        frames = np.stack([f for _, f in iter_frames(path, max_side=cfg.source_max_side)])
        fps = float(probe(path)["fps"]) or 25.0
    n = frames.shape[0]
    step = 1 if is_image else max(1, cfg.detect_stride)
    det_frames = list(range(0, n, step))
    if det_frames[-1] != n - 1:
        det_frames.append(n - 1)
    detections: dict[int, np.ndarray] = {}
    for i in range(0, len(det_frames), 16):
        chunk = det_frames[i : i + 16]
        res = detector.detect(
            np.ascontiguousarray(frames[chunk]), scale=cfg.detect_scale if not is_image else 1.0
        )
        for f, d in zip(chunk, res, strict=True):
            detections[f] = np.asarray(d.boxes, np.float32).reshape(-1, 4)
    tracks = build_tracks(detections, n, min_coverage=0.5 if is_image else cfg.track_coverage)
    np.save(cache / f"{path.stem}.frames.npy", frames)
    split = cfg.image_splits.get(path.stem) if is_image else None
    if is_image and split is None:
        raise ValueError(f"image {path.name} has no split (set image_splits)")
    coverage = [
        round(sum(any(_iou(t[f], b) > 0.3 for b in detections[f]) for f in det_frames) / len(det_frames), 3)
        for t in tracks
    ]
    meta = {
        "name": path.stem,
        "coverage": coverage,
        "path": str(path),
        "kind": "image" if is_image else "video",
        "fps": fps,
        "num_frames": int(n),
        "size": [int(frames.shape[2]), int(frames.shape[1])],
        "tracks": [t.round(2).tolist() for t in tracks],
        "units": {split: [0, 1]} if is_image else {k: list(v) for k, v in _video_units(n).items()},
        "detected_frames": len(det_frames),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    meta_path.write_text(json.dumps(meta))
    logger.info("source %s: %d frames, %d face tracks (%.1f s)", path.stem, n, len(tracks), meta["seconds"])
    return meta_path


def load_source(meta_path: str | Path) -> Source:
    """A cached source (frames memory-mapped)."""
    meta_path = Path(meta_path)
    meta = json.loads(meta_path.read_text())
    frames = np.load(meta_path.with_name(f"{meta['name']}.frames.npy"), mmap_mode="r")
    tracks = [np.asarray(t, np.float32) for t in meta["tracks"]]
    units = {k: (int(v[0]), int(v[1])) for k, v in meta["units"].items()}
    return Source(meta["name"], meta["kind"], frames, float(meta["fps"]), tracks, units)


# ---------------------------------------------------------------------------------------------------------------
# recipes
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Panel:
    """One panel of a clip: a (moving) window of a source, resampled to ``size``.

    ``center`` / ``height`` are (start, end) values in source pixels, interpolated over the clip; the window's
    aspect ratio is the panel's. ``tracks`` are the source tracks that count as identities of the clip.
    """

    source: str
    tracks: list[int]
    start: int
    center: tuple[tuple[float, float], tuple[float, float]]
    height: tuple[float, float]
    flip: bool
    size: tuple[int, int]
    offset: int = 0  # x offset of the panel in the output frame


@dataclass
class Swap:
    """Replace one identity's face by a donor's, with the artefact parameters of this video."""

    donor_source: str
    donor_track: int
    donor_start: int
    donor_flip: bool
    scale: float  # resolution kept before upscaling (0..1)
    blur: float  # Gaussian sigma on the pasted face (output pixels)
    colour: float  # 0..1 strength of the colour transfer
    flicker: float  # per-frame brightness gain std
    jitter: float  # per-frame position noise of the pasted face, std as a fraction of the face width
    feather: float  # mask feather sigma / face width
    ellipse: tuple[float, float]  # mask half-axes / half box (x, y)
    jpeg: int | None  # JPEG quality of the face region, None = no re-compression


@dataclass
class ClipSpec:
    """The recipe of one clip (JSON-serialisable)."""

    name: str
    split: str
    base: str
    panels: list[Panel]
    num_frames: int
    fps: float
    size: tuple[int, int]
    swaps: dict[int, Swap]  # identity index (panel-major order of tracks) -> swap
    method: int
    label: int

    @property
    def rel(self) -> str:
        return f"{self.split}/{self.name}.mp4"

    def identities(self) -> list[tuple[int, int]]:
        """(panel index, track) of each identity, in clip order."""
        return [(p, t) for p, panel in enumerate(self.panels) for t in panel.tracks]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["swaps"] = {str(k): asdict(v) for k, v in self.swaps.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClipSpec:
        panels = [
            Panel(
                source=p["source"],
                tracks=list(p["tracks"]),
                start=int(p["start"]),
                center=(tuple(p["center"][0]), tuple(p["center"][1])),
                height=tuple(p["height"]),
                flip=bool(p["flip"]),
                size=tuple(p["size"]),
                offset=int(p.get("offset", 0)),
            )
            for p in d["panels"]
        ]
        swaps = {int(k): Swap(**{**v, "ellipse": tuple(v["ellipse"])}) for k, v in d["swaps"].items()}
        return cls(
            name=d["name"],
            split=d["split"],
            base=d["base"],
            panels=panels,
            num_frames=int(d["num_frames"]),
            fps=float(d["fps"]),
            size=tuple(d["size"]),
            swaps=swaps,
            method=int(d["method"]),
            label=int(d["label"]),
        )


def _face_box_mean(src: Source, track: int, a: int, b: int) -> np.ndarray:
    return src.tracks[track][a:b].mean(axis=0)


def _panel_for(
    rng: np.random.Generator, src: Source, tracks: list[int], start: int, length: int, size: tuple[int, int]
) -> Panel:
    """A window around the given tracks: face height 22-45 % of the panel, jittered, slow motion."""
    pw, ph = size
    end = start + (length if src.kind == "video" else 1)
    boxes = [_face_box_mean(src, t, start, end) for t in tracks]
    x0 = min(b[0] for b in boxes)
    x1 = max(b[2] for b in boxes)
    y0 = min(b[1] for b in boxes)
    y1 = max(b[3] for b in boxes)
    face_h = float(np.mean([b[3] - b[1] for b in boxes]))
    frac = rng.uniform(0.22, 0.45)
    height = face_h / frac
    need_w = (x1 - x0) * 1.5  # keep all faces in the window
    height = max(height, need_w * ph / pw)
    height = min(height, src.size[1] * 1.0) if len(tracks) == 1 else height
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + rng.uniform(0.0, 0.15) * face_h
    jitter = 0.12 if len(tracks) == 1 else 0.04
    cx += rng.uniform(-jitter, jitter) * height * pw / ph
    cy += rng.uniform(-jitter, jitter) * height
    zoom = rng.uniform(0.94, 1.06)
    drift = rng.uniform(-0.04, 0.04, size=2) * height
    c0 = (float(cx), float(cy))
    c1 = (float(cx + drift[0]), float(cy + drift[1]))
    return Panel(
        src.name,
        list(tracks),
        int(start),
        (c0, c1),
        (float(height), float(height * zoom)),
        bool(rng.random() < 0.5),
        size,
    )


def _sample_swap(rng: np.random.Generator, donor: tuple[Source, int, int], strength: float) -> Swap:
    src, track, start = donor
    s = float(np.clip(strength, 0.0, 1.5))
    return Swap(
        donor_source=src.name,
        donor_track=int(track),
        donor_start=int(start),
        donor_flip=bool(rng.random() < 0.5),
        scale=float(1.0 - s * rng.uniform(0.35, 0.7)),
        blur=float(s * rng.uniform(0.0, 1.2)),
        colour=float(rng.uniform(0.3, 1.0)),
        flicker=float(s * rng.uniform(0.0, 0.06)),
        jitter=float(s * rng.uniform(0.0, 0.03)),
        feather=float(rng.uniform(0.04, 0.12)),
        ellipse=(float(rng.uniform(0.8, 0.95)), float(rng.uniform(0.9, 1.05))),
        jpeg=None if rng.random() < 0.5 else int(rng.uniform(35, 75) + (1 - min(s, 1.0)) * 20),
    )


def make_specs(sources: Sequence[Source], cfg: SynthConfig) -> list[ClipSpec]:
    """The deterministic list of clip recipes (pristine + manipulated variants of every base clip)."""
    rng = np.random.default_rng(cfg.seed)
    specs: list[ClipSpec] = []
    h = cfg.height
    single_size = (int(round(h * 4 / 3)) // 2 * 2, h)
    half = (int(round(h * 16 / 9)) // 4 * 2, h)
    pair_size = (half[0] * 2, h)
    for split in SPLITS:
        # faces usable in this split: (source, track, range)
        units = [(s, t, s.units[split]) for s in sources if split in s.units for t in range(len(s.tracks))]
        multi = [s for s in sources if split in s.units and len(s.tracks) >= 2]
        if not units:
            logger.warning("split %s has no source face; skipped", split)
            continue

        def window(src: Source, split: str = split) -> tuple[int, int]:
            return _window(rng, src, split, cfg.clip_frames)

        def donor_for(
            identity: tuple[str, int], split: str = split, units: list = units
        ) -> tuple[Source, int, int]:
            return _donor(rng, units, identity, split, cfg.clip_frames)

        for i in range(cfg.singles.get(split, 0)):
            src, track, _ = units[int(rng.integers(len(units)))]
            start, length = window(src)
            panel = _panel_for(rng, src, [track], start, length, single_size)
            base = f"{split}_s{i:04d}"
            common = dict(
                split=split, base=base, panels=[panel], num_frames=length, fps=src.fps, size=single_size
            )
            specs.append(ClipSpec(name=f"{base}_real", swaps={}, method=0, label=0, **common))
            swap = _sample_swap(rng, donor_for((src.name, track)), cfg.strength)
            specs.append(ClipSpec(name=f"{base}_fake", swaps={0: swap}, method=1, label=1, **common))

        for i in range(cfg.pairs.get(split, 0)):
            base = f"{split}_p{i:04d}"
            native = multi and rng.random() < 0.25
            if native:
                src = multi[int(rng.integers(len(multi)))]
                start, length = window(src)
                panels = [_panel_for(rng, src, [0, 1], start, length, pair_size)]
                fps = src.fps
                idents = [(src.name, 0), (src.name, 1)]
            else:
                a = units[int(rng.integers(len(units)))]
                others = [u for u in units if _distinct(u[0].name, a[0].name)] or [
                    u for u in units if (u[0].name, u[1]) != (a[0].name, a[1])
                ]
                b = others[int(rng.integers(len(others)))]
                sa, la = window(a[0])
                sb, lb = window(b[0])
                length = min(la, lb)
                pa = _panel_for(rng, a[0], [a[1]], sa, length, half)
                pb = _panel_for(rng, b[0], [b[1]], sb, length, half)
                pb.offset = half[0]
                panels = [pa, pb]
                fps = a[0].fps
                idents = [(a[0].name, a[1]), (b[0].name, b[1])]
            common = dict(split=split, base=base, panels=panels, num_frames=length, fps=fps, size=pair_size)
            specs.append(ClipSpec(name=f"{base}_real", swaps={}, method=0, label=0, **common))
            which = int(rng.integers(2))
            swap = _sample_swap(rng, donor_for(idents[which]), cfg.strength)
            specs.append(
                ClipSpec(name=f"{base}_fake{which}", swaps={which: swap}, method=2, label=1, **common)
            )
            if rng.random() < cfg.both_fake_fraction:
                swaps = {k: _sample_swap(rng, donor_for(idents[k]), cfg.strength) for k in (0, 1)}
                specs.append(ClipSpec(name=f"{base}_fakeboth", swaps=swaps, method=3, label=1, **common))
    return specs


def _window(rng: np.random.Generator, src: Source, split: str, clip_frames: int) -> tuple[int, int]:
    """(start, length) of a random window of ``src`` inside its ``split`` range (images: (0, clip_frames))."""
    if src.kind == "image":
        return 0, clip_frames
    a, b = src.units[split]
    length = min(clip_frames, b - a)
    return int(rng.integers(a, b - length + 1)), int(length)


def _donor(
    rng: np.random.Generator, units: list, identity: tuple[str, int], split: str, clip_frames: int
) -> tuple[Source, int, int]:
    """A donor face of the same split from another source: (source, track, start frame)."""
    cands = [(s, t) for s, t, _ in units if (s.name, t) != identity and _distinct(s.name, identity[0])]
    if not cands:
        cands = [(s, t) for s, t, _ in units if (s.name, t) != identity]
    s, t = cands[int(rng.integers(len(cands)))]
    start, _ = _window(rng, s, split, clip_frames)
    return s, t, start


def _distinct(a: str, b: str) -> bool:
    """Different sources (a source never donates to itself)."""
    return a != b


# ---------------------------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------------------------
def _window_at(panel: Panel, t: int, n: int) -> tuple[float, float, float, float]:
    """(cx, cy, w, h) of the panel's source window at clip frame t."""
    a = t / max(n - 1, 1)
    (cx0, cy0), (cx1, cy1) = panel.center
    hh = panel.height[0] + a * (panel.height[1] - panel.height[0])
    pw, ph = panel.size
    return cx0 + a * (cx1 - cx0), cy0 + a * (cy1 - cy0), hh * pw / ph, hh


def _panel_affine(panel: Panel, t: int, n: int) -> np.ndarray:
    """2x3 map from source pixels to output-frame pixels (panel offset and mirror included)."""
    cx, cy, ww, hh = _window_at(panel, t, n)
    s = panel.size[1] / hh
    m = np.array([[s, 0.0, -(cx - ww / 2) * s], [0.0, s, -(cy - hh / 2) * s]], np.float64)
    if panel.flip:
        m[0] = -m[0]
        m[0, 2] += panel.size[0]
    m[0, 2] += panel.offset
    return m


def _map_box(m: np.ndarray, box: np.ndarray) -> np.ndarray:
    xs = m[0, 0] * np.array([box[0], box[2]]) + m[0, 2]
    ys = m[1, 1] * np.array([box[1], box[3]]) + m[1, 2]
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)


def _src_frame(src: Source, start: int, t: int) -> np.ndarray:
    return np.asarray(src.frames[0 if src.kind == "image" else min(start + t, src.num_frames - 1)])


def _colour_transfer(patch: np.ndarray, target: np.ndarray, mask: np.ndarray, strength: float) -> np.ndarray:
    """Move the patch's LAB mean/std inside ``mask`` toward the target's (strength 0..1)."""
    w = mask > 0.5
    if w.sum() < 16 or strength <= 0:
        return patch
    p = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB).astype(np.float32)
    q = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    for c in range(3):
        pm, ps = p[..., c][w].mean(), p[..., c][w].std() + 1e-3
        qm, qs = q[..., c][w].mean(), q[..., c][w].std() + 1e-3
        moved = (p[..., c] - pm) * (qs / ps) + qm
        p[..., c] = (1 - strength) * p[..., c] + strength * moved
    return cv2.cvtColor(np.clip(p, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def _apply_swap(
    frame: np.ndarray,
    box: np.ndarray,
    donor: np.ndarray,
    donor_box: np.ndarray,
    sw: Swap,
    rng: np.random.Generator,
) -> None:
    """Paste the donor face onto ``frame`` (in place) at ``box``."""
    fh, fw = frame.shape[:2]
    bw, bh = box[2] - box[0], box[3] - box[1]
    if bw < 4 or bh < 4:
        return
    margin = 0.3
    rx0, ry0 = int(max(box[0] - margin * bw, 0)), int(max(box[1] - margin * bh, 0))
    rx1, ry1 = int(min(box[2] + margin * bw, fw)), int(min(box[3] + margin * bh, fh))
    if rx1 - rx0 < 8 or ry1 - ry0 < 8:
        return
    region = frame[ry0:ry1, rx0:rx1]
    rw, rh = rx1 - rx0, ry1 - ry0
    # donor box -> target box (per-axis scale), expressed in region coordinates
    dbw, dbh = max(donor_box[2] - donor_box[0], 1.0), max(donor_box[3] - donor_box[1], 1.0)
    sx, sy = bw / dbw, bh / dbh
    dcx, dcy = (donor_box[0] + donor_box[2]) / 2, (donor_box[1] + donor_box[3]) / 2
    tcx, tcy = (box[0] + box[2]) / 2 - rx0, (box[1] + box[3]) / 2 - ry0
    if sw.jitter > 0:  # the pasted face wobbles from frame to frame (temporal misalignment)
        tcx += float(rng.normal(0.0, sw.jitter * bw))
        tcy += float(rng.normal(0.0, sw.jitter * bw))
    if sw.donor_flip:
        m = np.array([[-sx, 0, tcx + sx * dcx], [0, sy, tcy - sy * dcy]], np.float64)
    else:
        m = np.array([[sx, 0, tcx - sx * dcx], [0, sy, tcy - sy * dcy]], np.float64)
    patch = cv2.warpAffine(donor, m, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if sw.scale < 0.98:
        small = (max(int(rw * sw.scale), 4), max(int(rh * sw.scale), 4))
        patch = cv2.resize(
            cv2.resize(patch, small, interpolation=cv2.INTER_AREA), (rw, rh), interpolation=cv2.INTER_LINEAR
        )
    if sw.blur > 0.05:
        patch = cv2.GaussianBlur(patch, (0, 0), sw.blur)
    mask = np.zeros((rh, rw), np.float32)
    axes = (max(int(bw / 2 * sw.ellipse[0]), 1), max(int(bh / 2 * sw.ellipse[1]), 1))
    cv2.ellipse(mask, (int(round(tcx)), int(round(tcy))), axes, 0, 0, 360, 1.0, -1)
    patch = _colour_transfer(patch, region, mask, sw.colour)
    if sw.flicker > 0:
        gain = 1.0 + rng.normal(0.0, sw.flicker)
        patch = np.clip(patch.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    mask = cv2.GaussianBlur(mask, (0, 0), max(sw.feather * bw, 0.5))[..., None]
    out = mask * patch.astype(np.float32) + (1 - mask) * region.astype(np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if sw.jpeg is not None:
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(sw.jpeg)]
        )
        if ok:
            out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    frame[ry0:ry1, rx0:rx1] = out


def render_clip(spec: ClipSpec, sources: dict[str, Source]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Render a clip.

    Returns:
        (frames (T, H, W, 3) uint8 RGB, per identity (T, 4) float32 boxes in output pixels).
    """
    w, h = spec.size
    n = spec.num_frames
    frames = np.zeros((n, h, w, 3), np.uint8)
    idents = spec.identities()
    boxes = [np.zeros((n, 4), np.float32) for _ in idents]
    rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
    for t in range(n):
        for p, panel in enumerate(spec.panels):
            src = sources[panel.source]
            img = _src_frame(src, panel.start, t)
            m = _panel_affine(panel, t, n)
            s = m[1, 1]
            if s < 0.75:
                img = cv2.GaussianBlur(img, (0, 0), 0.4 / s)
            local = m.copy()
            local[0, 2] -= panel.offset
            pw, ph = panel.size
            frames[t, :, panel.offset : panel.offset + pw] = cv2.warpAffine(
                img, local, (pw, ph), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
            )
            for i, (pi, track) in enumerate(idents):
                if pi == p:
                    frame_idx = 0 if src.kind == "image" else min(panel.start + t, src.num_frames - 1)
                    boxes[i][t] = _map_box(m, src.tracks[track][frame_idx])
        for i, sw in spec.swaps.items():
            donor = sources[sw.donor_source]
            dimg = _src_frame(donor, sw.donor_start, t)
            dbox = donor.tracks[sw.donor_track][
                0 if donor.kind == "image" else min(sw.donor_start + t, donor.num_frames - 1)
            ]
            _apply_swap(frames[t], boxes[i][t], dimg, dbox, sw, rng)
    return frames, boxes


def _encode(path: Path, frames: np.ndarray, fps: float, crf: int) -> None:
    import av

    tmp = path.with_name(f".{path.name}.tmp.mp4")
    try:
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "veryfast"}
            for f in frames:
                for packet in stream.encode(
                    av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
                ):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # an interrupted encode leaves nothing behind


def write_clip(
    spec: ClipSpec, sources: dict[str, Source], out: str | Path, cfg: SynthConfig
) -> dict[str, Any]:
    """Render, encode and lay out one clip (skipped when its face folder is complete).

    Returns:
        ``{"rel", "status": "done" | "skipped", "faces"}``.
    """
    from mintime.faces.crops import square_crop_box
    from mintime.video import decode_sampled
    from training.preprocess import write_video_faces

    out = Path(out)
    rel = spec.rel
    faces_root = out / "faces"
    if (faces_root / rel / "boxes.json").is_file():
        return {"rel": rel, "status": "skipped", "faces": 0}
    video = out / "videos" / rel
    video.parent.mkdir(parents=True, exist_ok=True)
    frames, boxes = render_clip(spec, sources)
    _encode(video, frames, spec.fps, cfg.crf)
    clip = decode_sampled(video, cfg.layout_frames)
    idx = [int(i) for i in clip.indices]
    w, h = clip.width, clip.height
    # identity order = mean crop width, descending (the pipeline's order)
    widths = []
    for b in boxes:
        ws = [square_crop_box(b[i], w, h) for i in idx]
        widths.append(float(np.mean([c[2] - c[0] for c in ws])))
    order = sorted(range(len(boxes)), key=lambda i: -widths[i])
    detections: dict[int, list[list[float]]] = {}
    face_index: dict[tuple[int, int], int] = {}
    for f in idx:
        areas = sorted(
            range(len(boxes)),
            key=lambda i: -float((boxes[i][f][2] - boxes[i][f][0]) * (boxes[i][f][3] - boxes[i][f][1])),
        )
        detections[f] = [[round(float(v), 2) for v in boxes[i][f]] + [1.0] for i in areas]
        for k, i in enumerate(areas):
            face_index[(i, f)] = k
    identities = [
        [{"frame": f, "face": face_index[(i, f)], "box": boxes[i][f].tolist()} for f in idx] for i in order
    ]
    labels = [1 if i in spec.swaps else 0 for i in order]
    video_info = {
        "fps": float(clip.fps),
        "width": int(w),
        "height": int(h),
        "total_frames": int(clip.total_frames),
        "sampled_frames": idx,
        "source": str(video),
    }
    _, written = write_video_faces(
        faces_root,
        rel,
        frames=clip.frames,
        frame_indices=idx,
        video_info=video_info,
        identities=identities,
        detections=detections,
        extra={
            "labels": {"video": spec.label, "method": spec.method, "identities": labels},
            "boxes_source": "synthetic: source-clip detections mapped through the clip's crop (no re-detection)",
        },
    )
    return {"rel": rel, "status": "done", "faces": written}


# --- worker plumbing ---------------------------------------------------------------------------------------------
_SOURCES: dict[str, Source] = {}


def _init_worker(meta_paths: list[str]) -> None:
    cv2.setNumThreads(1)
    _SOURCES.clear()
    for p in meta_paths:
        s = load_source(p)
        _SOURCES[s.name] = s


def _work(spec_dict: dict[str, Any], out: str, cfg_dict: dict[str, Any]) -> dict[str, Any]:
    return _write_or_report(ClipSpec.from_dict(spec_dict), _SOURCES, Path(out), SynthConfig(**cfg_dict))


def _write_or_report(
    spec: ClipSpec, sources: dict[str, Source], out: Path, cfg: SynthConfig
) -> dict[str, Any]:
    """:func:`write_clip`, with a failure turned into an ``error`` result (its traceback included for ``-v``)."""
    try:
        return write_clip(spec, sources, out, cfg)
    except Exception as exc:
        return {
            "rel": spec.rel,
            "status": "error",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }


def _detect_sources(cfg: SynthConfig, out: Path) -> list[str]:
    """Detect the faces of every source once (cached under ``<out>/sources``); returns the metadata files."""
    cache = out / "sources"
    detector = None
    meta_paths = []
    for p in list(cfg.videos) + list(cfg.images):
        if not (cache / f"{Path(p).stem}.json").is_file() and detector is None:
            from mintime.faces.mtcnn import MTCNN

            detector = MTCNN()
        meta_paths.append(str(detect_source(p, cache, cfg, detector)))
    return meta_paths


def _render_all(
    specs: list[ClipSpec],
    src_map: dict[str, Source],
    meta_paths: list[str],
    out: Path,
    cfg: SynthConfig,
    *,
    progress: bool,
) -> list[dict[str, Any]]:
    """Write every clip (in this process, or ``cfg.workers`` spawned processes); one result per clip."""
    from tqdm import tqdm

    results: list[dict[str, Any]] = []
    bar = tqdm(total=len(specs), unit="clip", desc="synth", disable=not progress)
    if cfg.workers <= 1 or not meta_paths:
        for spec in specs:
            results.append(_write_or_report(spec, src_map, out, cfg))
            bar.update(1)
    else:
        import multiprocessing as mp

        cfg_dict = asdict(cfg)
        with ProcessPoolExecutor(
            max_workers=cfg.workers,
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(meta_paths,),
        ) as pool:
            futures = [pool.submit(_work, s.to_dict(), str(out), cfg_dict) for s in specs]
            for fut in as_completed(futures):
                results.append(fut.result())
                bar.update(1)
    bar.close()
    for r in results:
        if r["status"] == "error":
            logger.info("clip %s failed:\n%s", r["rel"], r.get("traceback", "").rstrip())
    return results


def _write_split_lists(
    specs: list[ClipSpec], ok: set[str], out: Path
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """``lists/<split>.csv`` of the clips written; (split → list path, split → counts per method)."""
    lists: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        rows = [ListRow(s.rel, s.label, s.method) for s in specs if s.split == split and s.rel in ok]
        if rows:
            lists[split] = str(write_list(rows, out / "lists" / f"{split}.csv"))
        c: dict[str, int] = {"total": len(rows)}
        for m in METHODS:
            c[f"method_{m}"] = sum(r.method == m for r in rows)
        counts[split] = c
    return lists, counts


def generate(
    cfg: SynthConfig,
    *,
    sources: Sequence[Source] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build (or complete) the benchmark.

    Args:
        cfg: settings; ``cfg.videos`` / ``cfg.images`` are detected and cached under ``<out>/sources`` unless
            ``sources`` is given.
        sources: ready :class:`Source` objects (tests): rendering then runs in this process.
        progress: progress bar.

    Returns:
        The summary written to ``synth_meta.json``: counts per split and method, clips done/skipped/failed.
    """
    t0 = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    meta_paths: list[str] = []
    if sources is None:
        meta_paths = _detect_sources(cfg, out)
        sources = [load_source(p) for p in meta_paths]
    src_map = {s.name: s for s in sources}
    usable = [s for s in sources if s.tracks]
    for s in sources:
        if not s.tracks:
            logger.warning("source %s has no stable face track; not used", s.name)
    specs = make_specs(usable, cfg)
    (out / "clips.json").write_text(json.dumps([s.to_dict() for s in specs]))
    results = _render_all(specs, src_map, meta_paths, out, cfg, progress=progress)
    failed = {r["rel"]: r["error"] for r in results if r["status"] == "error"}
    lists, counts = _write_split_lists(specs, {s.rel for s in specs} - set(failed), out)
    summary = {
        "config": asdict(cfg),
        "methods": {str(k): v for k, v in METHODS.items()},
        "sources": {
            s.name: {
                "kind": s.kind,
                "frames": s.num_frames,
                "fps": s.fps,
                "tracks": len(s.tracks),
                "units": {k: list(v) for k, v in s.units.items()},
                "size": list(s.size),
            }
            for s in sources
        },
        "counts": counts,
        "lists": lists,
        "done": sum(r["status"] == "done" for r in results),
        "skipped": sum(r["status"] == "skipped" for r in results),
        "failed": failed,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "synth_meta.json").write_text(json.dumps(summary, indent=2))
    return summary
