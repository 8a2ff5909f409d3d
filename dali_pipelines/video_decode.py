"""Video decoding and frame sampling with NVIDIA DALI, under the same sampling contract as :mod:`mintime.video`.

``fn.decoders.video`` (DALI 2.1.1, the image's, and 2.4.0: the same arguments) takes the encoded file from ``fn.external_source`` and decodes VP8, VP9 and
MJPEG on the CPU, and also H.264, HEVC, AV1 and MPEG-4 with ``device="mixed"`` (NVDEC). Its ``frames``
argument accepts a per-sample tensor (an *argument input*), and out-of-range indices are silently filled
with black frames (``fill_value``), so indices must be right before they reach the decoder.

The contract (:func:`mintime.video.sample_frame_indices`) needs the clip's frame count ``N``, which no DALI
operator reports before decoding. :func:`sampled_video_decode` therefore takes the indices as a second input,
``FRAME_INDICES``, computed by the caller from a cheap probe (container header and a demux pass, no decoding:
10-20 ms for the shared 720p/1080p clips); the decoder decodes only what those frames need.

Deployment: the service decodes with it *inside* the ``video_decode`` Python model (decoder ``dali_mixed``,
:class:`GpuVideoDecoder`): a PyAV probe gives ``N``, fps and rotation, NVDEC decodes only the sampled frames
(GPU memory: the ``T`` output frames plus the decoder's surfaces, whatever the clip's length), the frames are
turned upright as the PyAV path does, and a stream NVDEC cannot decode (H.264 4:4:4 or 4:2:2 before
Blackwell, codecs it lacks, or any decode error) is decoded by PyAV for that request. When the NVDEC
pipeline cannot even be built (no ``libnvcuvid.so`` in the container: ``NVIDIA_DRIVER_CAPABILITIES`` lacks
``video``), the decoder says so once and decodes everything with PyAV. Triton's DALI backend is not used: the
contract's single-input ``video_decode`` cannot sample uniformly there (no frame count before decoding, no
per-request fallback).

Failed decodes: a default DALI pipeline that fails on one input also fails the next; every pipeline here is
built with ``prefetch_queue_depth=1, exec_dynamic=True``, which recovers (tested: a bad input, then a good one).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable

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
    "sampled_video_decode",
    "build_pipeline",
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


def _check_device(device: str) -> None:
    if device not in ("cpu", "mixed"):
        raise ValueError(f"device must be 'cpu' or 'mixed', got {device!r}")


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


def build_pipeline(
    device: str = "cpu",
    *,
    batch_size: int = 1,
    num_threads: int = 2,
    device_id: int | None = None,
    build: bool = True,
) -> Pipeline:
    """Create (and build) the :func:`sampled_video_decode` pipeline, recovering after a failed decode.

    Args:
        device: ``"cpu"`` or ``"mixed"`` (GPU; ``device_id`` defaults to 0).
        batch_size: videos per iteration (the maximum; a smaller batch may be fed).
        num_threads: CPU worker threads.
        device_id: GPU ordinal; None for a CPU-only pipeline.
        build: build it now (needs a GPU, and NVDEC's ``libnvcuvid.so``, for ``"mixed"``); False to only
            define it (``Pipeline.serialize()`` then checks the graph against the installed DALI, no GPU
            needed: what the image build runs).

    Returns:
        The pipeline (built when ``build``).
    """
    _check_device(device)
    if device == "mixed" and device_id is None and build:
        device_id = 0
    pipe = sampled_video_decode(
        device=device,
        batch_size=batch_size,
        num_threads=num_threads,
        device_id=device_id,
        prefetch_queue_depth=1,
        exec_dynamic=True,
    )
    if build:
        pipe.build()
    return pipe


@functools.lru_cache(maxsize=4)
def _shared_pipeline(device: str, device_id: int | None) -> tuple[Pipeline, threading.Lock]:
    return build_pipeline(device, device_id=device_id), threading.Lock()


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

    If the pipeline cannot be built at all (whatever it raises: no GPU, no ``libnvcuvid.so`` because the
    container lacks the ``video`` driver capability, a DALI/driver mismatch), the decoder warns once (through
    ``warn``: the model's log) and decodes every later video with PyAV; :attr:`unavailable` says why. A
    request never fails because NVDEC is missing.

    Args:
        device_id: GPU ordinal (``"mixed"``).
        device: ``"mixed"`` (production) or ``"cpu"`` (DALI's CPU decoder: for tests without a GPU).
        max_bytes: refuse larger inputs.
        supports: ``supports(probe_info) -> (ok, reason)``, which streams to give DALI (default
            :func:`nvdec_support` for ``device``); whatever it lets through that DALI then fails on is
            decoded by PyAV as well.
        keep_on_device: NVDEC frames stay on the GPU (a torch tensor; see :func:`decode_with_dali`).
        build_pipeline_fn: ``() -> Pipeline``, how the pipeline is built (default: :func:`build_pipeline` on
            ``device``/``device_id``).
        warn: called once with the message when the pipeline cannot be built (default: ``logger.warning``).

    Attributes:
        counts: ``{"dali": n, "pyav": n}`` videos decoded by each path.
        last_path: ``"dali"`` or ``"pyav: <reason>"`` for the last video.
        unavailable: None, or why the DALI pipeline could not be built (every video then goes to PyAV).
    """

    def __init__(
        self,
        device_id: int = 0,
        device: str = "mixed",
        max_bytes: int = DEFAULT_MAX_BYTES,
        supports: Callable[[dict], tuple[bool, str]] | None = None,
        keep_on_device: bool = False,
        build_pipeline_fn: Callable[[], Pipeline] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        _check_device(device)
        self.device = device
        self.keep_on_device = keep_on_device
        self.supports = supports or functools.partial(nvdec_support, device=device)
        self.device_id = None if device == "cpu" else int(device_id)
        self.max_bytes = max_bytes
        self._build = build_pipeline_fn or functools.partial(build_pipeline, device, device_id=self.device_id)
        self._warn = warn or logger.warning
        self._pipeline: Pipeline | None = None
        self.unavailable: str | None = None
        self.counts = {"dali": 0, "pyav": 0}
        self.last_path = ""

    def prepare(self) -> bool:
        """Build the pipeline now (the model calls this at load time). Returns whether DALI decodes."""
        if self._pipeline is None and self.unavailable is None:
            try:
                self._pipeline = self._build()
            except Exception as err:  # noqa: BLE001 - any build failure means "no NVDEC here", never a failed request
                self.unavailable = f"{type(err).__name__}: {_first_line(err)}"
                self._warn(
                    f"video_decode: the DALI {self.device} pipeline cannot be built on device "
                    f"{self.device_id} ({self.unavailable}); this instance decodes every video with PyAV "
                    "(CPU). For NVDEC the container needs NVIDIA_DRIVER_CAPABILITIES with 'video' "
                    "(libnvcuvid.so) and a GPU."
                )
        return self._pipeline is not None

    @property
    def pipeline(self) -> Pipeline | None:
        """The ``indices`` pipeline, built on first use (None when it cannot be built: see :attr:`unavailable`)."""
        self.prepare()
        return self._pipeline

    def __call__(self, data: VideoSource, num_frames: int = DEFAULT_NUM_FRAMES) -> DecodedClip:
        """(T, H, W, 3) uint8 RGB upright frames of the sampled indices, as ``decode_sampled`` returns them."""
        from mintime.video import decode_sampled

        raw = read_source(data)
        info = probe(raw, max_bytes=self.max_bytes, count_packets=True, read_rotation=True)
        ok, why = self.supports(info)
        if ok and self.pipeline is None:
            ok, why = False, f"no DALI pipeline ({self.unavailable})"
        if ok:
            try:
                clip = decode_with_dali(
                    raw,
                    num_frames,
                    self.device,
                    pipeline=self.pipeline,
                    device_id=self.device_id,
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
