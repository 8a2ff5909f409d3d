"""Self-blended images (SBI): fakes made from one real face, for training a detector on real faces only.

Re-implemented from the description in Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images"
(CVPR 2022); no code of theirs is used. A face swap pastes a generated face into a target frame through a soft
mask; the seam and the small statistical mismatch between inside and outside (colour, sharpness, scale,
alignment) are what it leaves behind whatever generator made the face. SBI produces exactly these traces
from one real image:

1. **Source and target**: two copies of the frame; the source gets a *subtle* colour change (per-channel
   shift, hue / saturation / brightness / contrast) and a frequency change (down-and-up sampling, i.e. a softer
   face, or mild sharpening: a face sharper or softer than its surroundings), then it is scaled and shifted by a
   few percent around the face centre (a misaligned paste). The target is the frame itself, so pixels outside
   the mask are never changed. (The paper transforms either copy at random; changing only the source keeps
   the real frame and its fake identical outside the mask, and the sharpen/soften pair covers both directions
   of the frequency mismatch.)
2. **Mask**: the convex hull of a subset of the 68 landmarks (the whole face with the brows, the inner face,
   or the face below the eyes), its outline pushed in or out by a random smooth amount, eroded or dilated,
   then softened by two Gaussian blurs (the first one thresholded, so the soft edge can sit inside the hull).
3. **Blend**: ``fake = source * r*M + target * (1 - r*M)`` with a random ratio ``r`` (1 most often).

Two additions to the paper's transforms, for face swaps of camera footage: the mask's upper edge may be raised
towards the hairline (swap masks often cover the forehead), and the target (the whole frame, and so the real
member of a pair too) may carry camera noise that the pasted face lacks, while the source may be smoothed
edge-preservingly (the clean skin of a generated face).

All draws come from one :class:`numpy.random.Generator` (:func:`sample_params`), so a fixed seed reproduces an
image exactly, and one :class:`SbiParams` can be applied to every frame of a track (:func:`self_blend` with
the frame's own landmarks): the same manipulation along a whole identity, as a face swap does.

Strength: a quick earlier try with strong colour jitter (±20 per channel) taught a network the obvious colour
seam, which colour-matched face swaps do not have (validation AUC 0.46); these defaults keep every change
small (colour shift ≤ 8/255, scale ±4 %), so the network has to find the blend itself.

Shapes: frames are (H, W, 3) uint8 in any channel order (the colour steps treat the channels as RGB; the order
only changes which channel gets which draw). Landmarks are (68, 2) float ``(x, y)`` in the frame's pixels
(dlib's 68-point layout).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

__all__ = [
    "MASK_REGIONS",
    "SbiParams",
    "sample_params",
    "face_mask",
    "make_source",
    "camera_noise",
    "self_blend",
]

#: Landmark subsets whose hull can be the blended region (dlib 68-point indices).
MASK_REGIONS: dict[str, tuple[int, ...]] = {
    "face": tuple(range(0, 68)),  # jaw, brows, nose, eyes, mouth: the whole face up to the brows
    "inner": tuple(range(2, 15)) + tuple(range(17, 27)),  # without the jaw corners near the ears
    "lower": tuple(range(1, 16)) + (36, 39, 42, 45, 27),  # from the eyes down
}


@dataclass(frozen=True)
class SbiParams:
    """One draw of the self-blending transform (see the module docstring).

    Attributes:
        channel_shift: additive shift per channel, 0..255 units.
        hue: hue shift in OpenCV units (degrees / 2).
        saturation: multiplicative saturation factor.
        brightness: additive brightness, 0..255 units.
        contrast: multiplicative contrast around the mean.
        frequency: ``"down"`` (down- and up-sampling by ``freq_amount``), ``"sharpen"`` (unsharp mask of
            strength ``freq_amount``), ``"smooth"`` (edge-preserving bilateral smoothing, the "clean skin" of a
            generated face, mixed in with weight ``freq_amount``) or ``"none"``.
        freq_amount: scale factor in (0, 1) for ``"down"``; strength for ``"sharpen"`` and ``"smooth"``.
        scale: source scale around the face centre (x, y).
        shift: source shift (x, y), fraction of the face box side.
        region: a key of :data:`MASK_REGIONS`.
        outline: radial push of each hull point (fraction of its distance to the centre), smooth around the
            hull: amplitude and phase of a low-order wave.
        morph: erosion (< 0) or dilation (> 0) of the hull mask, fraction of the face side.
        blur: the two Gaussian blur sigmas of the mask, fraction of the face side.
        ratio: blend ratio r: the mask is multiplied by it.
        forehead: the hull's upper edge is raised above the brows by this fraction of the brow-to-nose
            distance (swap masks often reach the hairline); 0 = the brows.
        noise: sigma (0..255 units) of camera noise on the target only: the pasted face lacks the sensor noise
            of the frame around it (0 = none). The real member of a pair carries the same noise
            (:func:`camera_noise`).
        noise_seed: seed of that noise pattern.
    """

    channel_shift: tuple[float, float, float]
    hue: float
    saturation: float
    brightness: float
    contrast: float
    frequency: str
    freq_amount: float
    scale: tuple[float, float]
    shift: tuple[float, float]
    region: str
    outline: tuple[float, float, float, float]
    morph: float
    blur: tuple[float, float]
    ratio: float
    forehead: float = 0.0
    noise: float = 0.0
    noise_seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def sample_params(rng: np.random.Generator, *, strength: float = 1.0) -> SbiParams:
    """Draw one self-blending transform.

    Args:
        rng: the generator (one draw per image, or per track for a video).
        strength: multiplies every colour, frequency and geometric change (1 = the defaults above).
    """
    s = float(strength)
    freq = str(rng.choice(["down", "sharpen", "smooth", "none"], p=[0.3, 0.25, 0.3, 0.15]))
    amount = (
        float(rng.uniform(1.0 - 0.5 * s, 1.0 - 0.1 * s))
        if freq == "down"
        else float(rng.uniform(0.2, 0.8) * s)
    )
    regions = list(MASK_REGIONS)
    return SbiParams(
        channel_shift=tuple(float(v) for v in rng.uniform(-8, 8, size=3) * s),
        hue=float(rng.uniform(-3, 3) * s),
        saturation=float(1 + rng.uniform(-0.08, 0.08) * s),
        brightness=float(rng.uniform(-8, 8) * s),
        contrast=float(1 + rng.uniform(-0.06, 0.06) * s),
        frequency=freq,
        freq_amount=amount,
        scale=tuple(float(1 + v) for v in rng.uniform(-0.04, 0.04, size=2) * s),
        shift=tuple(float(v) for v in rng.uniform(-0.02, 0.02, size=2) * s),
        region=str(rng.choice(regions, p=[0.5, 0.3, 0.2])),
        outline=(
            float(rng.uniform(-0.06, 0.06)),
            float(rng.uniform(0, 0.08)),
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.integers(2, 5)),
        ),
        morph=float(rng.uniform(-0.08, 0.04)),
        blur=(float(rng.uniform(0.01, 0.05)), float(rng.uniform(0.01, 0.04))),
        ratio=float(rng.choice([0.5, 0.75, 1.0, 1.0, 1.0, 1.0])),
        forehead=float(rng.uniform(0.2, 0.8)) if rng.random() < 0.5 else 0.0,
        noise=float(rng.uniform(1.0, 5.0)) if rng.random() < 0.5 else 0.0,
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


def _face_side(landmarks: np.ndarray) -> float:
    lo, hi = landmarks.min(0), landmarks.max(0)
    return float(max(hi - lo))


def face_mask(landmarks: np.ndarray, shape: tuple[int, int], params: SbiParams) -> np.ndarray:
    """The soft blending mask of one face.

    Args:
        landmarks: (68, 2) float ``(x, y)``.
        shape: (H, W) of the frame.
        params: the draw.

    Returns:
        (H, W) float32 in [0, 1] (before the blend ratio).
    """
    h, w = shape
    lm = np.asarray(landmarks, np.float64)
    pts = lm[list(MASK_REGIONS[params.region])]
    if params.forehead > 0 and params.region != "lower":
        brows = lm[17:27]
        pts = np.concatenate([pts, brows + (brows - lm[33]) * params.forehead])
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    centre = hull.mean(0)
    base, amp, phase, order = params.outline
    angle = np.arctan2(hull[:, 1] - centre[1], hull[:, 0] - centre[0])
    push = 1.0 + base + amp * np.sin(order * angle + phase)
    hull = centre + (hull - centre) * push[:, None]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, np.round(hull).astype(np.int32), 255)
    side = _face_side(pts)
    k = int(round(abs(params.morph) * side))
    if k >= 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
        mask = cv2.erode(mask, kernel) if params.morph < 0 else cv2.dilate(mask, kernel)
    m = mask.astype(np.float32) / 255.0
    s1, s2 = (max(0.5, b * side) for b in params.blur)
    m = cv2.GaussianBlur(m, (0, 0), s1)
    m[m < 1.0] = 0.0  # the first blur only moves the edge inwards ...
    m = cv2.GaussianBlur(m, (0, 0), s2)  # ... the second one makes it soft
    if m.max() <= 0:  # eroded away on a tiny face: fall back to the plain hull, softened
        m = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), s2)
    return np.clip(m, 0.0, 1.0)


def _colour(img: np.ndarray, p: SbiParams) -> np.ndarray:
    x = img.astype(np.float32)
    x += np.asarray(p.channel_shift, np.float32)
    if p.hue or p.saturation != 1.0:
        hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + p.hue) % 180.0
        hsv[..., 1] = np.clip(hsv[..., 1] * p.saturation, 0, 255)
        x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    mean = x.mean()
    x = (x - mean) * p.contrast + mean + p.brightness
    return x


def _frequency(x: np.ndarray, p: SbiParams) -> np.ndarray:
    if p.frequency == "down":
        h, w = x.shape[:2]
        small = cv2.resize(
            x,
            (max(1, round(w * p.freq_amount)), max(1, round(h * p.freq_amount))),
            interpolation=cv2.INTER_AREA,
        )
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if p.frequency == "smooth":
        smooth = cv2.bilateralFilter(np.clip(x, 0, 255).astype(np.float32), 5, 20.0, 3.0)
        return x + p.freq_amount * (smooth - x)
    if p.frequency == "sharpen":
        soft = cv2.GaussianBlur(x, (0, 0), 1.0)
        return x + p.freq_amount * (x - soft)
    return x


def make_source(img: np.ndarray, landmarks: np.ndarray, p: SbiParams) -> np.ndarray:
    """The source copy: colour and frequency change, then scaled and shifted around the face centre.

    Returns:
        float32 (H, W, 3), not clipped.
    """
    x = _frequency(_colour(img, p), p)
    h, w = x.shape[:2]
    cx, cy = np.asarray(landmarks, np.float64).mean(0)
    side = _face_side(landmarks)
    sx, sy = p.scale
    tx, ty = p.shift[0] * side, p.shift[1] * side
    m = np.array([[sx, 0, (1 - sx) * cx + tx], [0, sy, (1 - sy) * cy + ty]], np.float32)
    return cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def camera_noise(img: np.ndarray, params: SbiParams) -> np.ndarray:
    """The frame with the draw's camera noise (the real member of a pair, and the target); ``img`` when none."""
    if params.noise <= 0:
        return img
    noise = np.random.default_rng(params.noise_seed).normal(0.0, params.noise, img.shape).astype(np.float32)
    return np.clip(np.rint(img.astype(np.float32) + noise), 0, 255).astype(np.uint8)


def self_blend(img: np.ndarray, landmarks: np.ndarray, params: SbiParams) -> tuple[np.ndarray, np.ndarray]:
    """One self-blended fake of a real frame.

    Args:
        img: (H, W, 3) uint8 real frame.
        landmarks: (68, 2) float ``(x, y)`` of the face to blend.
        params: the draw (:func:`sample_params`).

    Returns:
        ``(fake, weight)``: (H, W, 3) uint8, and the (H, W) float32 blending weight ``r * M`` in [0, 1]; pixels
        where the weight is 0 are exactly those of :func:`camera_noise` ``(img, params)`` (the real it pairs with).
    """
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"img must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be (68, 2), got {lm.shape}")
    target = camera_noise(img, params)
    weight = face_mask(lm, img.shape[:2], params) * np.float32(params.ratio)
    source = make_source(img, lm, params)  # from the clean frame: the pasted face has no camera noise
    w3 = weight[..., None]
    blended = source * w3 + target.astype(np.float32) * (1.0 - w3)
    out = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    out[weight <= 0] = target[weight <= 0]
    return out, weight
