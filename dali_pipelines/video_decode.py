"""Video decoding and frame sampling with NVIDIA DALI, under the same sampling contract as :mod:`mintime.video`.

``fn.decoders.video`` (DALI 2.1.1, the image's, and 2.4.0: the same arguments) takes the encoded file from ``fn.external_source`` and decodes VP8, VP9 and
MJPEG on the CPU, and also H.264, HEVC, AV1 and MPEG-4 with ``device="mixed"`` (NVDEC). Its ``frames``
argument accepts a per-sample tensor (an *argument input*), and out-of-range indices are silently filled
with black frames (``fill_value``), so indices must be right before they reach the decoder.

The contract (:func:`mintime.video.sample_frame_indices`) needs the clip's frame count ``N``, which no DALI
operator reports before decoding. Two pipelines, both exact:

* :func:`sampled_video_decode` (``sampling="indices"``): the caller computes the indices from a cheap probe
  (container header and a demux pass, no decoding: 10-20 ms for the shared 720p/1080p clips) and feeds them
  as a second input, ``FRAME_INDICES``; the decoder decodes only what those frames need. Used by :func:`decode_with_dali`
  and so by a Python-backend Triton model that owns the pipeline; it is also what a two-step ensemble
  (probe, then the DALI backend) would serve.
* :func:`whole_video_decode` (``sampling="in_graph"``): one input, ``VIDEO``, as the contract's
  ``video_decode`` model has, so it serializes to a self-contained ``model.dali`` for Triton's DALI backend.
  It decodes *every* frame, takes ``N`` from the output's shape and evaluates the contract's integer formula
  in the graph, then keeps the sampled frames (``fn.sequence_rearrange``). Exact, but it holds a whole clip
  of decoded frames per sample (301 frames of 720x1280 RGB = 0.83 GB) and decodes every frame to RGB.
  ``max_decoded_frames`` bounds that memory by sampling only the first frames of longer clips (a deliberate,
  documented deviation from the contract for those clips). It cannot read the frame rate or the display
  matrix: its ``video_decode_info`` carries ``fps = 0`` (unknown) and ``rotation = 0`` (not applied, frames
  as stored), and portrait phone videos with a rotation tag come out sideways.

Deployment: the service decodes with :func:`sampled_video_decode` *inside* the ``video_decode`` Python model
(decoder ``dali_mixed``, :class:`GpuVideoDecoder`): a PyAV probe gives ``N``, fps and rotation, NVDEC decodes
only the sampled frames (GPU memory: the ``T`` output frames plus the decoder's surfaces, whatever the clip's
length), the frames are turned upright as the PyAV path does, and a stream NVDEC cannot decode (H.264 4:4:4
or 4:2:2 before Blackwell, codecs it lacks, or any decode error) is decoded by PyAV for that request. The
contract's single-input ``video_decode`` cannot do this inside Triton's DALI backend (no frame count before
decoding, no per-request fallback), so :func:`whole_video_decode` and ``model.dali`` (``mintime export
--dali``) remain for users of that backend: its graph reads the decoded sequence's shape on the CPU, a
GPU->CPU transition that the backend's default (legacy) executor refuses; the image sets ``DALI_USE_EXEC2=1``
so that the backend runs it with the dynamic executor (:func:`dali_pipelines.schema.gpu_to_cpu` lists
them in a serialized graph).

Failed decodes: a default DALI pipeline that fails on one input also fails the next; every pipeline here is
built with ``prefetch_queue_depth=1, exec_dynamic=True``, which recovers (tested: a bad input, then a good one).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.data_node import DataNode
from nvidia.dali.pipeline import Pipeline

from mintime.contract import VIDEO_DECODE
from mintime.video import (
    DEFAULT_MAX_BYTES,
    DEFAULT_NUM_FRAMES,
    DecodedClip,
    VideoDecodeError,
    VideoSource,
    probe,
    read_source,
    rotate_frames,
    sample_frame_indices,
)

__all__ = [
    "VIDEO_INPUT",
    "FRAME_INDICES_INPUT",
    "FRAMES_OUTPUT",
    "INDICES_OUTPUT",
    "INFO_OUTPUT",
    "CPU_CODECS",
    "MIXED_CODECS",
    "contract_indices",
    "sampled_video_decode",
    "whole_video_decode",
    "build_pipeline",
    "serialize",
    "decode_with_dali",
    "nvdec_support",
    "GpuVideoDecoder",
]

logger = logging.getLogger(__name__)

VIDEO_INPUT = VIDEO_DECODE.inputs[0].name  # "VIDEO": the encoded file, uint8 (num_bytes,)
#: Second input of the ``indices`` pipeline: int32 (T,) frame indices computed by the caller.
FRAME_INDICES_INPUT = "FRAME_INDICES"
FRAMES_OUTPUT = VIDEO_DECODE.outputs[0].name  # (T, H, W, 3) uint8 RGB
INDICES_OUTPUT = VIDEO_DECODE.outputs[1].name  # (T,) int64
INFO_OUTPUT = VIDEO_DECODE.outputs[2].name  # (3,) float32 fps, total frames, rotation

#: Codecs (FFmpeg names) that ``fn.decoders.video`` decodes on each device.
CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
MIXED_CODECS = CPU_CODECS | {"h264", "hevc", "av1", "mpeg4"}

_SAMPLINGS = ("indices", "in_graph")


def _check_device(device: str) -> None:
    if device not in ("cpu", "mixed"):
        raise ValueError(f"device must be 'cpu' or 'mixed', got {device!r}")


def contract_indices(total: DataNode, num_frames: int) -> DataNode:
    """The sampling contract inside a DALI graph.

    Evaluates :func:`mintime.video.sample_frame_indices` with DALI arithmetic, in the same exact integer
    form: ``T' = min(T, N)``, ``idx[i] = (2 i (N - 1) + d) // (2 d)`` with ``d = max(T' - 1, 1)``, then keeps
    the first ``T'`` values.

    Args:
        total: per-sample int32 scalar ``N`` (frames in the clip), a CPU node.
        num_frames: ``T``, fixed for the pipeline.

    Returns:
        CPU node, per sample (T',) int32.
    """
    from nvidia.dali import math as dmath

    i = types.Constant(np.arange(num_frames, dtype=np.int32), device="cpu")
    keep = dmath.min(total, num_frames)
    den = dmath.max(keep - 1, 1)
    idx = (2 * i * (total - 1) + den) // (2 * den)
    start = types.Constant(np.zeros(1, np.int32), device="cpu")
    return fn.slice(
        idx, start, fn.reshape(keep, shape=[1]), axes=[0], normalized_anchor=False, normalized_shape=False
    )


@pipeline_def
def sampled_video_decode(device: str = "cpu") -> tuple[DataNode, DataNode]:
    """Decode the frames the caller asks for (exact contract when the indices come from ``sample_frame_indices``).

    Steps: ``VIDEO`` (uint8 (num_bytes,), the encoded file) and ``FRAME_INDICES`` (int32 (T,)) from
    ``fn.external_source`` -> ``fn.decoders.video(frames=FRAME_INDICES)`` on ``device`` (``"cpu"``: VP8, VP9,
    MJPEG; ``"mixed"``: also H.264, HEVC, AV1, MPEG-4 on NVDEC).

    Args:
        device: ``"cpu"`` or ``"mixed"``.

    Returns:
        ``video_decode_frames`` (T, H, W, 3) uint8 RGB as stored (no rotation; on the GPU for ``"mixed"``),
        ``video_decode_frame_indices`` (T,) int64.
    """
    _check_device(device)
    video = fn.external_source(name=VIDEO_INPUT, dtype=types.UINT8, ndim=1, device="cpu")
    indices = fn.external_source(name=FRAME_INDICES_INPUT, dtype=types.INT32, ndim=1, device="cpu")
    frames = fn.decoders.video(video, device=device, frames=indices, name=FRAMES_OUTPUT)
    return frames, fn.cast(indices, dtype=types.INT64, name=INDICES_OUTPUT)


@pipeline_def
def whole_video_decode(
    device: str = "mixed", num_frames: int = DEFAULT_NUM_FRAMES, max_decoded_frames: int | None = None
) -> tuple[DataNode, DataNode, DataNode]:
    """Sample the contract's frames inside the graph, from the single input ``VIDEO`` (Triton DALI backend).

    Steps: ``VIDEO`` (uint8 (num_bytes,)) from ``fn.external_source`` -> ``fn.decoders.video`` decodes all
    frames (or the first ``max_decoded_frames``) -> ``N`` = the decoded sequence's length ->
    :func:`contract_indices` -> ``fn.sequence_rearrange`` keeps those frames.

    Args:
        device: ``"cpu"`` or ``"mixed"``.
        num_frames: ``T``.
        max_decoded_frames: decode at most this many frames per clip (bounds memory; longer clips are then
            sampled from their first ``max_decoded_frames`` frames only). None: the whole clip.

    Returns:
        ``video_decode_frames`` (T', H, W, 3) uint8 RGB as stored, ``video_decode_frame_indices`` (T',)
        int64, ``video_decode_info`` (3,) float32 ``[0 (fps unknown), N, 0 (rotation not applied)]``.
    """
    _check_device(device)
    video = fn.external_source(name=VIDEO_INPUT, dtype=types.UINT8, ndim=1, device="cpu")
    if max_decoded_frames:
        every = fn.decoders.video(
            video, device=device, start_frame=0, end_frame=max_decoded_frames, pad_mode="none"
        )
    else:
        every = fn.decoders.video(video, device=device)
    total = every.shape(dtype=types.INT32, device="cpu")[0]
    indices = contract_indices(total, num_frames)
    frames = fn.sequence_rearrange(every, new_order=indices, name=FRAMES_OUTPUT)
    n = fn.cast(total, dtype=types.FLOAT)
    info = fn.stack(n * 0.0, n, n * 0.0, name=INFO_OUTPUT)
    return frames, fn.cast(indices, dtype=types.INT64, name=INDICES_OUTPUT), info


def build_pipeline(
    device: str = "cpu",
    *,
    sampling: str = "indices",
    num_frames: int = DEFAULT_NUM_FRAMES,
    max_decoded_frames: int | None = None,
    batch_size: int = 1,
    num_threads: int = 2,
    device_id: int | None = None,
    build: bool = True,
) -> Pipeline:
    """Create (and build) a video-decode pipeline that recovers after a failed decode.

    Args:
        device: ``"cpu"`` or ``"mixed"`` (GPU; ``device_id`` defaults to 0).
        sampling: ``"indices"`` (:func:`sampled_video_decode`, inputs ``VIDEO`` + ``FRAME_INDICES``) or
            ``"in_graph"`` (:func:`whole_video_decode`, input ``VIDEO``).
        num_frames: ``T`` for ``"in_graph"`` (the ``"indices"`` pipeline takes whatever it is fed).
        max_decoded_frames: see :func:`whole_video_decode`.
        batch_size: videos per iteration (the maximum; a smaller batch may be fed).
        num_threads: CPU worker threads.
        device_id: GPU ordinal; None for a CPU-only pipeline.
        build: build it now (needs a GPU for ``"mixed"``); False to only define it (e.g. to serialize).

    Returns:
        The pipeline (built when ``build``).
    """
    _check_device(device)
    if sampling not in _SAMPLINGS:
        raise ValueError(f"sampling must be one of {_SAMPLINGS}, got {sampling!r}")
    if device == "mixed" and device_id is None and build:
        device_id = 0
    kw = dict(
        batch_size=batch_size,
        num_threads=num_threads,
        device_id=device_id,
        prefetch_queue_depth=1,
        exec_dynamic=True,
    )
    if sampling == "indices":
        pipe = sampled_video_decode(device=device, **kw)
    else:
        pipe = whole_video_decode(
            device=device, num_frames=num_frames, max_decoded_frames=max_decoded_frames, **kw
        )
    if build:
        pipe.build()
    return pipe


def serialize(
    path: str | os.PathLike,
    device: str = "mixed",
    *,
    sampling: str = "in_graph",
    num_frames: int = DEFAULT_NUM_FRAMES,
    max_decoded_frames: int | None = None,
    batch_size: int = 8,
    num_threads: int = 4,
) -> Path:
    """Write a ``model.dali`` for Triton's DALI backend (works on a machine without a GPU).

    The pipeline is serialized without a device id; the DALI backend assigns each model instance its GPU.
    The backend wants ``VIDEO`` as ``TYPE_UINT8 [-1]`` and its ``max_batch_size`` at most ``batch_size``.

    Args:
        path: output file, e.g. ``model_repository/video_decode/1/model.dali``.
        device: ``"mixed"`` (NVDEC, production) or ``"cpu"``.
        sampling: ``"in_graph"`` (single input ``VIDEO``, the contract's interface) or ``"indices"``
            (adds the ``FRAME_INDICES`` input).
        num_frames: ``T``.
        max_decoded_frames: see :func:`whole_video_decode`.
        batch_size: maximum batch.
        num_threads: CPU threads of the pipeline.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipe = build_pipeline(
        device,
        sampling=sampling,
        num_frames=num_frames,
        max_decoded_frames=max_decoded_frames,
        batch_size=batch_size,
        num_threads=num_threads,
        device_id=None,
        build=False,
    )
    pipe.serialize(filename=str(path))
    logger.info("wrote %s (%s, sampling=%s, T=%d)", path, device, sampling, num_frames)
    return path


@functools.lru_cache(maxsize=4)
def _shared_pipeline(device: str, device_id: int | None) -> tuple[Pipeline, threading.Lock]:
    return build_pipeline(device, sampling="indices", device_id=device_id), threading.Lock()


def _first_line(err: Exception) -> str:
    lines = [ln for ln in str(err).splitlines() if ln.strip() and "Critical error" not in ln]
    return lines[0] if lines else type(err).__name__


def decode_with_dali(
    data: VideoSource,
    num_frames: int = DEFAULT_NUM_FRAMES,
    device: str = "cpu",
    *,
    pipeline: Pipeline | None = None,
    device_id: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    apply_rotation: bool = True,
    info: dict | None = None,
    check_codec: bool = True,
    keep_on_device: bool = False,
) -> DecodedClip:
    """Decode the contract's sampled frames with DALI: the DALI twin of :func:`mintime.video.decode_sampled`.

    A PyAV probe (container header and a demux pass, plus one decoded frame for the display matrix) gives
    the frame count, fps and rotation; the indices go to :func:`sampled_video_decode`; the frames are
    turned upright on the host.

    Args:
        data: the encoded video (bytes, a uint8 array, or a path).
        num_frames: ``T``.
        device: ``"cpu"`` (VP8/VP9/MJPEG) or ``"mixed"`` (GPU, also H.264/HEVC/AV1/MPEG-4).
        pipeline: a built ``"indices"`` pipeline of batch size >= 1 to use (default: one shared per
            ``(device, device_id)``, used under a lock).
        device_id: GPU for ``"mixed"`` (default 0).
        max_bytes: refuse larger inputs.
        apply_rotation: read the display matrix (the probe then decodes one frame on the CPU with PyAV)
            and turn frames upright; False leaves frames as stored and reports ``rotation=0``.
        info: the result of ``mintime.video.probe(data, count_packets=True, read_rotation=apply_rotation)``
            when the caller already has it.
        check_codec: refuse codecs the device has no decoder for before running DALI (False: let DALI try).

        keep_on_device: with ``device="mixed"``: return the frames as a torch tensor on the GPU (for the Triton
            model, which hands it on by DLPack) instead of copying them to host memory.

    Returns:
        The sampled clip (frames in host memory, or on the GPU with ``keep_on_device``).

    Raises:
        VideoDecodeError: as :func:`mintime.video.decode_sampled`, or a codec this device cannot decode.
    """
    _check_device(device)
    raw = read_source(data)
    if info is None:
        info = probe(raw, max_bytes=max_bytes, count_packets=True, read_rotation=apply_rotation)
    supported = CPU_CODECS if device == "cpu" else MIXED_CODECS
    if check_codec and info["codec"] not in supported:
        raise VideoDecodeError(
            f"unsupported codec for the DALI {device} decoder: {info['codec']} (supported: "
            f"{', '.join(sorted(supported))}); decode it with device='mixed' on a GPU or with PyAV"
        )
    indices = sample_frame_indices(info["total_frames"], num_frames)
    lock: threading.Lock | contextlib.nullcontext = contextlib.nullcontext()
    if pipeline is None:
        pipeline, lock = _shared_pipeline(device, 0 if device == "mixed" and device_id is None else device_id)
    with lock:
        pipeline.feed_input(VIDEO_INPUT, [np.frombuffer(raw, dtype=np.uint8)])
        pipeline.feed_input(FRAME_INDICES_INPUT, [indices.astype(np.int32)])
        try:
            frames_out, _ = pipeline.run()
        except RuntimeError as err:
            raise VideoDecodeError(f"DALI could not decode the video: {_first_line(err)}") from err
    if keep_on_device and device == "mixed":  # the frames stay on the GPU (zero-copy view, then one GPU copy
        import torch  # because the pipeline reuses its buffers on the next run)

        gpu = f"cuda:{0 if device_id is None else device_id}"
        frames = torch.as_tensor(frames_out[0], device=gpu).clone()
    else:
        if hasattr(frames_out, "as_cpu"):
            frames_out = frames_out.as_cpu()
        frames = np.array(frames_out[0])
    if frames.shape[0] != len(indices):
        raise VideoDecodeError(f"DALI returned {frames.shape[0]} frames for {len(indices)} requested")
    rotation = int(info["rotation"]) if apply_rotation else 0
    frames = rotate_frames(frames, rotation)
    height, width = frames.shape[1:3]
    return DecodedClip(
        frames=frames,
        indices=indices,
        fps=float(info["fps"]),
        width=int(width),
        height=int(height),
        total_frames=int(info["total_frames"]),
        rotation=rotation,
        truncated=False,
        duration_s=float(info["duration_s"]),
        source_size=(int(width), int(height)),
    )


# ---------------------------------------------------------------------------------------------------------------
# NVDEC with a CPU fallback (the video_decode model's "dali_mixed" decoder)
# ---------------------------------------------------------------------------------------------------------------
#: FFmpeg pixel formats NVDEC decodes for every codec of :data:`MIXED_CODECS` on every GPU DALI supports:
#: 4:2:0 at 8 bit (and 10/12 bit for HEVC, VP9, AV1). H.264 4:4:4/4:2:2 decode exists only from Blackwell
#: (NVIDIA Video Codec SDK support matrix); such streams go to the CPU decoder instead of failing.
NVDEC_PIX_FMTS = {
    "h264": frozenset({"yuv420p", "yuvj420p", "nv12"}),
    "hevc": frozenset({"yuv420p", "yuvj420p", "nv12", "yuv420p10le", "p010le", "yuv420p12le"}),
    "vp9": frozenset({"yuv420p", "yuv420p10le", "yuv420p12le"}),
    "av1": frozenset({"yuv420p", "yuv420p10le"}),
    "vp8": frozenset({"yuv420p"}),
    "mpeg4": frozenset({"yuv420p"}),
    "mjpeg": frozenset({"yuvj420p", "yuv420p"}),
}


def nvdec_support(info: dict, device: str = "mixed") -> tuple[bool, str]:
    """Whether DALI's ``device`` decoder can decode a probed stream (``mintime.video.probe`` output).

    ``"mixed"`` (NVDEC): codec in :data:`MIXED_CODECS` and a pixel format of :data:`NVDEC_PIX_FMTS`;
    ``"cpu"``: codec in :data:`CPU_CODECS`.

    Returns:
        ``(True, "")`` or ``(False, reason)``.
    """
    _check_device(device)
    codec, pix_fmt = str(info.get("codec")), str(info.get("pix_fmt"))
    if device == "cpu":
        if codec in CPU_CODECS:
            return True, ""
        return False, f"DALI's CPU decoder has no {codec} (only {', '.join(sorted(CPU_CODECS))})"
    if codec not in MIXED_CODECS:
        return False, f"NVDEC has no {codec} decoder"
    if pix_fmt not in NVDEC_PIX_FMTS[codec]:
        return False, f"NVDEC does not decode {codec} {pix_fmt} (chroma/bit depth)"
    return True, ""


class GpuVideoDecoder:
    """Decode the contract's sampled frames with DALI (NVDEC) and fall back to PyAV per request.

    ``decoder("dali_mixed")`` of the ``video_decode`` Python model (one per model instance, on that instance's
    GPU). For each video: probe (PyAV: container, frame count, fps, rotation); if :func:`nvdec_support` says
    yes, decode the sampled frames with :func:`sampled_video_decode` on ``device`` and turn them upright;
    otherwise, or when DALI fails on the stream, decode with ``mintime.video.decode_sampled``. Inputs that
    are not decodable videos raise :class:`VideoDecodeError` from the probe (no fallback needed).

    Args:
        device_id: GPU ordinal (``"mixed"``).
        device: ``"mixed"`` (production) or ``"cpu"`` (DALI's CPU decoder: for tests without a GPU).
        max_bytes: refuse larger inputs.
        supports: ``supports(probe_info) -> (ok, reason)``, which streams to give DALI (default
            :func:`nvdec_support` for ``device``); whatever it lets through that DALI then fails on is
            decoded by PyAV as well.

    Attributes:
        counts: ``{"dali": n, "pyav": n}`` videos decoded by each path.
        last_path: ``"dali"`` or ``"pyav: <reason>"`` for the last video.
    """

    def __init__(
        self,
        device_id: int = 0,
        device: str = "mixed",
        max_bytes: int = DEFAULT_MAX_BYTES,
        supports: Callable[[dict], tuple[bool, str]] | None = None,
        keep_on_device: bool = False,
    ) -> None:
        _check_device(device)
        self.device = device
        self.keep_on_device = keep_on_device
        self.supports = supports or functools.partial(nvdec_support, device=device)
        self.device_id = None if device == "cpu" else int(device_id)
        self.max_bytes = max_bytes
        self._pipeline: Pipeline | None = None
        self.counts = {"dali": 0, "pyav": 0}
        self.last_path = ""

    @property
    def pipeline(self) -> Pipeline:
        """The ``indices`` pipeline, built on first use (a GPU is needed only when a stream goes to NVDEC)."""
        if self._pipeline is None:
            self._pipeline = build_pipeline(self.device, sampling="indices", device_id=self.device_id)
        return self._pipeline

    def __call__(self, data: VideoSource, num_frames: int = DEFAULT_NUM_FRAMES) -> DecodedClip:
        """(T, H, W, 3) uint8 RGB upright frames of the sampled indices, as ``decode_sampled`` returns them."""
        from mintime.video import decode_sampled

        raw = read_source(data)
        info = probe(raw, max_bytes=self.max_bytes, count_packets=True, read_rotation=True)
        ok, why = self.supports(info)
        if ok:
            try:
                clip = decode_with_dali(
                    raw,
                    num_frames,
                    self.device,
                    pipeline=self.pipeline,
                    max_bytes=self.max_bytes,
                    info=info,
                    check_codec=False,
                    keep_on_device=self.keep_on_device,
                )
            except VideoDecodeError as err:
                why = str(err)
            else:
                self.counts["dali"] += 1
                self.last_path = "dali"
                return clip
        logger.info(
            "video_decode: CPU decoder for this %s %s stream: %s", info["codec"], info["pix_fmt"], why
        )
        clip = decode_sampled(raw, num_frames, max_bytes=self.max_bytes)
        self.counts["pyav"] += 1
        self.last_path = f"pyav: {why}"
        return clip
