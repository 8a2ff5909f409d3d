"""``python benchmarks/bench_models.py --flops``: the FLOP counts are exact on known shapes, and the command
prints the per-video table."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mintime.models.temporal import MintimeTemporal, TemporalConfig  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.helpers.scripts import load_script  # noqa: E402
from tests.helpers.synthetic import two_identity_inputs  # noqa: E402

bench = load_script(REPO / "benchmarks" / "bench_models.py")


def test_count_flops_of_a_linear_layer():
    total, per_module = bench.count_flops(torch.nn.Sequential(torch.nn.Linear(10, 7)), (torch.ones(3, 10),))
    assert total == 2 * 3 * 10 * 7 and per_module["0"] == total


def test_attention_products_of_the_tiny_temporal_model():
    cfg = TemporalConfig.tiny()
    model = MintimeTemporal(cfg, attn_impl="eager").eval()
    total, per_module = bench.count_flops(model, two_identity_inputs(1, cfg.channels))
    h, d, f, p = cfg.heads, cfg.dim_head, 16, 49
    n = 1 + f * p
    cls = 4 * h * n * d  # the CLS query over all keys: QK^T and attention x V
    time = 4 * h * p * f * (f + 1) * d  # per patch position: 16 queries over CLS + 16 keys
    space = 4 * h * f * p * (p + 1) * d  # per slot: 49 queries over CLS + 49 keys
    assert bench.attention_product_flops(model, per_module) == cfg.depth * (2 * cls + time + space)
    assert 0 < bench.attention_product_flops(model, per_module) < total


def test_flops_command_prints_the_table(monkeypatch, capsys):
    demo = [n for n in bench.NETWORKS if n[0].startswith("demo")]
    monkeypatch.setattr(bench, "NETWORKS", tuple(demo))  # the lightest network keeps the test fast
    assert bench.main(["--flops"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("network (one video: 16 faces, 16 slots)")
    assert out[1].startswith("demo (mintime/weights/demo.pt) ")
    backbone, temporal, attention, share, _, total = out[1][40:].split()
    backbone, temporal = float(backbone), float(temporal)
    assert share.startswith("(") and float(total) == pytest.approx(backbone + temporal, abs=0.11)
    # EfficientNet-Lite0 at 224 px: ~0.39 G multiply-adds per face (its published figure), 16 faces
    assert 16 * 2 * 0.36 < backbone < 16 * 2 * 0.42
    assert 1.0 < temporal < 1.6
