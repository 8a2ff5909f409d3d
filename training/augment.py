"""Video-consistent face augmentation: one set of random parameters per video, applied to every face of it.

The original composes albumentations transforms with ``additional_targets`` so that the 16 faces of a video get
the same random draw (§4.8). The same idea here, without albumentations (not installable next to numpy<2 here):
:func:`sample_params` draws an :class:`AugmentParams` once per video, :func:`apply_params` applies it to each
face. Images are BGR uint8 (H, W, 3) after the isotropic resize + pad (the original's order).

Differences from the original lists: no ``InvertImg`` (it turns black dummy slots white and real faces into
negatives, not a plausible degradation), no fog/rain/sun-flare/shadow/sepia, and dummy slots are never augmented
(they stay black, as they reach the model at inference).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["AugmentParams", "sample_params", "apply_params", "augment_faces", "LEVELS"]

LEVELS = ("none", "min", "max")


@dataclass
class AugmentParams:
    """The random draw for one video. ``None`` fields mean "step not applied"."""

    flip: bool = False
    affine: tuple[float, float, float, float] | None = None  # angle deg, scale, shift x, shift y (fractions)
    brightness_contrast: tuple[float, float] | None = (
        None  # alpha (contrast), beta (brightness, 0..255 units)
    )
    hsv_shift: tuple[float, float, float] | None = None  # hue (deg/2 units of OpenCV), saturation, value
    channel_shift: tuple[float, float, float] | None = None  # B, G, R additive shift
    gamma: float | None = None
    gray: bool = False
    blur: tuple[str, int] | None = None  # ("gaussian" | "median" | "motion", kernel size)
    noise: tuple[float, int] | None = None  # sigma, seed (same noise pattern for every face)
    cutout: list[tuple[float, float, float]] = field(default_factory=list)  # (cx, cy, size) fractions
    jpeg_quality: int | None = None


def _maybe(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def sample_params(rng: np.random.Generator, level: str = "max") -> AugmentParams:
    """Draw the augmentation of one video.

    Args:
        rng: numpy generator (one draw per video).
        level: ``"none"``, ``"min"`` (the original's short list) or ``"max"`` (the long list).
    """
    if level not in LEVELS:
        raise ValueError(f"augmentation level must be one of {LEVELS}, got {level!r}")
    p = AugmentParams()
    if level == "none":
        return p
    heavy = level == "max"
    if _maybe(rng, 0.2):
        p.jpeg_quality = int(rng.integers(60, 101))
    if _maybe(rng, 0.1 if heavy else 0.05):
        kind = str(rng.choice(["gaussian", "median", "motion"])) if heavy else "gaussian"
        p.blur = (kind, 3 if kind != "motion" else int(rng.choice([3, 5, 7])))
    p.flip = _maybe(rng, 0.5)
    if _maybe(rng, 0.5 if heavy else 0.4):
        if rng.random() < 0.5:
            p.brightness_contrast = (float(rng.uniform(0.8, 1.2)), float(rng.uniform(-0.2, 0.2) * 255))
        else:
            p.hsv_shift = (
                float(rng.uniform(-10, 10)),
                float(rng.uniform(-30, 30)),
                float(rng.uniform(-20, 20)),
            )
    if heavy and _maybe(rng, 0.1):
        p.channel_shift = tuple(float(v) for v in rng.uniform(-20, 20, size=3))
    if _maybe(rng, 0.3):
        p.noise = (float(rng.uniform(3.0, 10.0)), int(rng.integers(0, 2**31 - 1)))
    if heavy and _maybe(rng, 0.1):
        p.cutout = [
            tuple(float(v) for v in rng.uniform([0, 0, 0.05], [1, 1, 0.15]))
            for _ in range(rng.integers(1, 5))
        ]
    if heavy and _maybe(rng, 0.1):
        p.gamma = float(rng.uniform(0.8, 1.2))
    p.gray = _maybe(rng, 0.2)
    if _maybe(rng, 0.5):
        p.affine = (
            float(rng.uniform(-5, 5)),
            float(rng.uniform(0.8, 1.2)),
            float(rng.uniform(-0.1, 0.1)),
            float(rng.uniform(-0.1, 0.1)),
        )
    return p


def _motion_kernel(k: int) -> np.ndarray:
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    return kernel


def apply_params(img: np.ndarray, p: AugmentParams) -> np.ndarray:
    """Apply one video's draw to one face.

    Args:
        img: (H, W, 3) uint8 BGR.
        p: the draw from :func:`sample_params`.

    Returns:
        (H, W, 3) uint8 BGR (a new array).
    """
    out = img.copy()
    h, w = out.shape[:2]
    if p.jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, p.jpeg_quality])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if p.blur is not None:
        kind, k = p.blur
        if kind == "gaussian":
            out = cv2.GaussianBlur(out, (k, k), 0)
        elif kind == "median":
            out = cv2.medianBlur(out, k)
        else:
            out = cv2.filter2D(out, -1, _motion_kernel(k))
    if p.flip:
        out = out[:, ::-1].copy()
    f = out.astype(np.float32)
    if p.brightness_contrast is not None:
        alpha, beta = p.brightness_contrast
        f = f * alpha + beta
    if p.hsv_shift is not None:
        hsv = cv2.cvtColor(np.clip(f, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + p.hsv_shift[0]) % 180
        hsv[..., 1] = np.clip(hsv[..., 1] + p.hsv_shift[1], 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] + p.hsv_shift[2], 0, 255)
        f = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    if p.channel_shift is not None:
        f = f + np.asarray(p.channel_shift, np.float32)[None, None, :]
    if p.gamma is not None:
        f = 255.0 * np.power(np.clip(f, 0, 255) / 255.0, p.gamma)
    if p.noise is not None:
        sigma, seed = p.noise
        noise = np.random.default_rng(seed).normal(0.0, sigma, size=(h, w, 1)).astype(np.float32)
        f = f + noise
    out = np.clip(f, 0, 255).astype(np.uint8)
    if p.gray:
        g = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        out = np.repeat(g[:, :, None], 3, axis=2)
    for cx, cy, size in p.cutout:
        s = max(1, int(size * min(h, w)))
        x0, y0 = int(cx * w - s / 2), int(cy * h - s / 2)
        out[max(y0, 0) : max(y0 + s, 0), max(x0, 0) : max(x0 + s, 0)] = 0
    if p.affine is not None:
        angle, scale, sx, sy = p.affine
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
        m[0, 2] += sx * w
        m[1, 2] += sy * h
        out = cv2.warpAffine(
            out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
    return np.ascontiguousarray(out)


def augment_faces(
    faces: list[np.ndarray | None], rng: np.random.Generator, level: str
) -> tuple[list[np.ndarray | None], AugmentParams]:
    """Augment all faces of one video with one draw; ``None`` entries (dummy slots) pass through.

    Returns:
        (augmented faces, the draw used).
    """
    params = sample_params(rng, level)
    if level == "none":
        return list(faces), params
    return [None if f is None else apply_params(f, params) for f in faces], params
