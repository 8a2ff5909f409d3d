"""Subcommands of ``mintime`` for the research tooling: ``preprocess``, ``split``, ``train``, ``evaluate``, ``synth``.

Each has ``add_<name>_arguments(parser)`` and ``run_<name>(args) -> int``; :mod:`mintime.cli` wires them in.
Nothing heavy is imported at module level (``mintime --help`` stays instant).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

__all__ = [
    "add_preprocess_arguments",
    "run_preprocess",
    "add_split_arguments",
    "run_split",
    "add_train_arguments",
    "run_train",
    "add_evaluate_arguments",
    "run_evaluate",
    "add_synth_arguments",
    "run_synth",
]

logger = logging.getLogger(__name__)


# --- preprocess --------------------------------------------------------------------------------------------------
def add_preprocess_arguments(p: argparse.ArgumentParser) -> None:
    """``mintime preprocess VIDEOS_OR_DIRS --out DIR``."""
    p.add_argument("inputs", nargs="+", type=Path, help="video files and/or folders (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output root of the face-crop layout")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    from mintime.config import TRAINING_NUM_FRAMES

    p.add_argument(
        "--num-frames",
        type=int,
        default=TRAINING_NUM_FRAMES,
        help=f"frames sampled per video (default {TRAINING_NUM_FRAMES})",
    )
    p.add_argument("--detect-scale", type=float, default=0.5, help="MTCNN input scale (default 0.5)")
    p.add_argument("--embedder", choices=["dlib", "facenet"], default="dlib", help="identity embedder")
    p.add_argument("--embedder-weights", type=Path, help="FaceNet weights (with --embedder facenet)")
    p.add_argument(
        "--min-cluster-ratio", type=float, default=0.2, help="drop identities smaller than this share"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_preprocess(args: argparse.Namespace) -> int:
    from mintime.config import DEFAULTS
    from training.preprocess import preprocess

    cfg = DEFAULTS.replace(
        num_frames=args.num_frames,
        detect_scale=args.detect_scale,
        embedder=args.embedder,
        embedder_weights=str(args.embedder_weights) if args.embedder_weights else None,
        min_cluster_ratio=args.min_cluster_ratio,
        device=args.device,
    )
    s = preprocess(args.inputs, args.out, cfg=cfg, workers=args.workers, progress=not args.no_progress)
    print(
        f"{s.total} videos: {s.processed} processed, {s.skipped} already done, {len(s.failed)} failed; "
        f"{s.faces_written} crops written in {s.seconds:.1f} s -> {args.out}"
    )
    if s.no_face:
        print(f"{len(s.no_face)} videos with no usable face (lower the MTCNN thresholds or check them):")
        for name in s.no_face:
            print(f"  {name}")
    for name, err in s.failed.items():
        print(f"FAILED {name}: {err}", file=sys.stderr)
    return 1 if s.failed else 0


# --- split -------------------------------------------------------------------------------------------------------
def add_split_arguments(p: argparse.ArgumentParser) -> None:
    """``mintime split --train-list L --out DIR`` (stratified validation split by method)."""
    p.add_argument(
        "--train-list", type=Path, required=True, help="list to split: '<path> <label> ... <method>'"
    )
    p.add_argument(
        "--test-list", type=Path, help="list copied to test.csv (ForgeryNet Validation in the paper)"
    )
    p.add_argument("--data-path", type=Path, help="face-crop root: drop rows whose folder has no crop")
    p.add_argument("--out", type=Path, required=True, help="folder for train.csv, val.csv, test.csv")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of each method moved to val (0.1)")
    p.add_argument("--seed", type=int, default=42, help="random seed (42)")
    p.add_argument(
        "--path-map",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="replace a path prefix (repeatable)",
    )


def run_split(args: argparse.Namespace) -> int:
    from training.split import split_lists

    path_map = dict(item.split("=", 1) for item in args.path_map)
    s = split_lists(
        args.train_list,
        args.out,
        test_list=args.test_list,
        data_path=args.data_path,
        val_fraction=args.val_fraction,
        seed=args.seed,
        path_map=path_map or None,
    )
    for name, counts in s.counts.items():
        methods = ", ".join(f"{k.split('_')[1]}:{v}" for k, v in counts.items() if k.startswith("method_"))
        print(
            f"{name}: {counts['total']} videos ({counts['real']} real / {counts['fake']} fake; methods {methods})"
        )
    for name, n in s.missing.items():
        if n:
            print(f"{name}: {n} rows dropped (no face folder under {args.data_path})")
    print(f"lists written to {args.out}")
    return 0


# --- train -------------------------------------------------------------------------------------------------------
def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """``mintime train --config FILE [key=value ...]`` (also under ``torchrun``)."""
    p.add_argument("--config", help="yaml file or shipped preset name (training/configs/*.yaml)")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. lr=1e-3 temporal.depth=2"
    )
    p.add_argument("--output-dir", help="same as output_dir=...")
    p.add_argument("--resume", help="a *.state.pt file, or 'auto' (<output_dir>/last.state.pt)")
    p.add_argument("--device", help="auto, cpu, cuda")


def run_train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.train import main

    overrides = list(args.overrides)
    for key in ("output_dir", "resume", "device"):
        if getattr(args, key, None):
            overrides.append(f"{key}={getattr(args, key)}")
    cfg = load_config(args.config, overrides)
    summary = main(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"best epoch {summary['best_epoch']} (val loss {summary['best_val_loss']:.4f}); "
            f"{summary['epochs_completed']} epochs{' (stopped early)' if summary['stopped_early'] else ''}; "
            f"checkpoint {summary['checkpoint']}"
        )
    return 0


# --- evaluate ----------------------------------------------------------------------------------------------------
def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """``mintime evaluate --checkpoint CK --list test.csv --data-path FACES [--out DIR]``."""
    p.add_argument(
        "--checkpoint", type=Path, required=True, help="best.pt of `mintime train` (MINTIME or baseline)"
    )
    p.add_argument("--list", type=Path, required=True, help="'<folder> <label> <method>' list to score")
    p.add_argument("--data-path", type=Path, required=True, help="face-crop root")
    p.add_argument("--out", type=Path, help="write metrics.json, predictions.csv, roc.png here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument(
        "--only-multi-identity", action="store_true", help="keep videos with >= 2 identity folders"
    )
    p.add_argument("--methods", type=int, nargs="*", help="keep these method ids")
    p.add_argument("--max-videos", type=int, default=-1)
    p.add_argument("--cache-dir", type=Path, help="feature cache (used when the backbone is the stock one)")
    p.add_argument("--max-identities", type=int, help="override the checkpoint's max_identities")
    p.add_argument("--mask-regime", choices=["correct", "all_true"], help="override the checkpoint's regime")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")


def _method_names(list_file: Path) -> dict[int, str] | None:
    """Method names of a synthetic benchmark (its synth_meta.json next to the lists folder)."""
    for cand in (list_file.parent / "synth_meta.json", list_file.parent.parent / "synth_meta.json"):
        if cand.is_file():
            try:
                return {int(k): v for k, v in json.loads(cand.read_text())["methods"].items()}
            except (KeyError, ValueError, json.JSONDecodeError):
                return None
    return None


def run_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_checkpoint, format_report

    rep = evaluate_checkpoint(
        args.checkpoint,
        args.list,
        args.data_path,
        args.out,
        device=args.device,
        batch_size=args.batch_size,
        workers=args.workers,
        only_multi_identity=args.only_multi_identity,
        methods=args.methods,
        max_videos=args.max_videos,
        cache_dir=args.cache_dir,
        method_names=_method_names(args.list),
        max_identities=args.max_identities,
        mask_regime=args.mask_regime,
    )
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(f"{rep['model']} ({rep['backbone']}) {args.checkpoint} on {args.list}")
        print(format_report(rep))
        if args.out:
            print(f"written: {', '.join(rep.get('outputs', {}).values())}")
    return 0


# --- synth -------------------------------------------------------------------------------------------------------
def _default_data_dir() -> Path:
    shared = os.environ.get("MINTIME_SHARED")
    if shared:
        return Path(shared) / "data"
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _three(text: str) -> dict[str, int]:
    parts = [int(v) for v in text.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("give three counts: train,val,test")
    return dict(zip(("train", "val", "test"), parts, strict=True))


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    """``mintime synth --out DIR`` (synthetic face-swap benchmark from real clips)."""
    p.add_argument("--out", type=Path, required=True, help="output folder (videos/, faces/, lists/)")
    p.add_argument(
        "--data-dir", type=Path, default=None, help="folder with videos/ and images/ (../shared/data)"
    )
    p.add_argument("--videos", type=Path, nargs="*", help="source videos (default: data-dir/videos/*.mp4)")
    p.add_argument("--images", type=Path, nargs="*", help="source images (default: the four portraits)")
    p.add_argument(
        "--singles", type=_three, default="100,28,32", help="single-person base clips train,val,test"
    )
    p.add_argument("--pairs", type=_three, default="90,26,40", help="two-person base clips train,val,test")
    p.add_argument(
        "--both-fake-fraction", type=float, default=0.3, help="pairs that also get a both-swapped clip"
    )
    p.add_argument("--clip-frames", type=int, default=40)
    p.add_argument("--layout-frames", type=int, default=16, help="frames sampled per clip for the face crops")
    p.add_argument("--strength", type=float, default=1.0, help="artefact strength (lower = subtler)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-progress", action="store_true")


def run_synth(args: argparse.Namespace) -> int:
    from training.synth import SynthConfig, default_sources, generate

    data_dir = args.data_dir or _default_data_dir()
    videos, images = default_sources(data_dir) if data_dir.is_dir() else ([], [])
    if args.videos is not None:
        videos = [str(v) for v in args.videos]
    if args.images is not None:
        images = [str(i) for i in args.images]
    if not videos and not images:
        print(f"no source videos/images (looked in {data_dir}); give --videos/--images", file=sys.stderr)
        return 2
    singles = args.singles if isinstance(args.singles, dict) else _three(args.singles)
    pairs = args.pairs if isinstance(args.pairs, dict) else _three(args.pairs)
    cfg = SynthConfig(
        out=str(args.out),
        videos=videos,
        images=images,
        singles=singles,
        pairs=pairs,
        both_fake_fraction=args.both_fake_fraction,
        clip_frames=args.clip_frames,
        layout_frames=args.layout_frames,
        strength=args.strength,
        seed=args.seed,
        workers=args.workers,
    )
    s = generate(cfg, progress=not args.no_progress)
    print(
        f"{s['done']} clips written, {s['skipped']} already done, {len(s['failed'])} failed ({s['seconds']} s)"
    )
    for split, c in s["counts"].items():
        print(f"  {split}: {c}")
    print(f"lists: {', '.join(s['lists'].values())}")
    return 1 if s["failed"] else 0
