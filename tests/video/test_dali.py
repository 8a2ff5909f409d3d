"""DALI video decoding (dali_pipelines.video_decode) against PyAV and the sampling contract.

CPU tests use codecs DALI decodes on the CPU (VP9, VP8, MJPEG): synthetic clips, and a real clip transcoded
to VP9 with PyAV. Frames that carry their index code prove that both decoders return the same frames;
pixel values differ only by the YUV->RGB conversion (measured and bounded below). ``mixed`` (NVDEC) tests
need a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nvidia.dali")

from dali_pipelines.video_decode import (  # noqa: E402
    FRAME_INDICES_INPUT,
    VIDEO_INPUT,
    build_pipeline,
    decode_with_dali,
)
from mintime.video import VideoDecodeError, decode_sampled, probe, sample_frame_indices  # noqa: E402
from tests.helpers.media import make_clip, read_index_code, transcode  # noqa: E402

pytestmark = pytest.mark.needs_dali

SIZE = (96, 64)
VFR_TIMES = [0.0, 0.04, 0.08, 0.3, 0.32, 0.5, 0.9, 0.93, 0.96, 1.5]
# swscale (PyAV) and DALI convert YUV to RGB differently (DALI: BT.601 limited range, bilinear chroma
# upsampling; measured max |diff| 15 / mean 1.2 on real footage, up to ~40 at the synthetic clips' hard
# black/white edges). Frame identity is checked exactly through the index codes instead.
MAX_ABS_DIFF_SYNTHETIC = 48
MEAN_ABS_DIFF = 2.5


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("dali_clips")
    return {
        "vp9": make_clip(d / "vp9.webm", frames=40, size=SIZE, codec="libvpx-vp9"),
        "vp8": make_clip(d / "vp8.webm", frames=20, size=SIZE, codec="libvpx"),
        "mjpeg": make_clip(d / "mjpeg.avi", frames=12, size=SIZE, codec="mjpeg"),
        "one": make_clip(d / "one.webm", frames=1, size=SIZE, codec="libvpx-vp9"),
        "two": make_clip(d / "two.webm", frames=2, size=SIZE, codec="libvpx-vp9"),
        "five": make_clip(d / "five.webm", frames=5, size=SIZE, codec="libvpx-vp9"),
        "vfr": make_clip(
            d / "vfr.webm", frames=len(VFR_TIMES), size=SIZE, codec="libvpx-vp9", timestamps=VFR_TIMES
        ),
        "h264": make_clip(d / "h264.mp4", frames=10, size=SIZE),
    }


def _bytes(path: Path) -> np.ndarray:
    return np.frombuffer(path.read_bytes(), np.uint8)


def _codes(frames: np.ndarray) -> list[int]:
    return [read_index_code(f) for f in frames]


@pytest.mark.parametrize("name", ["vp9", "vp8", "mjpeg", "one", "two", "five", "vfr"])
def test_cpu_decode_matches_pyav(clips: dict[str, Path], name: str) -> None:
    data = clips[name].read_bytes()
    dali = decode_with_dali(data, 8, "cpu")
    ref = decode_sampled(data, 8)
    np.testing.assert_array_equal(dali.indices, ref.indices)
    np.testing.assert_array_equal(dali.indices, sample_frame_indices(ref.total_frames, 8))
    assert _codes(dali.frames) == dali.indices.tolist()
    assert dali.frames.shape == ref.frames.shape and dali.frames.dtype == np.uint8
    assert (dali.fps, dali.total_frames, dali.width, dali.height) == (
        ref.fps,
        ref.total_frames,
        ref.width,
        ref.height,
    )
    diff = np.abs(dali.frames.astype(int) - ref.frames.astype(int))
    assert diff.max() <= MAX_ABS_DIFF_SYNTHETIC and diff.mean() < MEAN_ABS_DIFF


def test_cpu_decode_applies_rotation(tmp_path: Path) -> None:
    path = make_clip(tmp_path / "rot.webm", frames=6, size=SIZE, codec="libvpx-vp9", rotation=90)
    dali = decode_with_dali(path.read_bytes(), 4)
    ref = decode_sampled(path, 4)
    assert dali.rotation == ref.rotation == 90
    assert dali.frames.shape == ref.frames.shape == (4, SIZE[0], SIZE[1], 3)
    assert np.abs(dali.frames.astype(int) - ref.frames.astype(int)).mean() < MEAN_ABS_DIFF
    stored = decode_with_dali(path.read_bytes(), 4, apply_rotation=False)  # DALI itself does not rotate
    assert stored.rotation == 0 and stored.frames.shape == (4, SIZE[1], SIZE[0], 3)
    assert _codes(stored.frames) == stored.indices.tolist()


def _bt601_bilinear_rgb(yuv420p: np.ndarray, width: int, height: int) -> np.ndarray:
    """Reference YUV 4:2:0 (limited range, BT.601) -> RGB with bilinear chroma upsampling (DALI's CPU path)."""
    import cv2

    y = yuv420p[:height].astype(np.float64)
    u = yuv420p[height : height + height // 4].reshape(height // 2, width // 2).astype(np.float64)
    v = yuv420p[height + height // 4 :].reshape(height // 2, width // 2).astype(np.float64)
    u = cv2.resize(u, (width, height), interpolation=cv2.INTER_LINEAR) - 128
    v = cv2.resize(v, (width, height), interpolation=cv2.INTER_LINEAR) - 128
    y = (y - 16) * 255 / 219
    s = 255 / 224
    r = y + s * 1.402 * v
    g = y - s * (0.344136 * u + 0.714136 * v)
    b = y + s * 1.772 * u
    return np.clip(np.stack([r, g, b], -1).round(), 0, 255)


@pytest.mark.needs_data
def test_cpu_decode_real_clip_transcoded_to_vp9(data_dir: Path, tmp_path: Path) -> None:
    import av

    src = data_dir / "videos" / "two_people_one_fake_720p.mp4"
    vp9 = transcode(src, tmp_path / "two_people.webm", "libvpx-vp9", max_frames=30, size=(640, 360))
    dali = decode_with_dali(vp9.read_bytes(), 8)
    ref = decode_sampled(vp9, 8)
    np.testing.assert_array_equal(dali.indices, ref.indices)
    np.testing.assert_array_equal(dali.indices, sample_frame_indices(30, 8))
    diff = np.abs(dali.frames.astype(int) - ref.frames.astype(int))
    assert diff.max() <= 24 and diff.mean() < 2.0  # measured: max 15, mean 1.2 (colour conversion only)
    # DALI's own conversion, pinned: BT.601 limited range with bilinear chroma, within 1 level
    with av.open(str(vp9)) as c:
        yuv = {
            i: f.to_ndarray(format="yuv420p")
            for i, f in enumerate(c.decode(video=0))
            if i in set(dali.indices.tolist())
        }
    for k, i in enumerate(dali.indices.tolist()):
        expected = _bt601_bilinear_rgb(yuv[i], 640, 360)
        assert np.abs(dali.frames[k] - expected).max() <= 1


def test_pipeline_recovers_after_a_failed_decode(clips: dict[str, Path]) -> None:
    pipe = build_pipeline("cpu")
    garbage = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)
    good = _bytes(clips["vp9"])
    for data, idx in [(garbage, [0]), (good, [1, 39]), (np.zeros(0, np.uint8), [0]), (good, [2, 3])]:
        pipe.feed_input(VIDEO_INPUT, [data])
        pipe.feed_input(FRAME_INDICES_INPUT, [np.array(idx, np.int32)])
        if data is good:
            frames, indices = pipe.run()
            assert _codes(np.array(frames[0])) == idx
            assert np.array(indices[0]).dtype == np.int64
        else:
            with pytest.raises(RuntimeError):
                pipe.run()


def test_decode_with_dali_errors_then_success(clips: dict[str, Path]) -> None:
    with pytest.raises(VideoDecodeError, match="not a video: unrecognised or unaccepted container"):
        decode_with_dali(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8))
    with pytest.raises(VideoDecodeError, match="empty input"):
        decode_with_dali(b"")
    with pytest.raises(VideoDecodeError, match="unsupported codec for the DALI cpu decoder: h264"):
        decode_with_dali(clips["h264"].read_bytes(), 4, "cpu")
    clip = decode_with_dali(clips["vp9"].read_bytes(), 4)
    assert _codes(clip.frames) == sample_frame_indices(40, 4).tolist()


# --- GPU (NVDEC) -----------------------------------------------------------------------------------------------


# H.264 4:2:0 clips; the two FaceForensics++ clips are H.264 High 4:4:4, see the next test
REAL_420 = ("street_crowd_1080p.mp4", "two_people_one_fake_720p.mp4", "dfdc_portrait_fake_720x1280.mp4")


@pytest.mark.needs_cuda
@pytest.mark.needs_data
def test_mixed_decode_real_h264_matches_pyav(data_dir: Path) -> None:
    for name in REAL_420:
        data = (data_dir / "videos" / name).read_bytes()
        gpu = decode_with_dali(data, 16, "mixed")
        ref = decode_sampled(data, 16)
        np.testing.assert_array_equal(gpu.indices, ref.indices)
        assert gpu.frames.shape == ref.frames.shape
        assert np.abs(gpu.frames.astype(int) - ref.frames.astype(int)).mean() < 4


@pytest.mark.needs_cuda
@pytest.mark.needs_data
def test_mixed_decode_h264_444_matches_pyav_or_fails_cleanly(data_dir: Path) -> None:
    data = (data_dir / "videos" / "ffpp_634_real_720p.mp4").read_bytes()
    assert probe(data)["pix_fmt"] == "yuv444p"
    try:
        gpu = decode_with_dali(data, 8, "mixed")
    except VideoDecodeError as err:  # NVDEC before Blackwell has no H.264 4:4:4 profile
        assert "DALI could not decode" in str(err)
        return
    ref = decode_sampled(data, 8)
    np.testing.assert_array_equal(gpu.indices, ref.indices)
    assert np.abs(gpu.frames.astype(int) - ref.frames.astype(int)).mean() < 4


@pytest.mark.needs_cuda
def test_mixed_pipeline_recovers_after_a_failed_decode(clips: dict[str, Path]) -> None:
    pipe = build_pipeline("mixed", device_id=0)
    pipe.feed_input(VIDEO_INPUT, [np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)])
    pipe.feed_input(FRAME_INDICES_INPUT, [np.array([0], np.int32)])
    with pytest.raises(RuntimeError):
        pipe.run()
    clip = decode_with_dali(clips["h264"].read_bytes(), 4, "mixed", pipeline=pipe)
    assert _codes(clip.frames) == sample_frame_indices(10, 4).tolist()


# --- the service's decoder: NVDEC with a CPU fallback per request ------------------------------------------------

SHARED_420 = {"street_crowd_1080p.mp4", "two_people_one_fake_720p.mp4", "dfdc_portrait_fake_720x1280.mp4"}
SHARED_444 = {"ffpp_634_real_720p.mp4", "ffpp_634_660_faceswap_fake_720p.mp4"}


@pytest.mark.needs_data
def test_nvdec_support_of_the_shared_clips(data_dir: Path):
    from dali_pipelines.video_decode import nvdec_support

    for path in sorted((data_dir / "videos").glob("*.mp4")):
        info = probe(path)
        ok, why = nvdec_support(info, "mixed")
        if path.name in SHARED_444:
            assert info["pix_fmt"] == "yuv444p" and not ok
            assert why == "NVDEC does not decode h264 yuv444p (chroma/bit depth)"
        else:
            assert path.name in SHARED_420 and ok and why == "", (path.name, why)
        assert nvdec_support(info, "cpu") == (False, "DALI's CPU decoder has no h264 (only mjpeg, vp8, vp9)")
    assert nvdec_support({"codec": "prores", "pix_fmt": "yuv422p10le"}) == (
        False,
        "NVDEC has no prores decoder",
    )
    assert nvdec_support({"codec": "hevc", "pix_fmt": "yuv420p10le"}) == (True, "")


@pytest.mark.needs_data
def test_gpu_decoder_sends_h264_444_to_pyav_without_touching_the_gpu(data_dir: Path):
    from dali_pipelines.video_decode import GpuVideoDecoder

    decoder = GpuVideoDecoder(device_id=0, device="mixed")
    data = (data_dir / "videos" / "ffpp_634_real_720p.mp4").read_bytes()
    clip = decoder(data, 16)
    ref = decode_sampled(data, 16)
    assert decoder.last_path == "pyav: NVDEC does not decode h264 yuv444p (chroma/bit depth)"
    assert decoder.counts == {"dali": 0, "pyav": 1} and decoder._pipeline is None, (
        "no DALI pipeline was built"
    )
    np.testing.assert_array_equal(clip.indices, ref.indices)
    np.testing.assert_array_equal(clip.frames, ref.frames)
    assert (clip.fps, clip.total_frames, clip.rotation) == (25.0, 338, 0)


def test_gpu_decoder_uses_dali_where_it_can_and_pyav_where_dali_fails(clips: dict[str, Path]):
    from dali_pipelines.video_decode import GpuVideoDecoder

    decoder = GpuVideoDecoder(device="cpu")  # DALI's CPU decoder stands in for NVDEC here
    vp9 = decoder(clips["vp9"].read_bytes(), 8)
    assert decoder.last_path == "dali" and _codes(vp9.frames) == sample_frame_indices(40, 8).tolist()
    h264 = decoder(clips["h264"].read_bytes(), 4)
    assert decoder.last_path == "pyav: DALI's CPU decoder has no h264 (only mjpeg, vp8, vp9)"
    assert _codes(h264.frames) == sample_frame_indices(10, 4).tolist()
    # a stream the check lets through but DALI fails on at decode time (as NVDEC refusing a profile):
    trusting = GpuVideoDecoder(device="cpu", supports=lambda info: (True, ""))
    clip = trusting(clips["h264"].read_bytes(), 4)
    assert trusting.last_path.startswith("pyav: DALI could not decode the video")
    np.testing.assert_array_equal(clip.frames, decode_sampled(clips["h264"], 4).frames)
    again = trusting(clips["vp9"].read_bytes(), 4)  # the pipeline recovered from the failure
    assert trusting.last_path == "dali" and _codes(again.frames) == sample_frame_indices(40, 4).tolist()
    assert trusting.counts == {"dali": 1, "pyav": 1}
    with pytest.raises(VideoDecodeError, match="not a video"):
        trusting(np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8), 4)


def test_gpu_decoder_applies_rotation_and_reports_fps(tmp_path: Path):
    from dali_pipelines.video_decode import GpuVideoDecoder

    path = make_clip(tmp_path / "rot.webm", frames=6, size=SIZE, codec="libvpx-vp9", rotation=270, fps=30)
    decoder = GpuVideoDecoder(device="cpu")
    clip = decoder(path.read_bytes(), 4)
    ref = decode_sampled(path, 4)
    assert decoder.last_path == "dali"
    assert clip.rotation == ref.rotation == 270 and clip.fps == ref.fps == 30.0
    assert clip.frames.shape == ref.frames.shape == (4, SIZE[0], SIZE[1], 3)
    assert np.abs(clip.frames.astype(int) - ref.frames.astype(int)).mean() < MEAN_ABS_DIFF


def test_gpu_decoder_falls_back_to_pyav_when_the_pipeline_cannot_be_built(clips: dict[str, Path]):
    """A pipeline build that raises anything (a container without libnvcuvid.so raises RuntimeError): one
    warning, every video decoded by PyAV, no request fails; bad input still fails precisely."""
    from dali_pipelines.video_decode import GpuVideoDecoder

    calls, warnings = [], []

    def no_nvdec():
        calls.append(1)
        raise RuntimeError(
            "Error when executing Mixed operator decoders__Video: libnvcuvid.so: cannot open\nmore"
        )

    decoder = GpuVideoDecoder(device="cpu", build_pipeline_fn=no_nvdec, warn=warnings.append)
    for name, n in [("vp9", 8), ("mjpeg", 4), ("vp9", 3)]:
        clip = decoder(clips[name].read_bytes(), n)
        ref = decode_sampled(clips[name], n)
        np.testing.assert_array_equal(clip.frames, ref.frames)
        np.testing.assert_array_equal(clip.indices, ref.indices)
        assert decoder.last_path == (
            "pyav: no DALI pipeline (RuntimeError: Error when executing Mixed operator decoders__Video: "
            "libnvcuvid.so: cannot open)"
        )
    assert decoder.counts == {"dali": 0, "pyav": 3}
    assert len(calls) == 1, "the build is tried once per instance"
    assert len(warnings) == 1 and "decodes every video with PyAV" in warnings[0]
    assert "NVIDIA_DRIVER_CAPABILITIES" in warnings[0] and "libnvcuvid.so" in warnings[0]
    assert decoder.prepare() is False and decoder.pipeline is None
    with pytest.raises(VideoDecodeError, match="not a video"):
        decoder(np.random.default_rng(5).integers(0, 256, 4096, dtype=np.uint8), 4)
    working = GpuVideoDecoder(device="cpu", warn=warnings.append)  # the real builder: DALI decodes
    assert working.prepare() is True and working.unavailable is None
    working(clips["vp9"].read_bytes(), 4)
    assert working.last_path == "dali" and len(warnings) == 1


def test_mixed_pipeline_is_defined_and_serialized_without_a_gpu():
    """What the image build runs with the image's DALI: the NVDEC graph's operators and arguments exist."""
    pipe = build_pipeline("mixed", build=False)
    blob = pipe.serialize()
    for name in (b"VIDEO", b"FRAME_INDICES", b"video_decode_frames", b"video_decode_frame_indices", b"mixed"):
        assert name in blob
    assert (
        "build_pipeline('mixed', build=False).serialize()"
        in (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    )


def test_video_decode_model_with_the_dali_mixed_decoder(monkeypatch, data_dir: Path, tmp_path: Path):
    """model.py's `dali_mixed` decoder: the 4:4:4 clip never reaches NVDEC. Where the NVDEC pipeline cannot be
    built (this machine: no GPU, as a container without libnvcuvid.so), the model loads, says so once in its
    log, and answers with PyAV."""
    from tests.model_repository import fake_pb_utils as pb
    from tests.model_repository.test_model_py import load_model_py, model_args

    mod = load_model_py("video_decode", monkeypatch)
    model = mod.TritonPythonModel()
    args = model_args("video_decode", num_frames="16", decoder="dali_mixed")
    args["model_instance_kind"], args["model_instance_device_id"] = "GPU", "0"
    model.initialize(args)
    data = np.frombuffer((data_dir / "videos" / "ffpp_634_660_faceswap_fake_720p.mp4").read_bytes(), np.uint8)
    (response,) = model.execute([pb.request(VIDEO=data[None])])
    assert not response.has_error()
    ref = decode_sampled(data, 16)
    np.testing.assert_array_equal(response.outputs["video_decode_frames"][0], ref.frames)
    np.testing.assert_array_equal(response.outputs["video_decode_info"][0], [25.0, 338, 0])
    assert model.decode.last_path.startswith("pyav: NVDEC does not decode h264 yuv444p")
    import torch

    if not torch.cuda.is_available():  # the real DALI refused to build a GPU pipeline at load time
        assert model.decode.unavailable.startswith("RuntimeError: ")
        warnings = [m for m in pb.Logger.messages if "cannot be built" in m]
        assert len(warnings) == 1 and "decodes every video with PyAV" in warnings[0]
        assert any("dali_mixed unavailable, PyAV instead (RuntimeError" in m for m in pb.Logger.messages)
        vp9 = np.frombuffer(
            make_clip(tmp_path / "v.webm", frames=12, size=SIZE, codec="libvpx-vp9").read_bytes(), np.uint8
        )
        (response,) = model.execute([pb.request(VIDEO=vp9[None])])  # NVDEC would take this one: PyAV does
        assert not response.has_error()
        assert _codes(response.outputs["video_decode_frames"][0]) == sample_frame_indices(12, 16).tolist()
        assert model.decode.last_path.startswith("pyav: no DALI pipeline (RuntimeError")


@pytest.mark.needs_cuda
@pytest.mark.needs_data
def test_gpu_decoder_on_the_shared_clips(data_dir: Path):
    """NVDEC for the 4:2:0 clips (close to PyAV), PyAV for the 4:4:4 ones (identical to PyAV)."""
    from dali_pipelines.video_decode import GpuVideoDecoder

    decoder = GpuVideoDecoder(device_id=0)
    for path in sorted((data_dir / "videos").glob("*.mp4")):
        clip = decoder(path.read_bytes(), 16)
        ref = decode_sampled(path, 16)
        np.testing.assert_array_equal(clip.indices, ref.indices)
        assert (clip.fps, clip.rotation, clip.frames.shape) == (ref.fps, ref.rotation, ref.frames.shape)
        if path.name in SHARED_444:
            assert decoder.last_path.startswith("pyav: NVDEC does not decode h264 yuv444p")
            np.testing.assert_array_equal(clip.frames, ref.frames)
        else:
            assert decoder.last_path == "dali", (path.name, decoder.last_path)
            assert np.abs(clip.frames.astype(int) - ref.frames.astype(int)).mean() < 4
    assert decoder.counts == {"dali": len(SHARED_420), "pyav": len(SHARED_444)}


@pytest.mark.needs_cuda
@pytest.mark.needs_data
def test_gpu_decoder_keeps_nvdec_frames_on_the_device(data_dir: Path):
    """keep_on_device: NVDEC frames come back as a CUDA tensor (the Triton model hands it on by DLPack), equal to
    the host copy; rotation applied on the device."""
    import torch

    from dali_pipelines.video_decode import GpuVideoDecoder

    host, device = GpuVideoDecoder(device_id=0), GpuVideoDecoder(device_id=0, keep_on_device=True)
    for name in sorted(SHARED_420):
        data = (data_dir / "videos" / name).read_bytes()
        a, b = host(data, 8), device(data, 8)
        assert isinstance(b.frames, torch.Tensor) and b.frames.is_cuda and b.frames.dtype == torch.uint8
        np.testing.assert_array_equal(b.frames.cpu().numpy(), a.frames)
        assert (b.width, b.height, b.rotation) == (a.width, a.height, a.rotation)
