"""dlib's face recognition ResNet in PyTorch: the file reader, parity with dlib itself, ONNX export.

Parity is measured on the same aligned 150x150 chips given to both networks: synthetic chips (always) and the
faces of the shared images and clips cut by dlib's own pipeline (MTCNN boxes, dlib's 5-point shape predictor,
``dlib.get_face_chip``). Measured on the development machine: largest absolute descriptor difference 5.4e-7,
largest Euclidean distance between the two descriptors of a chip 1.4e-6; the tests allow 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mintime.faces.dlib_resnet import (
    CHIP_SIZE,
    DLIB_RGB_MEANS,
    DlibFormatError,
    DlibResNet,
    load_dlib_resnet,
    read_dlib_resnet,
)

#: Largest allowed |dlib - ours| per descriptor component (measured: 5.4e-7).
ATOL = 1e-5
#: dlib's same-person Euclidean threshold.
THRESHOLD = 0.6

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def model_path() -> Path:
    from mintime.faces.embedder import dlib_model_paths

    try:
        return dlib_model_paths()[1]
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def net(model_path: Path) -> DlibResNet:
    return load_dlib_resnet(model_path)


@pytest.fixture(scope="module")
def dlib_net(model_path: Path):
    return dlib.face_recognition_model_v1(str(model_path))


def _dlib_descriptors(dlib_net, chips: np.ndarray) -> np.ndarray:
    """dlib's descriptors of pre-aligned 150x150 chips (its batched aligned-image overload)."""
    out = dlib_net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
    return np.asarray([np.asarray(d) for d in out], dtype=np.float64)


def _ours(net: DlibResNet, chips: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return net(torch.from_numpy(chips)).numpy().astype(np.float64)


def _pair_decisions(desc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.linalg.norm(desc[:, None] - desc[None], axis=-1)
    iu = np.triu_indices(len(desc), k=1)
    return d[iu], d[iu] < THRESHOLD


# ---------------------------------------------------------------------------------------------------------------
# the file
# ---------------------------------------------------------------------------------------------------------------
def test_reader_finds_the_network(model_path: Path) -> None:
    f = read_dlib_resnet(model_path)
    kinds = [layer.kind for layer in f.layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29  # stem + 14 units x 2
    assert kinds.count("add_prev") == 14 and kinds.count("fc") == 1 and kinds[-1] == "fc"
    assert f.input_size == (CHIP_SIZE, CHIP_SIZE)
    assert np.allclose(f.rgb_means, DLIB_RGB_MEANS, atol=1e-4)
    assert f.loss["distance_threshold"] == pytest.approx(0.6, abs=1e-6)
    stem = f.layers[0]
    assert stem.arrays["weight"].shape == (32, 3, 7, 7) and stem.params["stride_y"] == 2
    assert np.isfinite(stem.arrays["weight"]).all() and np.abs(stem.arrays["weight"]).max() > 0


def test_damaged_files_raise(model_path: Path, tmp_path: Path) -> None:
    data = model_path.read_bytes()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match="unexpected end of file"):
        read_dlib_resnet(truncated)
    trailing = tmp_path / "trailing.dat"
    trailing.write_bytes(data + b"\x00")
    with pytest.raises(DlibFormatError, match="bytes left"):
        read_dlib_resnet(trailing)
    other = tmp_path / "other.dat"
    other.write_bytes(b"\x01\x01\x01\x0bloss_multi_")  # an add_loss_layer of another loss
    with pytest.raises(DlibFormatError, match="loss_metric_"):
        read_dlib_resnet(other)
    with pytest.raises(FileNotFoundError):
        read_dlib_resnet(tmp_path / "missing.dat")


def test_bad_input_shape_raises(net: DlibResNet) -> None:
    with pytest.raises(ValueError, match="150, 150, 3"):
        net(torch.zeros(2, 3, 150, 150))


# ---------------------------------------------------------------------------------------------------------------
# parity with dlib
# ---------------------------------------------------------------------------------------------------------------
def test_parity_on_synthetic_chips(net: DlibResNet, dlib_net) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (3, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    ramp = np.broadcast_to(
        np.arange(CHIP_SIZE, dtype=np.uint8)[None, :, None] + 50, (CHIP_SIZE, CHIP_SIZE, 3)
    )
    chips = np.concatenate([noise, ramp[None], np.zeros((1, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)])
    ref, ours = _dlib_descriptors(dlib_net, chips), _ours(net, chips)
    assert ref.shape == ours.shape == (5, 128)
    assert np.abs(ours - ref).max() < ATOL
    # float input 0..255 is the same as uint8
    with torch.inference_mode():
        as_float = net(torch.from_numpy(chips).float()).numpy()
    assert np.abs(as_float - ours).max() < 1e-6


@pytest.mark.needs_data
def test_parity_on_shared_faces(net: DlibResNet, dlib_net, data_dir: Path) -> None:
    from tests.faces.face_samples import load_face_samples

    samples = load_face_samples(data_dir)
    assert len(samples) >= 20
    ref, ours = _dlib_descriptors(dlib_net, samples.dlib_chips), _ours(net, samples.dlib_chips)
    assert np.abs(ours - ref).max() < ATOL
    assert np.linalg.norm(ours - ref, axis=1).max() < ATOL
    d_ref, same_ref = _pair_decisions(ref)
    d_ours, same_ours = _pair_decisions(ours)
    assert np.array_equal(same_ref, same_ours)
    assert same_ref.any() and (~same_ref).any()  # both kinds of pairs are present
    # the four portraits are four different people, and dlib says so
    names = ("angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham")
    p = ours[[np.flatnonzero(samples.source == n)[0] for n in names]]
    assert (np.linalg.norm(p[:, None] - p[None], axis=-1) + np.eye(4) > THRESHOLD).all()


def test_batch_does_not_change_results(net: DlibResNet) -> None:
    rng = np.random.default_rng(1)
    chips = torch.from_numpy(rng.integers(0, 256, (4, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8))
    with torch.inference_mode():
        together = net(chips)
        alone = torch.cat([net(chips[i : i + 1]) for i in range(4)])
    assert together.dtype == torch.float32 and together.shape == (4, 128)
    assert torch.allclose(together, alone, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------------------------
def test_onnx_export_matches_torch(net: DlibResNet, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from export.onnx import export_onnx

    rng = np.random.default_rng(2)

    def batch(n: int) -> tuple[torch.Tensor]:
        return (torch.from_numpy(rng.integers(0, 256, (n, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)),)

    report = export_onnx(
        net,
        tmp_path / "dlib_resnet.onnx",
        example_inputs=batch(2),
        input_names=["face_chips"],
        output_names=["face_descriptors"],
        dynamic_axes={"face_chips": {0: "batch"}, "face_descriptors": {0: "batch"}},
        check_inputs=[batch(1), batch(3)],
        atol=1e-4,
        rtol=1e-4,
    )
    assert report is not None
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "dlib_resnet.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        (x,) = batch(n)
        (y,) = session.run(None, {"face_chips": x.numpy()})
        with torch.inference_mode():
            ref = net(x).numpy()
        assert y.shape == (n, 128)
        assert np.abs(y - ref).max() < 1e-4
