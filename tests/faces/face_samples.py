"""Real faces for the embedder and alignment tests: the shared images and a few frames of each shared clip.

Faces are found by the project's MTCNN (its boxes and five landmarks), then dlib's own pipeline runs on the
same boxes: the 5-point shape predictor and ``dlib.get_face_chip(img, shape, size=150, padding=0.25)``, the
chips dlib's ``compute_face_descriptor`` would cut. Built once per test session (a few seconds on 2 cores).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

#: Faces whose longer box side is below this are left out: the 5-point shape predictor is unreliable on them and
#: the pipeline's identities never keep faces that small next to a normal one.
MIN_SIDE = 40
#: Frames sampled per clip.
FRAMES_PER_CLIP = 3


@dataclass
class FaceSamples:
    """Faces and their source frames.

    Attributes:
        frames: source frames, each (H, W, 3) uint8 RGB (sizes differ between sources).
        frame_of: (n,) index into ``frames`` per face.
        source: (n,) name of the image or clip of each face.
        boxes: (n, 4) float32 MTCNN boxes.
        mtcnn_points: (n, 5, 2) float32 MTCNN landmarks.
        dlib_points: (n, 5, 2) float32 dlib 5-point shape predictor landmarks (in the MTCNN box).
        dlib_chips: (n, 150, 150, 3) uint8 RGB ``dlib.get_face_chip`` chips.
    """

    frames: list[np.ndarray]
    frame_of: np.ndarray
    source: np.ndarray
    boxes: np.ndarray
    mtcnn_points: np.ndarray
    dlib_points: np.ndarray
    dlib_chips: np.ndarray

    def __len__(self) -> int:
        return len(self.frame_of)


def _sources(data_dir: Path) -> list[tuple[str, list[np.ndarray]]]:
    from mintime.video import decode_sampled

    out = []
    for path in sorted((data_dir / "images").glob("*.jpg")):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        out.append((path.stem, [np.ascontiguousarray(img[:, :, ::-1])]))
    for path in sorted((data_dir / "videos").glob("*.mp4")):
        clip = decode_sampled(path, num_frames=FRAMES_PER_CLIP)
        out.append((path.stem, list(clip.frames)))
    return out


@functools.lru_cache(maxsize=1)
def load_face_samples(data_dir: Path) -> FaceSamples:
    """Detects, landmarks and chips every face of the shared footage (see the module docstring)."""
    import dlib

    from mintime.faces.embedder import dlib_model_paths
    from mintime.faces.mtcnn import MTCNN

    predictor = dlib.shape_predictor(str(dlib_model_paths()[0]))
    detector = MTCNN()
    frames: list[np.ndarray] = []
    frame_of, source, boxes, mpts, dpts, chips = [], [], [], [], [], []
    for name, imgs in _sources(data_dir):
        for img, det in zip(imgs, detector.detect(np.stack(imgs)), strict=True):  # one pass per source
            fi = len(frames)
            frames.append(img)
            for box, pts in zip(det.boxes, det.landmarks, strict=True):
                if max(box[2] - box[0], box[3] - box[1]) < MIN_SIDE:
                    continue
                x1, y1, x2, y2 = (int(round(float(v))) for v in box)
                shape = predictor(img, dlib.rectangle(x1, y1, x2, y2))
                frame_of.append(fi)
                source.append(name)
                boxes.append(box)
                mpts.append(pts)
                dpts.append([(p.x, p.y) for p in shape.parts()])
                chips.append(dlib.get_face_chip(img, shape, size=150, padding=0.25))
    return FaceSamples(
        frames=frames,
        frame_of=np.asarray(frame_of, np.int64),
        source=np.asarray(source),
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        mtcnn_points=np.asarray(mpts, np.float32).reshape(-1, 5, 2),
        dlib_points=np.asarray(dpts, np.float32).reshape(-1, 5, 2),
        dlib_chips=np.asarray(chips, np.uint8).reshape(-1, 150, 150, 3),
    )
