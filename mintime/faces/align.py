"""Face chips in dlib's geometry cut on the device from five landmarks: batched similarity fit and warp.

dlib's face descriptor network expects the chips of ``dlib.get_face_chip(img, shape, size=150, padding=0.25)``:
a similarity transform (rotation, uniform scale, translation) is fitted by least squares from a template of
landmark positions in the chip to the detected landmarks, and the chip is resampled from the frame through it
(dlib's ``get_face_chip_details`` and ``extract_image_chips`` in ``dlib/image_transforms/interpolation.h``).
This module does the same for a whole batch of faces with torch ops, on the device that holds the frames:

* :func:`similarity_transforms`: batched closed-form least-squares similarity (Umeyama's estimate without
  reflection, what dlib's ``find_similarity_transform`` returns for non-degenerate faces), via complex numbers:
  ``dst ~ a * src + b`` with complex ``a``.
* :func:`chip_transforms`: chip pixel → frame pixel affine maps in dlib's convention. dlib turns the fitted
  transform into an extraction rectangle (``centered_drect``: centre ``T(size/2, size/2)``, side ``size *
  scale``) whose corner pixels map to the chip's corner pixels, so the effective map is
  ``p + k R (c - (size - 1) / 2)`` with ``k = (size * scale - 1) / (size - 1)``.
* :func:`extract_chips`: the resampling. Like dlib, a face much larger than its chip is first reduced with a
  Gaussian pyramid (5-tap ``[1 4 6 4 1] / 16`` filter, factor 2 per level; level count as dlib's: halve while
  the halved extraction rectangle is still larger than the chip; dlib's level coordinates, see
  ``_DLIB_POINT_DOWN``), then sampled bilinearly; samples whose 2x2
  neighbourhood leaves the frame are 0, as in dlib's ``interpolate_bilinear``. Only each face's footprint is
  copied out of its frame and converted to float; each pyramid level present takes one ``grid_sample`` for
  all its faces.

Templates (x, y in the unit face square before padding, dlib's coordinates):

* :data:`DLIB_5PT_TEMPLATE`: dlib's own, for the points of its 5-point shape predictor (outer and inner corner
  of the eye on the image's right, outer and inner corner of the other eye, base of the nose).
* :data:`MTCNN_TEMPLATE`: for MTCNN's points (eye centres, nose tip, mouth corners; image left first), taken
  from dlib's 68-point mean face shape (the same source file: the eye centres are the means of iBUG points
  36-41 and 42-47, the nose tip point 30, the mouth corners points 48 and 54). dlib's 5-point template is the
  same face frame (its eye corners are within 0.002 of the mean shape's points 36, 39, 42 and 45).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "DLIB_5PT_TEMPLATE",
    "MTCNN_TEMPLATE",
    "similarity_transforms",
    "chip_transforms",
    "pyramid_levels",
    "extract_chips",
    "align_faces",
]

logger = logging.getLogger(__name__)

#: dlib's chip template for its 5-point shape predictor (``get_face_chip_details``), unit face square.
DLIB_5PT_TEMPLATE = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ],
    dtype=np.float64,
)

#: Chip template for MTCNN's five landmarks (left eye, right eye, nose, left and right mouth corner, as seen
#: in the image), from dlib's 68-point mean face shape (see the module docstring).
MTCNN_TEMPLATE = np.array(
    [
        [0.2254920, 0.2159895],  # mean of points 36..41
        [0.7547613, 0.2159895],  # mean of points 42..47
        [0.490127, 0.515625],  # point 30
        [0.254149, 0.780233],  # point 48
        [0.726104, 0.780233],  # point 54
    ],
    dtype=np.float64,
)

_GAUSS5 = (1.0, 4.0, 6.0, 4.0, 1.0)
#: dlib's ``pyramid_down<2>::point_down``: ``p / 2 - (1.25, 0.75)``. Its RGB filter centres output pixel j on
#: input 2j + 2 (so ``p / 2 - 1`` would be exact), but the network was trained on chips cut with dlib's
#: mapping, and following it brings the chips of large faces 2-3x closer to dlib's (measured on the shared
#: images: mean absolute pixel difference 0.3-1.3 instead of 1.7-3.8 grey levels at pyramid levels 1-3).
_DLIB_POINT_DOWN = torch.tensor([1.25, 0.75], dtype=torch.float64)


def _as_tensor(x: Tensor | np.ndarray | Sequence, dtype: torch.dtype, device: torch.device | None) -> Tensor:
    if isinstance(x, Tensor):
        return x.to(dtype=dtype, device=device if device is not None else x.device)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def similarity_transforms(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity transforms ``dst ~ s R src + t``, batched.

    Args:
        src: (N, K, 2) or (K, 2) points (K >= 2), float.
        dst: (N, K, 2) points, same dtype.

    Returns:
        (N, 2, 3) matrices ``[s R | t]`` of the dtype of ``dst`` (use float64 for geometry).

    Raises:
        ValueError: shapes do not match, or the source points of a face all coincide.
    """
    if src.ndim == 2:
        src = src.expand(dst.shape[0], -1, -1)
    if src.shape != dst.shape or src.ndim != 3 or src.shape[-1] != 2 or src.shape[1] < 2:
        raise ValueError(f"need (N, K, 2) source and target points, K >= 2; got {src.shape} and {dst.shape}")
    zs = torch.complex(src[..., 0], src[..., 1])
    zd = torch.complex(dst[..., 0], dst[..., 1])
    ms, md = zs.mean(1, keepdim=True), zd.mean(1, keepdim=True)
    cs, cd = zs - ms, zd - md
    var = (cs.abs() ** 2).sum(1)
    if bool((var <= 0).any()):
        raise ValueError("degenerate source points (all equal) for a similarity fit")
    a = (cs.conj() * cd).sum(1) / var  # (N,) complex: scale * exp(i angle)
    b = md[:, 0] - a * ms[:, 0]
    out = torch.empty(dst.shape[0], 2, 3, dtype=dst.dtype, device=dst.device)
    out[:, 0, 0], out[:, 0, 1], out[:, 0, 2] = a.real, -a.imag, b.real
    out[:, 1, 0], out[:, 1, 1], out[:, 1, 2] = a.imag, a.real, b.imag
    return out


def chip_transforms(
    landmarks: Tensor | np.ndarray,
    template: Tensor | np.ndarray = MTCNN_TEMPLATE,
    *,
    size: int = 150,
    padding: float = 0.25,
) -> Tensor:
    """Chip pixel → frame pixel affine maps of dlib's ``get_face_chip`` for the given landmarks.

    Args:
        landmarks: (N, K, 2) landmark x, y in frame pixels (the order of ``template``'s rows).
        template: (K, 2) landmark positions in the unit face square (:data:`MTCNN_TEMPLATE` for MTCNN's five
            points, :data:`DLIB_5PT_TEMPLATE` for dlib's shape predictor).
        size: chip side in pixels.
        padding: margin around the face square, as a fraction of its side (dlib's default 0.25).

    Returns:
        (N, 2, 3) float64 on the device of ``landmarks``: ``[x_frame, y_frame] = M @ [x_chip, y_chip, 1]``.
    """
    dst = _as_tensor(landmarks, torch.float64, None)
    if dst.ndim != 3 or dst.shape[-1] != 2:
        raise ValueError(f"landmarks must be (N, K, 2), got {tuple(dst.shape)}")
    tmpl = _as_tensor(template, torch.float64, dst.device)
    if tmpl.shape != dst.shape[1:]:
        raise ValueError(f"template {tuple(tmpl.shape)} does not match landmarks {tuple(dst.shape)}")
    if size < 2 or padding < 0:
        raise ValueError(f"need size >= 2 and padding >= 0, got {size}, {padding}")
    chip_pts = (padding + tmpl) / (2 * padding + 1) * size
    fit = similarity_transforms(chip_pts, dst)  # (N, 2, 3)
    lin = fit[:, :, :2]
    scale = (lin[:, 0, 0] * lin[:, 1, 1] - lin[:, 0, 1] * lin[:, 1, 0]).abs().sqrt()  # (N,)
    centre = lin @ torch.full((2,), size / 2.0, dtype=torch.float64, device=dst.device) + fit[:, :, 2]
    k = (size * scale - 1.0) / (size - 1.0)
    lin = lin * (k / scale)[:, None, None]
    offset = centre - lin @ torch.full((2,), (size - 1) / 2.0, dtype=torch.float64, device=dst.device)
    return torch.cat([lin, offset[:, :, None]], dim=2)


def pyramid_levels(transforms: Tensor, size: int = 150) -> Tensor:
    """Pyramid level per face, dlib's rule: halve the extraction rectangle while the halved one is larger.

    Args:
        transforms: (N, 2, 3) chip → frame maps (:func:`chip_transforms`).
        size: chip side.

    Returns:
        (N,) int64 number of 2x reductions before sampling (0 = sample the frame itself).
    """
    lin = transforms[:, :, :2].double()
    k = (lin[:, 0, 0] * lin[:, 1, 1] - lin[:, 0, 1] * lin[:, 1, 0]).abs().sqrt()  # frame px per chip px
    side = (size - 1) * k + 1  # dlib's rectangle side (right - left + 1)
    levels = torch.zeros_like(side, dtype=torch.int64)
    for _ in range(32):
        side = (side - 1) / 2 + 1
        more = side > size
        if not bool(more.any()):
            break
        levels += more.long()
    return levels


def _pyramid_down(x: Tensor) -> Tensor:
    """One Gaussian pyramid step as dlib's ``pyramid_down<2>`` on RGB images.

    5-tap [1 4 6 4 1]/16 separable filter, valid, stride 2, result truncated to an integer (dlib keeps its
    levels as 8-bit images). (B, C, H, W) float → (B, C, (H - 5) // 2 + 1, (W - 5) // 2 + 1); output pixel j
    is centred on input 2j + 2. Written as sums of strided views (depthwise convolutions are slow on CPUs).
    """

    def along(t: Tensor, dim: int) -> Tensor:
        n = (t.shape[dim] - 5) // 2 + 1
        if n <= 0:
            shape = list(t.shape)
            shape[dim] = 0
            return t.new_zeros(shape)
        taps = [t.narrow(dim, k, 2 * n - 1)[(slice(None),) * dim + (slice(None, None, 2),)] for k in range(5)]
        return taps[0] + taps[4] + 4.0 * (taps[1] + taps[3]) + 6.0 * taps[2]

    return torch.floor(along(along(x, 3), 2) * (1.0 / 256.0))


def extract_chips(
    frames: Tensor | np.ndarray,
    frame_index: Tensor | np.ndarray | Sequence[int],
    transforms: Tensor,
    *,
    size: int = 150,
    antialias: bool = True,
    out_dtype: torch.dtype = torch.uint8,
) -> Tensor:
    """Resamples face chips out of their frames.

    Each face's footprint (the frame region its chip covers, plus room for the filters) is copied out of its
    frame (clipped to the frame, as dlib's ``sub_image``) and converted to float; faces are grouped by pyramid
    level, each group's regions are padded to a common size, reduced together and sampled by one
    ``grid_sample``.

    Args:
        frames: (T, H, W, 3) uint8 (or float) frames, any channel order (kept), on any device; numpy frames
            are used on the CPU; one (H, W, 3) frame is taken as T = 1.
        frame_index: (N,) frame of each face (index into ``frames``).
        transforms: (N, 2, 3) chip pixel → frame pixel maps (:func:`chip_transforms`), any device.
        size: chip side.
        antialias: reduce large faces with the Gaussian pyramid first (dlib's behaviour); False samples the
            frame directly (faster, aliased for faces much larger than the chip).
        out_dtype: ``torch.uint8`` (truncated, as dlib stores its chips: the default, the closest to the chips
            dlib's network was trained on) or ``torch.float32`` (values 0..255, not rounded).

    Returns:
        (N, size, size, 3) chips on the device of ``frames``.
    """
    if not isinstance(frames, Tensor):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    device = frames.device
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) or one (H, W, 3) frame, got {tuple(frames.shape)}")
    cpu = torch.device("cpu")
    fidx = _as_tensor(frame_index, torch.int64, cpu).reshape(-1)
    m = transforms.to(device=cpu, dtype=torch.float64)
    n = len(fidx)
    if m.shape != (n, 2, 3):
        raise ValueError(f"need (N, 2, 3) transforms for N = {n} faces, got {tuple(transforms.shape)}")
    if n and (int(fidx.min()) < 0 or int(fidx.max()) >= frames.shape[0]):
        raise ValueError(f"frame_index out of range for {frames.shape[0]} frames")
    if out_dtype not in (torch.float32, torch.uint8):
        raise ValueError(f"out_dtype must be torch.float32 or torch.uint8, got {out_dtype}")
    out = torch.zeros(n, size, size, 3, dtype=out_dtype, device=device)
    if n == 0:
        return out
    h, w = frames.shape[1:3]
    levels = pyramid_levels(m, size) if antialias else torch.zeros(n, dtype=torch.int64)

    # each face's frame region, as dlib's extract_image_chips: the box of the chip's rotated corners grown by
    # 2, 6, 14, 30 ... pixels (pyramid level 0, 1, 2, 3 ...), clipped to the frame, rounded (``lround``)
    c = float(size - 1)
    corners = torch.tensor([[0.0, 0.0, 1.0], [c, 0.0, 1.0], [0.0, c, 1.0], [c, c, 1.0]], dtype=torch.float64)
    foot = torch.einsum("nij,kj->nki", m, corners)  # (N, 4, 2)
    grow = 2.0 ** (levels.double() + 2.0) - 2.0

    def lround(v: Tensor) -> Tensor:
        return (v.sign() * (v.abs() + 0.5).floor()).long()

    x0 = lround((foot[..., 0].amin(1) - grow).clamp(min=0))
    y0 = lround((foot[..., 1].amin(1) - grow).clamp(min=0))
    x1 = torch.maximum(lround((foot[..., 0].amax(1) + grow).clamp(max=w - 1)) + 1, x0).clamp(max=w)
    y1 = torch.maximum(lround((foot[..., 1].amax(1) + grow).clamp(max=h - 1)) + 1, y0).clamp(max=h)
    x0, y0 = x0.clamp(max=w), y0.clamp(max=h)

    for level in torch.unique(levels).tolist():
        faces = torch.nonzero(levels == level).flatten()
        rw = max(int((x1[faces] - x0[faces]).max()), 1)
        rh = max(int((y1[faces] - y0[faces]).max()), 1)
        img = torch.zeros(len(faces), 3, rh, rw, dtype=torch.float32, device=device)
        for j, f in enumerate(faces.tolist()):
            ya, yb, xa, xb = int(y0[f]), int(y1[f]), int(x0[f]), int(x1[f])
            if yb > ya and xb > xa:
                img[j, :, : yb - ya, : xb - xa] = frames[int(fidx[f]), ya:yb, xa:xb].permute(2, 0, 1)
        valid = torch.stack([x1[faces] - x0[faces], y1[faces] - y0[faces]], dim=1).double()  # (F, 2) w, h
        to_level = m[faces].clone()  # chip pixel -> region pixel at this level
        to_level[:, :, 2] -= torch.stack([x0[faces], y0[faces]], dim=1).double()
        for _ in range(level):
            img = _pyramid_down(img)
            valid = torch.floor((valid - 5) / 2) + 1
            to_level = to_level / 2.0
            to_level[:, :, 2] -= _DLIB_POINT_DOWN
        out[faces.to(device)] = _sample(img, valid, to_level, size, out_dtype)
    return out


def _sample(img: Tensor, valid: Tensor, to_level: Tensor, size: int, out_dtype: torch.dtype) -> Tensor:
    """Bilinear samples, one region per face (one ``affine_grid`` + ``grid_sample``).

    Args:
        img: (F, 3, h, w) float regions.
        valid: (F, 2) float64 valid width and height of each region (the rest is padding).
        to_level: (F, 2, 3) float64 chip pixel → region pixel maps.
        size: chip side S.
        out_dtype: float32 or uint8 (truncated).

    Returns:
        (F, S, S, 3) chips; samples whose 2x2 neighbourhood is not inside the valid region are 0 (dlib's
        ``interpolate_bilinear`` rule).
    """
    hl, wl = img.shape[2], img.shape[3]
    # theta maps normalised chip coordinates (align_corners: -1..1 over pixel centres) to normalised region ones
    half = (size - 1) / 2.0
    denorm = torch.tensor([[half, 0.0, half], [0.0, half, half], [0.0, 0.0, 1.0]], dtype=torch.float64)
    norm = torch.tensor(
        [[2.0 / max(wl - 1, 1), 0.0, -1.0], [0.0, 2.0 / max(hl - 1, 1), -1.0]], dtype=torch.float64
    )
    lift = torch.cat(
        [to_level, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64).expand(len(img), 1, 3)], 1
    )
    theta = norm @ lift @ denorm  # (F, 2, 3)
    grid = F.affine_grid(theta.to(img.device, img.dtype), [len(img), 3, size, size], align_corners=True)
    px = (grid[..., 0] + 1.0) * (0.5 * (wl - 1))  # region pixels, (F, S, S)
    py = (grid[..., 1] + 1.0) * (0.5 * (hl - 1))
    lim = (valid.to(img.device, img.dtype) - 1.0)[:, :, None, None]  # (F, 2, 1, 1)
    inside = (px >= 0) & (py >= 0) & (px < lim[:, 0]) & (py < lim[:, 1])
    grid = torch.where(inside[..., None], grid, torch.full_like(grid, -4.0))
    chips = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    chips = chips.permute(0, 2, 3, 1)  # (F, S, S, 3)
    if out_dtype == torch.uint8:
        return chips.clamp(0, 255).floor().to(torch.uint8)
    return chips


def align_faces(
    frames: Tensor | np.ndarray,
    frame_index: Tensor | np.ndarray | Sequence[int],
    landmarks: Tensor | np.ndarray,
    *,
    template: Tensor | np.ndarray = MTCNN_TEMPLATE,
    size: int = 150,
    padding: float = 0.25,
    antialias: bool = True,
    out_dtype: torch.dtype = torch.uint8,
) -> Tensor:
    """dlib-geometry face chips from five landmarks per face: :func:`chip_transforms` + :func:`extract_chips`.

    Args:
        frames: (T, H, W, 3) uint8 RGB frames (torch on any device, or numpy).
        frame_index: (N,) frame of each face.
        landmarks: (N, 5, 2) landmarks in frame pixels (MTCNN's order for the default template).
        template: landmark template in the unit face square.
        size: chip side (150 for dlib's ResNet).
        padding: dlib's chip padding (0.25 for the ResNet).
        antialias: Gaussian pyramid for large faces, as dlib.
        out_dtype: uint8 (dlib's truncation) or float32 (0..255, not rounded).

    Returns:
        (N, size, size, 3) chips on the frames' device.
    """
    device = frames.device if isinstance(frames, Tensor) else torch.device("cpu")
    m = chip_transforms(
        _as_tensor(landmarks, torch.float64, torch.device("cpu")), template, size=size, padding=padding
    )
    return extract_chips(
        frames, frame_index, m.to(device), size=size, antialias=antialias, out_dtype=out_dtype
    )
