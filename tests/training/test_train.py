"""Training: tiny preset forward/backward/step, config resolution, a whole run with resume, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from training.config import TrainConfig, apply_overrides, load_config, save_config  # noqa: E402
from training.dataset import FaceVideoDataset, load_rows  # noqa: E402
from training.modeling import VideoClassifier, build_model, load_model, save_model  # noqa: E402
from training.train import build_optimizer, build_scheduler, cosine_factor, main  # noqa: E402


def _tiny(tiny_layout: dict[str, Path], out: Path, **over) -> TrainConfig:
    return load_config(
        "tiny",
        {
            "data_path": str(tiny_layout["data"]),
            "train_list": str(tiny_layout["train"]),
            "val_list": str(tiny_layout["val"]),
            "output_dir": str(out),
            **over,
        },
    )


def test_config_yaml_overrides_and_roundtrip(tmp_path):
    cfg = load_config("tiny", ["lr=0.5", "temporal.depth=3", "methods=[0,2]", "epochs=7"])
    assert cfg.lr == 0.5 and cfg.temporal == {"depth": 3} and cfg.methods == [0, 2] and cfg.epochs == 7
    assert cfg.backbone == "tiny_test" and cfg.temporal_preset == "tiny"
    path = save_config(cfg, tmp_path / "config.yaml")
    again = load_config(path)
    assert again.to_dict() == cfg.to_dict()
    with pytest.raises(ValueError, match="unknown training config keys"):
        apply_overrides(TrainConfig(), ["learning_rate=1"])
    with pytest.raises(ValueError, match="optimizer"):
        load_config(None, ["optimizer=lamb"])
    with pytest.raises(ValueError, match="augmentation"):
        load_config(None, ["cache_features=true", "augmentation=max"])
    assert TrainConfig().use_cache and not load_config(None, ["augmentation=min"]).use_cache


def test_tiny_forward_backward_and_one_step(tiny_layout, tmp_path):
    cfg = _tiny(tiny_layout, tmp_path, freeze_backbone=False, cache_features=False)
    model = build_model(cfg)
    assert isinstance(model, VideoClassifier) and model.kind == "mintime" and model.backbone_trainable
    rows = load_rows(tiny_layout["train"], tiny_layout["data"])
    batch = next(iter(DataLoader(FaceVideoDataset(rows, tiny_layout["data"], num_slots=8), batch_size=3)))
    logits = model(batch)
    assert logits.shape == (3, 1) and torch.isfinite(logits).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"][:, None])
    opt = build_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss.backward()
    assert model.head.to_patch_embedding.weight.grad is not None
    assert model.backbone.net[1].weight.grad is not None  # trainable backbone gets gradients
    opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert any(n.startswith("head.") for n in changed) and any(n.startswith("backbone.") for n in changed)


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval(tiny_layout, tmp_path):
    model = build_model(_tiny(tiny_layout, tmp_path))
    model.train()
    assert not model.backbone.training and model.head.training
    assert not any(p.requires_grad for p in model.backbone.parameters())


def test_unfreeze_last_blocks_of_lite0():
    from mintime.models.backbones import create_backbone
    from mintime.models.baseline import FrameBaseline

    bb = create_backbone("efficientnet_lite0", pretrained=False)
    model = VideoClassifier(bb, FrameBaseline(1280, 8), freeze_backbone=False, unfreeze_blocks=2)
    trainable = {n.split(".")[0] + "." + n.split(".")[1] for n, p in bb.named_parameters() if p.requires_grad}
    assert {"_blocks.14", "_blocks.15"} <= trainable
    assert not any(
        n.startswith(("_blocks.13", "_conv_stem", "_bn0."))
        for n, p in bb.named_parameters()
        if p.requires_grad
    )
    assert bb._conv_head.weight.requires_grad  # the head after the blocks trains with them
    model.train()
    assert not bb._blocks[0].training and bb._blocks[15].training


def test_cosine_schedule_shape():
    assert cosine_factor(0, 100, 0, 0.1) == pytest.approx(1.0)
    assert cosine_factor(50, 100, 0, 0.1) == pytest.approx(0.55)
    assert cosine_factor(100, 100, 0, 0.1) == pytest.approx(0.1)
    assert cosine_factor(4, 100, 10, 0.1) == pytest.approx(0.5)  # warm-up: (4 + 1) / 10
    cfg = TrainConfig(epochs=2, lr=1.0, optimizer="sgd")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer(cfg, [p])
    sched, per_iter = build_scheduler(cfg, opt, steps_per_epoch=5)
    assert per_iter
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_main_learns_and_resumes(tiny_layout, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = _tiny(tiny_layout, out, epochs=2, lr=0.003)
    s1 = main(cfg)
    assert s1["epochs_completed"] == 2 and s1["train_videos"] == 8 and s1["val_videos"] == 8
    assert s1["pos_weight"] == pytest.approx(1.0)
    for name in ("best.pt", "last.pt", "last.state.pt", "config.yaml", "summary.json"):
        assert (out / name).is_file(), name
    assert yaml.safe_load((out / "config.yaml").read_text())["epochs"] == 2
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tb").iterdir())
    # resume to 8 epochs: continues at epoch 2, the history keeps the first two epochs
    s2 = main(apply_overrides(cfg, {"epochs": 8, "resume": "auto"}))
    epochs = [h["epoch"] for h in s2["history"]]
    assert epochs[:3] == [0, 1, 2] and epochs == list(range(len(epochs)))
    assert s2["history"][0] == s1["history"][0]
    # the fake crops carry a bright square: a few epochs learn it
    best = min(s2["history"], key=lambda h: h["val"]["loss"])
    assert best["epoch"] == s2["best_epoch"]
    assert best["val"]["loss"] < 0.5 and best["val"]["accuracy"] >= 0.875 and best["val"]["auc"] >= 0.9, s2[
        "history"
    ]
    assert s2["history"][-1]["train"]["loss"] < s1["history"][0]["train"]["loss"]
    # the best checkpoint is a project checkpoint that loads back and predicts the same logits
    loaded = load_model(out / "best.pt")
    assert loaded.kind == "mintime" and loaded.metadata["epoch"] == s2["best_epoch"]
    assert json.loads((out / "summary.json").read_text())["best_epoch"] == s2["best_epoch"]
    # `mintime evaluate` on that checkpoint writes metrics, predictions and the ROC plot
    from mintime.cli import main as cli_main

    rc = cli_main(
        [
            "evaluate",
            "--checkpoint",
            str(out / "best.pt"),
            "--list",
            str(tiny_layout["val"]),
            "--data-path",
            str(tiny_layout["data"]),
            "--out",
            str(out / "eval"),
        ]
    )
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"{out / 'best.pt'} on {tiny_layout['val']} (data: {tiny_layout['data']})"
    assert printed[1].startswith(f"model: {loaded.info['name']} (mintime, ") and "{" not in printed[1]
    assert rc == 0 and metrics["overall"]["n"] == 8 and metrics["multi_identity"]["n"] == 4
    assert metrics["overall"]["auc"] == pytest.approx(best["val"]["auc"])
    assert len((out / "eval" / "predictions.csv").read_text().splitlines()) == 9
    assert (out / "eval" / "roc.png").is_file() and metrics["identity_attribution"]["videos"] == 0


def test_early_stopping_uses_best_not_previous(tiny_layout, tmp_path):
    # lr 0: the validation loss never improves after epoch 0, so training stops after `patience`
    cfg = _tiny(tiny_layout, tmp_path / "es", epochs=10, patience=2, lr=0.0, scheduler="none")
    s = main(cfg)
    assert s["stopped_early"] and s["epochs_completed"] == 3 and s["best_epoch"] == 0


def test_baseline_checkpoint_roundtrip(tiny_layout, tmp_path):
    cfg = _tiny(tiny_layout, tmp_path, model="baseline", baseline_hidden=16)
    model = build_model(cfg).eval()
    assert model.kind == "baseline"
    path = save_model(tmp_path / "b.pt", model, cfg, {"epoch": 0})
    loaded = load_model(path)
    rows = load_rows(tiny_layout["val"], tiny_layout["data"])
    batch = next(iter(DataLoader(FaceVideoDataset(rows, tiny_layout["data"], num_slots=8), batch_size=2)))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(batch), model(batch))
    assert loaded.kind == "baseline" and not loaded.backbone_stock
