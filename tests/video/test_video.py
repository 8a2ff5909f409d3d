"""PyAV decoding and the frame-sampling contract (mintime.video), on synthetic clips and the shared footage."""

from __future__ import annotations

import logging
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from mintime.video import (
    DecodedClip,
    VideoDecodeError,
    decode_sampled,
    iter_frames,
    probe,
    rotate_frames,
    sample_frame_indices,
)
from tests.helpers.media import index_pattern, make_clip, read_index_code

SIZE = (96, 64)  # (width, height) of the synthetic clips

# name: (width, height, fps, frames) in display orientation, from ../shared/data/README.md
REAL = {
    "street_crowd_1080p.mp4": (1920, 1080, 25.0, 105),
    "two_people_one_fake_720p.mp4": (1280, 720, 20.0, 113),
    "ffpp_634_real_720p.mp4": (1280, 720, 25.0, 338),
    "ffpp_634_660_faceswap_fake_720p.mp4": (1280, 720, 25.0, 338),
    "dfdc_portrait_fake_720x1280.mp4": (720, 1280, 30.0, 301),
}
VFR_TIMES = [0.0, 0.04, 0.08, 0.3, 0.32, 0.5, 0.9, 0.93, 0.96, 1.5]


def codes(clip: DecodedClip) -> list[int]:
    return [read_index_code(f) for f in clip.frames]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "h264": make_clip(d / "h264.mp4", frames=40, size=SIZE),
        "vp9": make_clip(d / "vp9.webm", frames=40, size=SIZE, codec="libvpx-vp9"),
        "mjpeg": make_clip(d / "mjpeg.avi", frames=12, size=SIZE, codec="mjpeg"),
        "one": make_clip(d / "one.mp4", frames=1, size=SIZE),
        "two": make_clip(d / "two.webm", frames=2, size=SIZE, codec="libvpx-vp9"),
        "vfr": make_clip(d / "vfr.mp4", frames=len(VFR_TIMES), size=SIZE, timestamps=VFR_TIMES),
        "faststart": make_clip(
            d / "faststart.mp4", frames=60, size=(128, 96), container_options={"movflags": "faststart"}
        ),
    }


# --- the sampling contract -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "num", "expected"),
    [
        (10, 4, [0, 3, 6, 9]),
        (40, 8, [0, 6, 11, 17, 22, 28, 33, 39]),
        (113, 4, [0, 37, 75, 112]),  # 37.33 -> 37, 74.67 -> 75
        (5, 32, [0, 1, 2, 3, 4]),
        (2, 32, [0, 1]),
        (1, 32, [0]),
        (100, 1, [0]),
        (3, 2, [0, 2]),
        (4, 3, [0, 2, 3]),  # 1.5 rounds half up
        (0, 8, []),
    ],
)
def test_sample_frame_indices_examples(total: int, num: int, expected: list[int]) -> None:
    idx = sample_frame_indices(total, num)
    assert idx.dtype == np.int64
    assert idx.tolist() == expected


def test_sample_frame_indices_properties() -> None:
    for total in range(1, 160):
        for num in range(1, 40):
            idx = sample_frame_indices(total, num).tolist()
            t = min(total, num)
            assert len(idx) == t
            assert idx[0] == 0 and all(b > a for a, b in zip(idx, idx[1:], strict=False))
            if t > 1:
                assert idx[-1] == total - 1
                # round half up of linspace(0, N-1, T'), computed exactly
                exact = [int(Fraction(i * (total - 1), t - 1) + Fraction(1, 2)) for i in range(t)]
                assert idx == exact
                gaps = np.diff(idx)
                assert gaps.max() - gaps.min() <= 1


def test_sample_frame_indices_matches_float_linspace_on_real_counts() -> None:
    for total in (105, 113, 301, 338):
        ref = np.floor(np.linspace(0, total - 1, 32) + 0.5).astype(np.int64)
        np.testing.assert_array_equal(sample_frame_indices(total, 32), ref)


def test_sample_frame_indices_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_frames"):
        sample_frame_indices(10, 0)
    with pytest.raises(ValueError, match="total_frames"):
        sample_frame_indices(-1, 4)


# --- synthetic clips -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "total", "count_source"),
    [("h264", 40, "container"), ("vp9", 40, "demux"), ("mjpeg", 12, "container")],
)
def test_decode_sampled_picks_the_contract_frames(
    clips: dict[str, Path], name: str, total: int, count_source: str
) -> None:
    info = probe(clips[name])
    assert (info["total_frames"], info["frame_count_source"]) == (total, count_source)
    assert (info["width"], info["height"], info["rotation"]) == (*SIZE, 0)
    assert info["fps"] == pytest.approx(25.0)
    clip = decode_sampled(clips[name], 8)
    expected = sample_frame_indices(total, 8)
    np.testing.assert_array_equal(clip.indices, expected)
    assert clip.frames.shape == (8, SIZE[1], SIZE[0], 3) and clip.frames.dtype == np.uint8
    assert codes(clip) == expected.tolist()  # the pixels really are those frames
    assert (clip.total_frames, clip.width, clip.height, clip.rotation, clip.truncated) == (
        total,
        *SIZE,
        0,
        False,
    )
    assert clip.fps == pytest.approx(25.0)
    assert clip.duration_s == pytest.approx(total / 25.0, abs=0.05)
    np.testing.assert_allclose(clip.info(), [25.0, total, 0.0])


def test_decoded_rgb_matches_what_was_drawn(clips: dict[str, Path]) -> None:
    clip = decode_sampled(clips["mjpeg"], 3)
    for frame, i in zip(clip.frames, clip.indices, strict=True):
        diff = np.abs(frame.astype(int) - index_pattern(int(i), *SIZE).astype(int))
        assert diff.mean() < 6, "RGB channel order or colour conversion is off"


@pytest.mark.parametrize(("name", "expected"), [("one", [0]), ("two", [0, 1])])
def test_very_short_clips(clips: dict[str, Path], name: str, expected: list[int]) -> None:
    clip = decode_sampled(clips[name], 32)
    assert clip.indices.tolist() == expected
    assert codes(clip) == expected
    assert clip.total_frames == len(expected) and not clip.truncated


def test_variable_frame_rate_clip(clips: dict[str, Path]) -> None:
    with av.open(str(clips["vfr"])) as c:  # the file really is VFR
        pts = [f.time for f in c.decode(video=0)]
    assert pts == pytest.approx(VFR_TIMES, abs=1e-3)
    clip = decode_sampled(clips["vfr"], 6)
    expected = sample_frame_indices(len(VFR_TIMES), 6)
    np.testing.assert_array_equal(clip.indices, expected)
    assert codes(clip) == expected.tolist()
    assert clip.total_frames == len(VFR_TIMES)
    assert 0 < clip.fps < 25 and np.isfinite(clip.fps)
    assert clip.duration_s == pytest.approx(1.5, abs=0.1)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_makes_frames_upright(tmp_path: Path, rotation: int) -> None:
    upright = [index_pattern(i, *SIZE) for i in range(4)]  # display orientation, 96 wide x 64 high
    stored = [rotate_frames(u, -rotation) for u in upright]  # what a rotated camera writes
    h, w = stored[0].shape[:2]
    path = make_clip(tmp_path / "rot.mp4", frames=4, size=(w, h), draw=lambda i: stored[i], rotation=rotation)
    info = probe(path)
    assert info["rotation"] == rotation % 360
    assert (info["width"], info["height"]) == SIZE and (info["coded_width"], info["coded_height"]) == (w, h)
    clip = decode_sampled(path, 4)
    assert clip.rotation == rotation % 360
    assert clip.frames.shape == (4, SIZE[1], SIZE[0], 3) and (clip.width, clip.height) == SIZE
    assert clip.source_size == SIZE
    assert codes(clip) == [0, 1, 2, 3]
    assert np.abs(clip.frames[2].astype(int) - upright[2].astype(int)).mean() < 8
    every = list(iter_frames(path))
    assert every[3][1].shape == (SIZE[1], SIZE[0], 3) and read_index_code(every[3][1]) == 3


def test_max_side_downscales(clips: dict[str, Path]) -> None:
    clip = decode_sampled(clips["h264"], 4, max_side=48)
    assert clip.frames.shape == (4, 32, 48, 3)
    assert (clip.width, clip.height, clip.source_size) == (48, 32, SIZE)
    assert codes(clip) == sample_frame_indices(40, 4).tolist()


def test_path_bytes_and_arrays_decode_identically(clips: dict[str, Path]) -> None:
    path = clips["h264"]
    data = path.read_bytes()
    ref = decode_sampled(path, 5)
    arr = np.frombuffer(data, np.uint8)
    for source in (str(path), data, bytearray(data), arr, arr.reshape(1, -1), np.array([data], dtype=object)):
        clip = decode_sampled(source, 5)
        np.testing.assert_array_equal(clip.frames, ref.frames)
        np.testing.assert_array_equal(clip.indices, ref.indices)


def test_iter_frames_yields_every_frame_in_order(clips: dict[str, Path]) -> None:
    got = list(iter_frames(clips["vp9"]))
    assert [i for i, _ in got] == list(range(40))
    assert [read_index_code(f) for _, f in got] == list(range(40))
    assert got[0][1].shape == (SIZE[1], SIZE[0], 3) and got[0][1].dtype == np.uint8


def test_truncated_mid_stream_keeps_what_decoded(
    clips: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    data = clips["faststart"].read_bytes()  # index first: the first 60% still opens
    with caplog.at_level(logging.WARNING, logger="mintime.video"):
        clip = decode_sampled(data[: int(len(data) * 0.6)], 8)
    assert clip.truncated
    assert 1 <= clip.total_frames < 60
    np.testing.assert_array_equal(clip.indices, sample_frame_indices(clip.total_frames, 8))
    assert codes(clip) == clip.indices.tolist()
    assert "expected" in caplog.text


# --- errors --------------------------------------------------------------------------------------------------


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(800, np.int16).tobytes())
    return path


def _zero_frame_avi(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("mjpeg", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuvj420p"
        c.start_encoding()
    return path


def test_errors_have_precise_messages(clips: dict[str, Path], tmp_path: Path) -> None:
    import cv2

    rng = np.random.default_rng(0)
    mp4 = clips["h264"].read_bytes()
    faststart = clips["faststart"].read_bytes()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("This is a text file and certainly not a video.\n" * 20)
    png = cv2.imencode(".png", index_pattern(0, *SIZE))[1].tobytes()
    cases = {
        "empty input": [b"", np.zeros(0, np.uint8), tmp_path / "empty.mp4"],
        "not a video: unrecognised or unaccepted container format": [
            rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        ],
        "not a video: the input looks like text": [tmp_path / "notes.txt"],
        "truncated or corrupt MP4/MOV file": [mp4[: int(len(mp4) * 0.3)], mp4[:100]],
        "not a video: a still image (PNG)": [png],
        "not a video: an audio file (WAV)": [_wav(tmp_path / "a.wav")],
        "has no frames": [_zero_frame_avi(tmp_path / "zero.avi")],
        "truncated or corrupt: no decodable frame": [faststart[: faststart.find(b"mdat") + 40]],
    }
    for message, sources in cases.items():
        for source in sources:
            with pytest.raises(VideoDecodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
                decode_sampled(source, 8)
            with pytest.raises(VideoDecodeError, match=message.split(":")[0]):
                if message.startswith("truncated or corrupt: no decodable"):
                    list(iter_frames(source))
                else:
                    probe(source)


def test_size_limits_and_bad_sources(clips: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(VideoDecodeError, match=r"too large: \d+ bytes exceeds max_bytes=100"):
        decode_sampled(clips["h264"], max_bytes=100)
    with pytest.raises(
        VideoDecodeError, match="too large: frames of 96x64 pixels exceed max_frame_pixels=1000"
    ):
        decode_sampled(clips["h264"], max_pixels=1000)
    with pytest.raises(FileNotFoundError, match="video file not found"):
        decode_sampled(tmp_path / "missing.mp4")
    with pytest.raises(TypeError, match="must be uint8"):
        decode_sampled(np.zeros(10, np.float32))
    assert issubclass(VideoDecodeError, ValueError)


# --- the shared real footage ---------------------------------------------------------------------------------


@pytest.mark.needs_data
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_clip_probe_and_sampling(data_dir: Path, name: str) -> None:
    width, height, fps, frames = REAL[name]
    path = data_dir / "videos" / name
    info = probe(path)
    assert info["codec"] == "h264" and info["rotation"] == 0
    assert (info["width"], info["height"], info["total_frames"]) == (width, height, frames)
    assert info["fps"] == pytest.approx(fps, abs=0.05)
    clip = decode_sampled(path, 32)
    np.testing.assert_array_equal(clip.indices, sample_frame_indices(frames, 32))
    assert clip.frames.shape == (32, height, width, 3)
    assert (clip.total_frames, clip.width, clip.height, clip.truncated) == (frames, width, height, False)
    assert clip.frames[:, ::16, ::16].std() > 10  # real pictures, not padding


@pytest.mark.needs_data
def test_real_portrait_clip_is_upright_without_rotation_tag(data_dir: Path) -> None:
    clip = decode_sampled(data_dir / "videos" / "dfdc_portrait_fake_720x1280.mp4", 2)
    assert clip.rotation == 0  # stored portrait: no display matrix in this file
    assert clip.height > clip.width and clip.frames.shape[1:] == (1280, 720, 3)


@pytest.mark.needs_data
def test_real_clip_sampled_frames_are_the_decoded_frames(data_dir: Path) -> None:
    path = data_dir / "videos" / "two_people_one_fake_720p.mp4"
    data = path.read_bytes()
    clip = decode_sampled(data, 6)
    np.testing.assert_array_equal(clip.frames, decode_sampled(path, 6).frames)  # bytes == path
    wanted = set(clip.indices.tolist())
    full = {i: f for i, f in iter_frames(path) if i in wanted}
    for i, frame in zip(clip.indices.tolist(), clip.frames, strict=True):
        np.testing.assert_array_equal(frame, full[i])


@pytest.mark.needs_data
def test_real_truncated_file(data_dir: Path) -> None:
    data = (data_dir / "videos" / "two_people_one_fake_720p.mp4").read_bytes()
    with pytest.raises(
        VideoDecodeError, match=r"truncated or corrupt MP4/MOV file: the container index \('moov' box\)"
    ):
        decode_sampled(data[: int(len(data) * 0.3)])
