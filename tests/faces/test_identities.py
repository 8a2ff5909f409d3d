"""Face embedders (dlib, FaceNet architecture) and identity clustering (appearance + spatial-temporal links)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from mintime.faces.embedder import (
    DlibEmbedder,
    FaceEmbedder,
    FacenetEmbedder,
    InceptionResnetV1,
    create_embedder,
    load_facenet_state_dict,
    pairwise_distances,
)
from mintime.faces.identities import IdentityClusters, box_iou, cluster_identities

THR = 0.6  # dlib's same-person distance, used by the synthetic cases
FRAME = (1280, 720)
PORTRAITS = ("angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham")


# ---------------------------------------------------------------------------------------------------------------
# synthetic faces
# ---------------------------------------------------------------------------------------------------------------
def _person(rng: np.random.Generator, d: int = 128) -> np.ndarray:
    """A random identity centre (unit norm, so two centres are ~1.4 apart)."""
    v = rng.normal(size=d)
    return v / np.linalg.norm(v)


def _track(
    rng: np.random.Generator,
    centre: np.ndarray,
    frames: range | list[int],
    *,
    x: float,
    y: float = 200.0,
    size: float = 200.0,
    noise: float = 0.01,
    drift: float = 4.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces of one person: embeddings near ``centre`` (pairwise ~0.16 apart), a slowly moving box."""
    frames = list(frames)
    emb = centre + rng.normal(scale=noise, size=(len(frames), len(centre)))
    xs = x + drift * np.arange(len(frames))
    boxes = np.stack([xs, np.full_like(xs, y), xs + size, np.full_like(xs, y + size)], axis=1)
    return emb.astype(np.float32), boxes, np.asarray(frames, dtype=np.int64)


def _cat(*tracks: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.concatenate(parts) for parts in zip(*tracks, strict=True))  # type: ignore[return-value]


def _cluster(emb: np.ndarray, boxes: np.ndarray, fids: np.ndarray, **kw: object) -> IdentityClusters:
    kw.setdefault("distance_threshold", THR)
    return cluster_identities(emb, boxes, fids, frame_size=FRAME, **kw)  # type: ignore[arg-type]


def _assert_one_face_per_frame(res: IdentityClusters, fids: np.ndarray) -> None:
    for members in res.identities:
        assert len(np.unique(fids[members])) == len(members)


# ---------------------------------------------------------------------------------------------------------------
# cluster_identities on synthetic inputs
# ---------------------------------------------------------------------------------------------------------------
def test_box_iou_values() -> None:
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], float)
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.0]])


def test_two_tracks_give_two_identities_ordered_by_size() -> None:
    rng = np.random.default_rng(0)
    small = _track(rng, _person(rng), range(0, 160, 10), x=900, size=150)
    big = _track(rng, _person(rng), range(0, 160, 10), x=100, size=300)
    emb, boxes, fids = _cat(small, big)
    perm = rng.permutation(len(fids))  # input order must not matter
    res = _cluster(emb[perm], boxes[perm], fids[perm])
    assert len(res) == 2
    inv = np.argsort(perm)  # original index → position in the permuted input
    assert res.identities[0].tolist() == inv[16:].tolist()  # the big face first, in temporal order
    assert res.identities[1].tolist() == inv[:16].tolist()
    for k, members in enumerate(res.identities):
        assert np.all(np.diff(fids[perm][members]) > 0)  # temporal order
        assert np.all(res.labels[members] == k)
    assert (res.labels >= 0).all()
    np.testing.assert_allclose(res.mean_sizes, [300.0, 150.0])
    np.testing.assert_allclose(res.mean_area_ratios, [300 * 300 / (1280 * 720), 150 * 150 / (1280 * 720)])
    np.testing.assert_array_equal(res.num_frames, [16, 16])


@pytest.mark.parametrize(("extra_frames", "kept"), [(1, False), (2, False), (3, False), (4, True)])
def test_short_detections_are_dropped(extra_frames: int, kept: bool) -> None:
    """min_faces drops one-frame detections; the size ratio (0.2 x 16 = 3.2) drops 2-3 frames of 16."""
    rng = np.random.default_rng(1)
    a = _track(rng, _person(rng), range(16), x=100)
    b = _track(rng, _person(rng), range(16), x=700)
    # a large, consistent face seen only briefly (a false detection, a face passing by)
    c = _track(rng, _person(rng), range(5, 5 + extra_frames), x=400, size=450)
    emb, boxes, fids = _cat(a, b, c)
    res = _cluster(emb, boxes, fids)
    extra = np.arange(32, 32 + extra_frames)
    if kept:
        assert len(res) == 3
        assert res.identities[0].tolist() == extra.tolist()  # the largest mean size comes first
    else:
        assert len(res) == 2
        assert (res.labels[extra] == -1).all()
        assert (res.labels[:32] >= 0).all()


def test_min_cluster_ratio_and_min_faces_are_parameters() -> None:
    rng = np.random.default_rng(2)
    a = _track(rng, _person(rng), range(16), x=100)
    c = _track(rng, _person(rng), range(3), x=700)
    emb, boxes, fids = _cat(a, c)
    assert len(_cluster(emb, boxes, fids)) == 1
    assert len(_cluster(emb, boxes, fids, min_cluster_ratio=0.1)) == 2
    assert len(_cluster(emb, boxes, fids, min_cluster_ratio=0.1, min_faces=4)) == 1


def test_small_recurring_faces_are_dropped_relative_to_the_main_face() -> None:
    """A small face in every frame (a poster, a static false detection) next to a large person → dropped at the
    default min_size_ratio 0.4; a huge one-frame false detection must not raise that bar for the real faces."""
    rng = np.random.default_rng(10)
    main = _track(rng, _person(rng), range(16), x=100, size=200)
    second = _track(rng, _person(rng), range(16), x=700, size=90)  # 0.45 x the main side: kept
    poster = _track(rng, _person(rng), range(16), x=1000, size=70, drift=0)  # 0.35 x: dropped
    flash = _track(rng, _person(rng), [7], x=300, y=0, size=700)  # one frame, huge
    emb, boxes, fids = _cat(main, second, poster, flash)
    res = _cluster(emb, boxes, fids)
    assert [m.tolist() for m in res.identities] == [list(range(16)), list(range(16, 32))]
    assert (res.labels[32:] == -1).all()
    res = _cluster(emb, boxes, fids, min_size_ratio=0.0)
    assert len(res) == 3 and res.identities[2].tolist() == list(range(32, 48))


def test_look_alikes_in_the_same_frames_stay_apart() -> None:
    """Twins: embeddings closer than any threshold, but side by side in every frame → two identities."""
    rng = np.random.default_rng(3)
    centre = _person(rng)
    twin = centre + 0.02 * _person(rng)  # 0.02 apart: appearance alone would merge everything
    a = _track(rng, centre, range(12), x=100, size=200)
    b = _track(rng, twin, range(12), x=330, size=190)  # adjacent boxes, no overlap
    emb, boxes, fids = _cat(a, b)
    res = _cluster(emb, boxes, fids)
    assert len(res) == 2
    assert set(res.identities[0].tolist()) == set(range(12))
    assert set(res.identities[1].tolist()) == set(range(12, 24))
    _assert_one_face_per_frame(res, fids)


def test_look_alikes_with_overlapping_boxes_follow_the_better_track() -> None:
    """Two close faces whose boxes also overlap each other: the stronger (same-track) links win."""
    rng = np.random.default_rng(4)
    centre = _person(rng)
    a = _track(rng, centre, range(10), x=100, size=200, drift=2)
    b = _track(rng, centre, range(10), x=220, size=200, drift=2)  # IoU(a, b) = 80/320 x ... ≈ 0.25-0.3
    emb, boxes, fids = _cat(a, b)
    res = _cluster(emb, boxes, fids, link_iou=0.2)
    assert len(res) == 2
    assert {frozenset(m.tolist()) for m in res.identities} == {frozenset(range(10)), frozenset(range(10, 20))}


@pytest.mark.parametrize("seed", range(6))
def test_no_identity_ever_holds_two_faces_of_one_frame(seed: int) -> None:
    rng = np.random.default_rng(seed)
    centres = [_person(rng) for _ in range(3)]
    n = 60
    fids = rng.integers(0, 8, size=n)
    emb = np.stack([centres[i] for i in rng.integers(0, 3, size=n)]) + rng.normal(scale=0.03, size=(n, 128))
    xy = rng.uniform(0, 600, size=(n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(80, 300, size=(n, 1))], axis=1)
    res = _cluster(
        emb.astype(np.float32), boxes, fids, min_faces=1, min_cluster_ratio=0.0, min_size_ratio=0.0
    )
    _assert_one_face_per_frame(res, fids)
    assert (res.labels >= 0).all()  # nothing dropped with these settings
    # degenerate: identical embeddings and boxes everywhere → still one face per frame per identity, and the
    # merging is maximal: any two identities share a frame (otherwise they would have been merged)
    same = np.tile([[10.0, 10.0, 110.0, 110.0]], (n, 1))
    res = _cluster(np.zeros((n, 128), np.float32), same, fids, min_faces=1, min_cluster_ratio=0.0)
    _assert_one_face_per_frame(res, fids)
    assert len(res) >= np.bincount(fids).max()
    frame_sets = [set(fids[m].tolist()) for m in res.identities]
    assert all(a & b for i, a in enumerate(frame_sets) for b in frame_sets[i + 1 :])


def test_appearance_rejoins_a_broken_track() -> None:
    """The person jumps across the frame and is missed for a while: appearance links rejoin the pieces."""
    rng = np.random.default_rng(5)
    p = _person(rng)
    first = _track(rng, p, range(0, 6), x=100)
    second = _track(rng, p, range(11, 16), x=900)  # no overlap with the first part, 5 frames missing
    other = _track(rng, _person(rng), range(16), x=500, size=150)
    emb, boxes, fids = _cat(first, second, other)
    res = _cluster(emb, boxes, fids)
    assert len(res) == 2
    assert set(res.identities[0].tolist()) == set(range(11))


def test_track_links_bridge_moderate_changes_but_not_a_different_person() -> None:
    """Consecutive faces 0.65 apart (> 0.6, e.g. turning the head) in one place form one identity; a person
    replaced by a clearly different one (0.9+ apart) in the same place does not."""
    rng = np.random.default_rng(6)
    base, step = _person(rng), _person(rng)
    step -= step @ base * base  # orthogonal drift direction
    step *= 0.65 / np.linalg.norm(step)
    emb = np.stack([base + k * step for k in range(6)]).astype(np.float32)  # neighbours 0.65, ends 3.25 apart
    _, boxes, fids = _track(rng, base, range(6), x=100)
    res = _cluster(emb, boxes, fids)
    assert len(res) == 1 and len(res.identities[0]) == 6
    # same boxes, but the face changes to someone else half-way (distance ~1.4 between the two halves)
    other = _person(rng)
    emb2 = np.stack([base] * 3 + [other] * 3).astype(np.float32)
    res2 = _cluster(emb2, boxes, fids, min_cluster_ratio=0.0)
    assert len(res2) == 2
    assert {frozenset(m.tolist()) for m in res2.identities} == {frozenset({0, 1, 2}), frozenset({3, 4, 5})}
    # without track links (IoU bar above 1) the drifting face falls apart into pairs/singletons
    res3 = _cluster(emb, boxes, fids, link_iou=1.1, min_faces=1, min_cluster_ratio=0.0)
    assert len(res3) == 6


def test_track_links_use_sampled_frame_ranks_not_file_frame_numbers() -> None:
    rng = np.random.default_rng(7)
    base, step = _person(rng), _person(rng)
    step -= step @ base * base
    step *= 0.65 / np.linalg.norm(step)
    emb = np.stack([base + k * step for k in range(4)]).astype(np.float32)
    _, boxes, _ = _track(rng, base, range(4), x=100)
    fids = np.array([0, 30, 60, 90])  # every 30th file frame: consecutive samples
    assert len(_cluster(emb, boxes, fids)) == 1
    assert len(_cluster(emb, boxes, fids, max_frame_gap=0, min_faces=1, min_cluster_ratio=0.0)) == 4


def test_single_frame_and_empty_inputs() -> None:
    rng = np.random.default_rng(8)
    emb = np.stack([_person(rng) for _ in range(3)]).astype(np.float32)
    boxes = np.array([[0, 0, 100, 100], [100, 0, 300, 200], [400, 0, 550, 150]], float)
    res = _cluster(emb, boxes, np.zeros(3, np.int64))  # a still image: every face is its own identity
    assert [m.tolist() for m in res.identities] == [[1], [2], [0]]
    res = _cluster(np.zeros((0, 128), np.float32), np.zeros((0, 4)), np.zeros(0, np.int64))
    assert len(res) == 0 and res.labels.shape == (0,) and res.mean_sizes.shape == (0,)
    with pytest.raises(ValueError, match="boxes"):
        _cluster(emb, boxes[:2], np.zeros(3, np.int64))


def test_cosine_metric() -> None:
    rng = np.random.default_rng(9)
    a = _track(rng, _person(rng, 512), range(10), x=100, noise=0.02)
    b = _track(rng, _person(rng, 512), range(10), x=700, noise=0.02)
    emb, boxes, fids = _cat(a, b)
    emb = emb * rng.uniform(0.5, 2.0, size=(len(emb), 1)).astype(np.float32)  # scale must not matter
    res = _cluster(emb, boxes, fids, metric="cosine", distance_threshold=0.55)
    assert len(res) == 2
    assert {frozenset(m.tolist()) for m in res.identities} == {frozenset(range(10)), frozenset(range(10, 20))}
    with pytest.raises(ValueError, match="metric"):
        _cluster(emb, boxes, fids, metric="manhattan")


# ---------------------------------------------------------------------------------------------------------------
# FaceNet InceptionResnetV1 (architecture only: no weights are available here)
# ---------------------------------------------------------------------------------------------------------------
def _random_state(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights that keep the signal alive through the 100+ layers (He-scaled convs, BN near identity),
    so that different inputs give clearly different embeddings."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if not v.dtype.is_floating_point:
            sd[k] = v.clone()
        elif v.ndim >= 2:  # conv / linear weights
            sd[k] = torch.randn(v.shape, generator=g) * (2.0 / v[0].numel()) ** 0.5
        elif k.endswith(("running_var", "bn.weight", "last_bn.weight")):
            sd[k] = torch.rand(v.shape, generator=g) * 0.5 + 0.75
        else:  # biases, running means
            sd[k] = torch.randn(v.shape, generator=g) * 0.05
    return sd


@pytest.fixture(scope="module")
def facenet_state() -> dict[str, torch.Tensor]:
    return _random_state(InceptionResnetV1(), seed=1)


@pytest.fixture
def facenet_reference() -> type:
    """facenet-pytorch's own InceptionResnetV1 class, imported without the package ``__init__`` (which imports
    torchvision, broken here): a stub package object points at the installed folder."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("facenet-pytorch is not installed")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / "models" / "inception_resnet_v1.py").is_file():
        pytest.skip("facenet-pytorch's inception_resnet_v1.py not found")
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "facenet_pytorch"}
    stub = types.ModuleType("facenet_pytorch")
    stub.__path__ = [str(folder)]
    sys.modules["facenet_pytorch"] = stub
    try:
        try:
            module = importlib.import_module("facenet_pytorch.models.inception_resnet_v1")
        except ImportError as exc:
            pytest.skip(f"cannot import facenet-pytorch's InceptionResnetV1: {exc}")
        yield module.InceptionResnetV1
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] == "facenet_pytorch"]:
            del sys.modules[k]
        sys.modules.update(saved)


def test_inception_resnet_v1_matches_facenet_pytorch(
    facenet_reference: type, facenet_state: dict[str, torch.Tensor]
) -> None:
    """Same state-dict keys and shapes as facenet-pytorch's network, and the same outputs with the same weights."""
    ours, ref = InceptionResnetV1().eval(), facenet_reference().eval()
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert ours_shapes == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert list(ours_shapes) == list(ref.state_dict())  # same order too
    ours.load_state_dict(facenet_state)
    ref.load_state_dict(facenet_state)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))  # small input: keeps it fast
    with torch.no_grad():
        out, expected = ours(x), ref(x)
    assert (expected[0] - expected[1]).abs().max() > 5e-3  # a live signal, so the comparison means something
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_inception_resnet_v1_builds_and_gives_unit_vectors(facenet_state: dict[str, torch.Tensor]) -> None:
    model = InceptionResnetV1().eval()
    sd = model.state_dict()
    assert len(sd) == 714
    assert sd["conv2d_1a.conv.weight"].shape == (32, 3, 3, 3)
    assert sd["repeat_2.9.branch1.2.conv.weight"].shape == (128, 128, 7, 1)
    assert sd["mixed_7a.branch2.2.conv.weight"].shape == (256, 256, 3, 3)
    assert sd["block8.conv2d.weight"].shape == (1792, 384, 1, 1)
    assert sd["last_linear.weight"].shape == (512, 1792)
    assert "last_linear.bias" not in sd and not any(k.startswith("logits") for k in sd)
    model.load_state_dict(facenet_state)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(1)))
    assert out.shape == (2, 512) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
    assert (out[0] - out[1]).abs().max() > 5e-3  # different inputs → different embeddings


def test_facenet_state_dict_errors_are_clear(facenet_state: dict[str, torch.Tensor]) -> None:
    from mintime.checkpoints import CheckpointError as expected_error

    model = InceptionResnetV1()
    sd = facenet_state
    missing = {k: v for k, v in sd.items() if k != "last_bn.running_mean"}
    with pytest.raises(expected_error, match="last_bn.running_mean"):
        load_facenet_state_dict(model, missing, what="vggface2.pt")
    wrong = dict(sd, **{"last_linear.weight": torch.zeros(128, 1792)})
    with pytest.raises(expected_error, match="last_linear.weight"):
        load_facenet_state_dict(model, wrong, what="vggface2.pt")
    # the VGGFace2 classification head of facenet-pytorch's files is dropped, the rest loads strictly
    with_head = dict(sd, **{"logits.weight": torch.zeros(8631, 512), "logits.bias": torch.zeros(8631)})
    load_facenet_state_dict(model, with_head, what="vggface2.pt")
    torch.testing.assert_close(model.state_dict()["last_bn.running_mean"], sd["last_bn.running_mean"])


def test_facenet_embedder_from_a_weights_file(tmp_path: Path, facenet_state: dict[str, torch.Tensor]) -> None:
    sd = dict(facenet_state)
    sd["logits.weight"], sd["logits.bias"] = torch.zeros(10, 512), torch.zeros(10)
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(sd, path)
    emb = create_embedder("facenet", weights=path)
    assert isinstance(emb, FacenetEmbedder) and isinstance(emb, FaceEmbedder)
    assert (emb.dim, emb.metric, emb.threshold) == (512, "cosine", 0.55)
    # preprocessing: RGB order kept, (x - 127.5) / 128, box resized to 160x160
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 255, 0, 127
    x = emb.preprocess([frame], [np.array([10, 20, 110, 180.0])], [0])
    assert x.shape == (1, 3, 160, 160) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 80, 80], [127.5 / 128, -127.5 / 128, -0.5 / 128])
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8) for _ in range(2)]
    boxes = [np.array([10, 20, 110, 180.0]), np.array([200, 50, 300, 200.0]), np.array([0, 0, 160, 160.0])]
    out = emb.embed([frames[0], frames[0], frames[1]], boxes, [0, 0, 7])
    assert out.shape == (3, 512) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    assert pairwise_distances(out, metric="cosine")[0, 1] > 1e-3


def test_create_embedder_errors() -> None:
    with pytest.raises(ValueError, match="weights"):
        create_embedder("facenet")
    with pytest.raises(FileNotFoundError):
        create_embedder("facenet", weights="/nonexistent/vggface2.pt")
    with pytest.raises(ValueError, match="unknown face embedder"):
        create_embedder("arcface")


# ---------------------------------------------------------------------------------------------------------------
# dlib on real faces
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dlib_embedder() -> DlibEmbedder:
    pytest.importorskip("dlib")
    try:
        return create_embedder("dlib")  # type: ignore[return-value]
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def _hog_boxes(image: np.ndarray, upsample: int = 1, max_side: int = 640) -> np.ndarray:
    """dlib's own HOG face detector (so these tests do not depend on the MTCNN), on a downscaled copy."""
    import cv2
    import dlib

    s = min(1.0, max_side / max(image.shape[:2]))
    small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else image
    rects = dlib.get_frontal_face_detector()(small, upsample)
    return np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], float).reshape(-1, 4) / s


@pytest.fixture(scope="module")
def portraits(data_dir: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The four portraits: (RGB image, its one HOG box)."""
    import cv2

    out = []
    for name in PORTRAITS:
        image = np.ascontiguousarray(cv2.imread(str(data_dir / "images" / f"{name}.jpg"))[:, :, ::-1])
        boxes = _hog_boxes(image)
        assert len(boxes) == 1, name
        out.append((image, boxes[0]))
    return out


def test_dlib_embedder_basics(dlib_embedder: DlibEmbedder) -> None:
    assert isinstance(dlib_embedder, FaceEmbedder)
    assert (dlib_embedder.dim, dlib_embedder.metric, dlib_embedder.threshold) == (128, "euclidean", 0.6)
    out = dlib_embedder.embed([], [], [])
    assert out.shape == (0, 128) and out.dtype == np.float32
    with pytest.raises(ValueError, match="uint8"):
        dlib_embedder.embed([np.zeros((64, 64, 3), np.float32)], [np.array([0, 0, 32, 32.0])], [0])
    with pytest.raises(ValueError, match="one frame, box and frame id per face"):
        dlib_embedder.embed([np.zeros((64, 64, 3), np.uint8)], [np.array([0, 0, 32, 32.0])] * 2, [0, 0])


@pytest.mark.needs_data
def test_dlib_four_portraits_are_four_identities(
    dlib_embedder: DlibEmbedder, portraits: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    images, boxes = [p[0] for p in portraits], [p[1] for p in portraits]
    emb = dlib_embedder.embed(images, boxes, range(4))
    assert emb.shape == (4, 128) and emb.dtype == np.float32
    d = pairwise_distances(emb)
    off = d[~np.eye(4, dtype=bool)]
    assert off.min() > dlib_embedder.threshold, d.round(3)
    # order independence: the same faces given in another order give the same vectors
    perm = [2, 0, 3, 1]
    emb2 = dlib_embedder.embed([images[i] for i in perm], [boxes[i] for i in perm], perm)
    np.testing.assert_allclose(emb2, emb[perm], atol=1e-5)


@pytest.mark.needs_data
def test_dlib_same_face_survives_crop_shifts_scale_and_jpeg(
    dlib_embedder: DlibEmbedder, portraits: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    import cv2

    others = dlib_embedder.embed([p[0] for p in portraits], [p[1] for p in portraits], range(4))
    for idx in (1, 2):  # a woman and a man
        image, box = portraits[idx]
        w = box[2] - box[0]
        ok, enc = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 50])
        assert ok
        jpeg = np.ascontiguousarray(cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1])
        half = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        variants = [
            (image, box + [0.08 * w, 0, 0.08 * w, 0]),  # shifted right
            (image, box + [-0.06 * w, 0.06 * w, -0.06 * w, 0.06 * w]),  # shifted left and down
            (image, box + [-0.12 * w, -0.12 * w, 0.12 * w, 0.12 * w]),  # 24 % larger
            (image, box + [0.1 * w, 0.1 * w, -0.1 * w, -0.1 * w]),  # 20 % smaller
            (jpeg, box),  # recompressed at quality 50
            (half, box * 0.5),  # half resolution
        ]
        emb = dlib_embedder.embed([v[0] for v in variants], [v[1] for v in variants], [0] * len(variants))
        d_same = pairwise_distances(emb, others[idx : idx + 1])[:, 0]
        d_other = pairwise_distances(emb, np.delete(others, idx, axis=0))
        assert d_same.max() < dlib_embedder.threshold / 2, d_same.round(3)
        assert d_other.min() > dlib_embedder.threshold, d_other.round(3)
        res = cluster_identities(
            np.concatenate([others[idx : idx + 1], emb]),
            np.tile(box, (len(variants) + 1, 1)),
            np.arange(len(variants) + 1),
            frame_size=(image.shape[1], image.shape[0]),
            distance_threshold=dlib_embedder.threshold,
            link_iou=1.1,  # appearance only
        )
        assert len(res) == 1 and len(res.identities[0]) == len(variants) + 1


@pytest.mark.needs_data
def test_real_clip_two_people_give_two_identities(dlib_embedder: DlibEmbedder, data_dir: Path) -> None:
    """The ForgeryNet sample (a man and a woman side by side, 113 frames): 16 sampled frames → 2 identities."""
    import cv2

    cap = cv2.VideoCapture(str(data_dir / "videos" / "two_people_one_fake_720p.mp4"))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(np.round(np.linspace(0, total - 1, 16)).astype(int).tolist())
    frames, indices, i = [], [], 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if i in wanted:
            frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
            indices.append(i)
        i += 1
    cap.release()
    assert len(frames) == 16
    face_frames, boxes, fids = [], [], []
    for frame, index in zip(frames, indices, strict=True):
        for b in _hog_boxes(frame, upsample=0, max_side=1280):  # full resolution: faces 250-370 px
            face_frames.append(frame)
            boxes.append(b)
            fids.append(index)
    assert len(boxes) >= 28
    emb = dlib_embedder.embed(face_frames, boxes, fids)
    boxes_arr, fids_arr = np.array(boxes), np.array(fids)
    res = cluster_identities(
        emb,
        boxes_arr,
        fids_arr,
        frame_size=(frames[0].shape[1], frames[0].shape[0]),
        distance_threshold=dlib_embedder.threshold,
        metric=dlib_embedder.metric,
    )
    assert len(res) == 2
    assert all(n >= 14 for n in res.num_frames), res.num_frames
    _assert_one_face_per_frame(res, fids_arr)
    centres = [((boxes_arr[m, 0] + boxes_arr[m, 2]) / 2) for m in res.identities]
    assert abs(centres[0].mean() - centres[1].mean()) > 300  # two people at different places
    assert centres[0].std() < 100 and centres[1].std() < 100  # each identity stays in its place
