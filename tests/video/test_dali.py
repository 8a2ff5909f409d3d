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
    serialize,
)
from mintime.testing_media import make_clip, read_index_code, transcode  # noqa: E402
from mintime.video import VideoDecodeError, decode_sampled, probe, sample_frame_indices  # noqa: E402

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


def test_in_graph_pipeline_samples_the_contract(clips: dict[str, Path]) -> None:
    names = ["vp9", "one", "two", "five", "vfr"]
    pipe = build_pipeline("cpu", sampling="in_graph", num_frames=8, batch_size=len(names))
    pipe.feed_input(VIDEO_INPUT, [_bytes(clips[n]) for n in names])
    frames, indices, info = pipe.run()
    for k, name in enumerate(names):
        total = probe(clips[name], count_packets=True)["total_frames"]
        expected = sample_frame_indices(total, 8)
        np.testing.assert_array_equal(np.array(indices[k]), expected)
        assert _codes(np.array(frames[k])) == expected.tolist()
        np.testing.assert_array_equal(np.array(info[k]), [0.0, total, 0.0])


def test_in_graph_pipeline_caps_decoded_frames(clips: dict[str, Path]) -> None:
    pipe = build_pipeline("cpu", sampling="in_graph", num_frames=8, max_decoded_frames=20)
    pipe.feed_input(VIDEO_INPUT, [_bytes(clips["vp9"])])
    frames, indices, info = pipe.run()
    np.testing.assert_array_equal(np.array(indices[0]), sample_frame_indices(20, 8))
    assert _codes(np.array(frames[0])) == sample_frame_indices(20, 8).tolist()
    assert np.array(info[0])[1] == 20


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


def test_serialized_cpu_pipeline_runs(clips: dict[str, Path], tmp_path: Path) -> None:
    from nvidia.dali.pipeline import Pipeline

    path = serialize(tmp_path / "1" / "model.dali", "cpu", num_frames=8, batch_size=2, num_threads=1)
    pipe = Pipeline.deserialize(
        filename=str(path),
        batch_size=2,
        num_threads=1,
        device_id=None,
        prefetch_queue_depth=1,
        exec_dynamic=True,
    )
    pipe.build()
    pipe.feed_input(VIDEO_INPUT, [_bytes(clips["vp9"]), _bytes(clips["five"])])
    _, indices, _ = pipe.run()
    assert np.array(indices[0]).tolist() == sample_frame_indices(40, 8).tolist()
    assert np.array(indices[1]).tolist() == [0, 1, 2, 3, 4]


def test_mixed_pipeline_serializes_without_a_gpu(tmp_path: Path) -> None:
    path = serialize(tmp_path / "model.dali", "mixed")
    blob = path.read_bytes()
    for name in (
        b"VIDEO",
        b"video_decode_frames",
        b"video_decode_frame_indices",
        b"video_decode_info",
        b"mixed",
    ):
        assert name in blob


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
@pytest.mark.needs_data
def test_mixed_in_graph_pipeline_real_clips(data_dir: Path) -> None:
    paths = [data_dir / "videos" / name for name in REAL_420]
    pipe = build_pipeline("mixed", sampling="in_graph", num_frames=32, batch_size=len(paths), device_id=0)
    pipe.feed_input(VIDEO_INPUT, [_bytes(p) for p in paths])
    frames, indices, info = pipe.run()
    frames = frames.as_cpu()
    for k, path in enumerate(paths):
        ref = decode_sampled(path, 32)
        np.testing.assert_array_equal(np.array(indices[k]), ref.indices)
        assert np.array(info[k])[1] == ref.total_frames
        assert np.abs(np.array(frames[k]).astype(int) - ref.frames.astype(int)).mean() < 4


@pytest.mark.needs_cuda
def test_mixed_pipeline_recovers_after_a_failed_decode(clips: dict[str, Path]) -> None:
    pipe = build_pipeline("mixed", device_id=0)
    pipe.feed_input(VIDEO_INPUT, [np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)])
    pipe.feed_input(FRAME_INDICES_INPUT, [np.array([0], np.int32)])
    with pytest.raises(RuntimeError):
        pipe.run()
    clip = decode_with_dali(clips["h264"].read_bytes(), 4, "mixed", pipeline=pipe)
    assert _codes(clip.frames) == sample_frame_indices(10, 4).tolist()
