"""Time the MINTIME networks on CPU (or CUDA): median forward latency per case.

Each case is ``Case(group, variant, build_fn, input_fn)``: ``build_fn()`` returns an eval-mode module,
``input_fn()`` the positional inputs of one forward. Cases of the same ``group`` are timed round-robin
and compared with the group's first variant (speed-up column: first's median / this median). To add a network
(e.g. a backbone), append cases to :func:`cases`.

``--flops`` counts instead of timing (``torch.utils.flop_counter.FlopCounterMode``: matrix products and
convolutions, 2 FLOP per multiply-add; elementwise ops are not counted) for one video: the temporal model on one
video's 16 slots, each backbone on its 16 faces, and the whole networks of MINTIME-XC, MINTIME-EF and the demo
model, with the share of the attention products (QK^T and attention x V) in the temporal model (counted on the
eager attention path, whose products are plain matmuls).

Usage::

    python benchmarks/bench_models.py                     # every case, CPU
    python benchmarks/bench_models.py --filter b1 --repeats 20 --threads 2
    python benchmarks/bench_models.py --flops             # GFLOP per video
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))  # the checkout's tests/

from mintime.models.temporal import MintimeTemporal, TemporalConfig  # noqa: E402
from tests.helpers.synthetic import two_identity_inputs  # noqa: E402

F, P = 16, 49


@dataclass
class Case:
    """One timed configuration."""

    group: str
    variant: str
    build_fn: Callable[[], nn.Module]
    input_fn: Callable[[], tuple[Tensor, ...]]

    @property
    def name(self) -> str:
        return f"{self.group} [{self.variant}]"


@functools.cache
def _temporal(preset: str) -> MintimeTemporal:
    torch.manual_seed(0)
    return MintimeTemporal(getattr(TemporalConfig, preset)()).eval()


def temporal_case(preset: str, impl: str, batch: int) -> Case:
    """The temporal model of ``preset`` (a TemporalConfig classmethod) with attention ``impl``."""
    channels = getattr(TemporalConfig, preset)().channels

    def build() -> nn.Module:
        # an independent copy per variant: the variants of a group are timed round-robin
        return copy.deepcopy(_temporal(preset)).set_attention_impl(impl)  # type: ignore[arg-type]

    return Case(f"temporal {preset} b{batch}", impl, build, lambda: two_identity_inputs(batch, channels))


@functools.cache
def _backbone(name: str) -> nn.Module:
    from mintime.models.backbones import create_backbone

    torch.manual_seed(0)
    return create_backbone(name, pretrained=name == "efficientnet_lite0").eval()


def backbone_case(name: str, layout: str, batch: int = F) -> Case:
    """One backbone forward on ``batch`` faces (16 = one video), fp32, NCHW ("eager") or ``channels_last``."""
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format

    def build() -> nn.Module:
        return copy.deepcopy(_backbone(name)).to(memory_format=memory_format)

    def inputs() -> tuple[Tensor, ...]:
        faces = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 255
        return (faces.contiguous(memory_format=memory_format),)

    return Case(f"backbone {name} b{batch}", layout, build, inputs)


def cases() -> list[Case]:
    """Every benchmark case, in run order."""
    out: list[Case] = []
    for batch in (1, 4):
        for impl in ("eager", "sdpa"):
            out.append(temporal_case("original_xc", impl, batch))
    for name in ("xception", "efficientnet_b0", "efficientnet_lite0"):
        for layout in ("eager", "channels_last"):
            out.append(backbone_case(name, layout))
    return out


def time_group(
    group: list[Case], *, device: torch.device, warmup: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Time the variants of one group round-robin (fair ratios on a machine whose load drifts).

    Returns, per case name, the median and min wall time and the median process CPU time (ms) of ``repeats``
    forwards after ``warmup`` untimed ones.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    prepared = []
    for case in group:
        model = case.build_fn().to(device)
        prepared.append((case, model, tuple(t.to(device) for t in case.input_fn())))
    wall: dict[str, list[float]] = {c.name: [] for c in group}
    cpu: dict[str, list[float]] = {c.name: [] for c in group}
    with torch.inference_mode():
        for i in range(warmup + repeats):
            for case, model, inputs in prepared:
                sync()
                t0, c0 = time.perf_counter(), time.process_time()
                model(*inputs)
                sync()
                if i >= warmup:
                    wall[case.name].append((time.perf_counter() - t0) * 1e3)
                    cpu[case.name].append((time.process_time() - c0) * 1e3)
    return {
        name: {
            "median_ms": statistics.median(wall[name]),
            "min_ms": min(wall[name]),
            "cpu_median_ms": statistics.median(cpu[name]),
            "repeats": repeats,
        }
        for name in wall
    }


# --- FLOP counts ------------------------------------------------------------------------------------------------
#: Whole networks per video: (name, backbone, temporal config factory).
NETWORKS: tuple[tuple[str, str, Callable[[], TemporalConfig]], ...] = (
    ("MINTIME-XC", "xception", TemporalConfig.original_xc),
    ("MINTIME-EF", "efficientnet_b0", TemporalConfig.original_ef),
    (
        "demo (mintime/weights/demo.pt)",
        "efficientnet_lite0",
        lambda: TemporalConfig(dim=128, depth=2, heads=4, dim_head=32, channels=1280),
    ),
)


def count_flops(model: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[int, dict[str, int]]:
    """FLOPs of one forward (FlopCounterMode: matmul/conv/SDPA, 2 per multiply-add).

    Returns:
        (total, per module: FLOPs spent inside it, children included; keys are the module paths of
        ``model.named_modules()``, ``""`` = the model).
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(*inputs)
    root = type(model).__name__
    per_module = {}
    for key, ops in counter.get_flop_counts().items():
        if key == root or key.startswith(root + "."):
            per_module[key[len(root) + 1 :]] = int(sum(ops.values()))
    return int(counter.get_total_flops()), per_module


def attention_product_flops(model: nn.Module, per_module: dict[str, int]) -> int:
    """FLOPs of the attention products (QK^T, attention x V) of every attention module: its FLOPs minus those
    of its projections (``to_qkv``, ``to_out``)."""
    from mintime.models.layers.attention import Attention

    total = 0
    for name, module in model.named_modules():
        if isinstance(module, Attention):
            inner = per_module.get(name, 0)
            projections = sum(per_module.get(f"{name}.{child}", 0) for child in ("to_qkv", "to_out"))
            total += inner - projections
    return total


def flops_table() -> list[dict[str, object]]:
    """Per network: GFLOP of the backbone on 16 faces, of the temporal model on one video, their sum, and the
    attention products' share of the temporal model."""
    rows = []
    for name, backbone_name, temporal_cfg in NETWORKS:
        cfg = temporal_cfg()
        torch.manual_seed(0)
        # eager attention: its products are plain matmuls, which the counter sees (the CPU SDPA kernel has no FLOP
        # formula registered, so its products would be missed; the two paths compute the same thing)
        temporal = MintimeTemporal(cfg, attn_impl="eager").eval()
        t_total, per_module = count_flops(temporal, two_identity_inputs(1, cfg.channels))
        attention = attention_product_flops(temporal, per_module)
        backbone = _backbone(backbone_name)
        faces = torch.rand(F, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 255
        b_total, _ = count_flops(backbone, (faces,))
        rows.append(
            {
                "network": name,
                "backbone": backbone_name,
                "backbone_gflop_16_faces": b_total / 1e9,
                "temporal_gflop": t_total / 1e9,
                "attention_products_gflop": attention / 1e9,
                "attention_share_of_temporal": attention / t_total,
                "total_gflop_per_video": (b_total + t_total) / 1e9,
            }
        )
    return rows


def print_flops(rows: list[dict[str, object]]) -> None:
    """The table of :func:`flops_table`."""
    print(
        f"{'network (one video: 16 faces, 16 slots)':<40} {'backbone':>9} {'temporal':>9} {'attention':>10} "
        f"{'total':>9}   GFLOP"
    )
    for r in rows:
        print(
            f"{r['network']:<40} {r['backbone_gflop_16_faces']:>9.1f} {r['temporal_gflop']:>9.1f} "
            f"{r['attention_products_gflop']:>6.2f} ({100 * r['attention_share_of_temporal']:.1f} %)"
            f" {r['total_gflop_per_video']:>7.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filter", default="", help="run only cases whose name contains this")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--flops", action="store_true", help="count GFLOP per video instead of timing")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.flops:
        rows = flops_table()
        print_flops(rows)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=2)
        return 0
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")

    selected = [c for c in cases() if args.filter in c.name]
    groups: dict[str, list[Case]] = {}
    for case in selected:
        groups.setdefault(case.group, []).append(case)
    results: dict[str, dict[str, float]] = {}
    print(f"{'case':<36} {'median ms':>10} {'min ms':>9} {'cpu ms':>9} {'speed-up vs first':>18}")
    for group in groups.values():
        timed = time_group(group, device=device, warmup=args.warmup, repeats=args.repeats)
        base = timed[group[0].name]["median_ms"]
        for name, r in timed.items():
            r["speedup_vs_first"] = base / r["median_ms"]
            results[name] = r
            print(
                f"{name:<36} {r['median_ms']:>10.1f} {r['min_ms']:>9.1f} {r['cpu_median_ms']:>9.1f} "
                f"{r['speedup_vs_first']:>17.2f}x",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
