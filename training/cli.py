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
import zipfile
from pathlib import Path

from mintime.config import DEFAULTS, EMBEDDERS, TRAINING_NUM_FRAMES

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
    "add_sbi_arguments",
    "run_sbi",
]

logger = logging.getLogger(__name__)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults appended to every option's help (except unset ones and flags); descriptions and epilogs kept as
    written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "%(default)" in text:
            return text
        return super()._get_help_string(action) or text


def _describe(p: argparse.ArgumentParser, description: str, epilog: str | None = None) -> None:
    """Give a subcommand parser (created by :mod:`mintime.cli`) its description, epilog and help layout."""
    p.formatter_class = HelpFormatter
    p.description = description
    p.epilog = epilog


def _device(name: str) -> str:
    """Check ``--device`` before any work (one clear line for a device this machine does not have)."""
    from mintime.devices import check_device

    check_device(name)
    return name


# --- preprocess --------------------------------------------------------------------------------------------------
def add_preprocess_arguments(p: argparse.ArgumentParser) -> None:
    """``mintime preprocess VIDEOS_OR_DIRS --out DIR``."""
    _describe(
        p,
        "Detect faces in videos and write the face-crop layout that `mintime train` reads: one folder per video\n"
        "(boxes.json + one sub-folder of square crops per identity). The stages are those of `mintime predict`.\n"
        "Finished videos are skipped, so a second run does no work; failures are listed and retried next time.",
        "example:\n  mintime preprocess videos/ --out data/faces --workers 2\n\n"
        "An undecodable video gives one FAILED line on stderr (its traceback with `mintime -v preprocess ...`).",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="video files and/or folders (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output root of the face-crop layout")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--num-frames", type=int, default=TRAINING_NUM_FRAMES, help="frames sampled per video")
    p.add_argument("--detect-scale", type=float, default=0.5, help="MTCNN input scale")
    p.add_argument(
        "--embedder",
        choices=EMBEDDERS,
        default=DEFAULTS.embedder,
        help="identity embedder (resnet: dlib's network batched in PyTorch, tracklets first; dlib: the reference)",
    )
    p.add_argument("--embedder-weights", type=Path, help="FaceNet weights (with --embedder facenet)")
    p.add_argument(
        "--min-cluster-ratio",
        type=float,
        default=0.2,
        help="drop identities smaller than this share of faces",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_preprocess(args: argparse.Namespace) -> int:
    from training.preprocess import find_videos, preprocess

    cfg = DEFAULTS.replace(
        num_frames=args.num_frames,
        detect_scale=args.detect_scale,
        embedder=args.embedder,
        embedder_weights=str(args.embedder_weights) if args.embedder_weights else None,
        min_cluster_ratio=args.min_cluster_ratio,
        device=_device(args.device),
    )
    missing = [str(p) for p in args.inputs if not p.exists()]
    if missing:
        raise FileNotFoundError(f"not found: {', '.join(missing)}")
    if not find_videos(args.inputs):
        print("error: no video files found (nothing written)", file=sys.stderr)
        return 2
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
    _describe(
        p,
        "Write train.csv and val.csv (a stratified share of every method moved to validation) and, with\n"
        "--test-list, test.csv, into --out. Nothing moves on disk. Every list must hold both classes and at least\n"
        "--min-videos videos, otherwise nothing is written (AUC and early stopping need both classes).",
        "list format: one video per line, '<face folder> <label 0|1> [...] <method id>', space separated.\n\n"
        "example:\n  mintime split --train-list forgerynet/train_list.txt --test-list forgerynet/val_list.txt \\\n"
        "      --data-path data/faces --out data/lists --path-map train_video_release/=train/",
    )
    p.add_argument(
        "--train-list", type=Path, required=True, help="list to split: '<path> <label> ... <method>'"
    )
    p.add_argument(
        "--test-list", type=Path, help="list copied to test.csv (ForgeryNet Validation in the paper)"
    )
    p.add_argument("--data-path", type=Path, help="face-crop root: drop rows whose folder has no crop")
    p.add_argument("--out", type=Path, required=True, help="folder for train.csv, val.csv, test.csv")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of each method moved to val")
    p.add_argument("--seed", type=int, default=42, help="random seed of the split")
    p.add_argument(
        "--path-map",
        action="append",
        default=[],
        metavar="OLD=NEW",
        help="replace a path prefix (repeatable)",
    )
    p.add_argument(
        "--min-videos", type=int, default=10, help="smallest acceptable list (each of train/val/test)"
    )
    p.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="write the lists even when one lacks a class or has fewer than --min-videos videos (warns instead)",
    )


def _path_map(items: list[str]) -> dict[str, str]:
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ValueError(f"--path-map takes OLD=NEW, got {', '.join(map(repr, bad))}")
    return dict(item.split("=", 1) for item in items)


def run_split(args: argparse.Namespace) -> int:
    from training.split import split_lists

    path_map = _path_map(args.path_map)
    s = split_lists(
        args.train_list,
        args.out,
        test_list=args.test_list,
        data_path=args.data_path,
        val_fraction=args.val_fraction,
        seed=args.seed,
        path_map=path_map or None,
        min_videos=args.min_videos,
        allow_incomplete=args.allow_incomplete,
    )
    for name, counts in s.counts.items():
        methods = ", ".join(f"{k.split('_')[1]}:{v}" for k, v in counts.items() if k.startswith("method_"))
        print(
            f"{name}: {counts['total']} videos ({counts['real']} real / {counts['fake']} fake; methods {methods})"
        )
    for name, n in s.missing.items():
        if n:
            print(f"{name}: {n} rows dropped (no face folder under {args.data_path})")
    for warning in s.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"lists written to {args.out}")
    return 0


# --- train -------------------------------------------------------------------------------------------------------
def _presets() -> str:
    """``name  summary`` of every shipped preset (its leading comment, shortened to one line)."""
    import textwrap

    from training.config import CONFIG_DIR

    lines = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        comment = []
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("# ").strip())
        summary = textwrap.shorten(" ".join(comment), width=82, placeholder=" ...")
        lines.append(f"  {path.stem:<14} {summary}")
    return "\n".join(lines)


def _config_keys(width: int = 100) -> str:
    """Every config key with its default, wrapped (``key=default`` pairs)."""
    import textwrap

    from training.config import TrainConfig

    pairs = " ".join(
        f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in TrainConfig().to_dict().items()
    )
    return textwrap.fill(
        pairs, width=width, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False
    )


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """``mintime train --config FILE [key=value ...]`` (also under ``torchrun``)."""
    _describe(
        p,
        "Train MINTIME or the frame baseline on a face-crop layout. Settings: dataclass defaults <- --config\n"
        "(a yaml file or a shipped preset) <- key=value overrides. One line per epoch on stderr (losses, val AUC,\n"
        "time per epoch, ETA); best.pt, last.pt, last.state.pt, config.yaml, summary.json and tb/ (TensorBoard)\n"
        "go to output_dir. A non-empty output_dir is refused unless --resume or --overwrite.",
        f"shipped presets (training/configs/):\n{_presets()}\n\n"
        f"config keys and their defaults (docs/training.md explains them):\n{_config_keys()}\n\n"
        "examples:\n"
        "  mintime train --config demo data_path=outputs/synth/faces train_list=outputs/synth/lists/train.csv \\\n"
        "      val_list=outputs/synth/lists/val.csv output_dir=outputs/demo\n"
        "  mintime train --config outputs/demo/config.yaml --resume auto epochs=40     # continue / extend\n"
        "  torchrun --nproc_per_node 2 -m mintime.cli train --config ...                # several processes",
    )
    p.add_argument("--config", help="yaml file or shipped preset name (see below)")
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. lr=1e-3 temporal.depth=2"
    )
    p.add_argument("--output-dir", help="same as output_dir=... (default: outputs/train)")
    p.add_argument("--resume", help="a *.state.pt file, or 'auto' (<output_dir>/last.state.pt)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in a non-empty output_dir (its run files are removed)",
    )
    p.add_argument("--device", help="auto, cpu, cuda (default: the config's, auto)")
    p.add_argument("--no-progress", action="store_true", help="no per-epoch lines (they go to the -v log)")


def run_train(args: argparse.Namespace) -> int:
    from training.config import load_config
    from training.train import main

    overrides = list(args.overrides)
    for key in ("output_dir", "resume", "device"):
        if getattr(args, key, None):
            overrides.append(f"{key}={getattr(args, key)}")
    cfg = load_config(args.config, overrides)
    summary = main(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"best epoch {summary['best_epoch'] + 1} (val loss {summary['best_val_loss']:.4f}); "
            f"{summary['epochs_completed']} epochs{' (stopped early)' if summary['stopped_early'] else ''}; "
            f"checkpoint {summary['checkpoint']}"
        )
    return 0


# --- evaluate ----------------------------------------------------------------------------------------------------
def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """``mintime evaluate --checkpoint CK --list test.csv --data-path FACES [--out DIR]``."""
    _describe(
        p,
        "Score every video of a list with a trained checkpoint (MINTIME or baseline) and print accuracy, AUC, F1,\n"
        "AP and EER: overall, for multi-identity videos, per method, and (MINTIME) how often the most-attended\n"
        "identity is the manipulated one. Slots are built as at inference; slots, identities and mask regime\n"
        "default to the checkpoint's training config.",
        "example:\n  mintime evaluate --checkpoint outputs/demo/best.pt --list outputs/synth/lists/test.csv \\\n"
        "      --data-path outputs/synth/faces --out outputs/demo/test",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        help="best.pt of `mintime train` (MINTIME or baseline); with --videos it may be repeated, and "
        "'default' names the shipped default model (the default with --videos)",
    )
    p.add_argument("--list", type=Path, help="'<folder> <label> <method>' list to score")
    p.add_argument("--data-path", type=Path, help="face-crop root")
    p.add_argument(
        "--videos",
        type=Path,
        help="instead of --list/--data-path: a folder of videos with labels.tsv (path, real|fake, pair), scored "
        "end to end as `mintime predict` does, by every --checkpoint",
    )
    p.add_argument(
        "--num-frames", type=int, default=DEFAULTS.num_frames, help="frames sampled per video (--videos)"
    )
    p.add_argument("--out", type=Path, help="write metrics.json, predictions.csv, roc.png here")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--batch-size", type=int, default=8, help="videos per forward")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument(
        "--only-multi-identity", action="store_true", help="keep videos with >= 2 identity folders"
    )
    p.add_argument("--methods", type=int, nargs="*", help="keep these method ids (default: all)")
    p.add_argument("--max-videos", type=int, default=-1, help="score at most this many videos (-1 = all)")
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


def _run_evaluate_videos(args: argparse.Namespace, device: str) -> int:
    from mintime.fileio import atomic_write
    from training.video_eval import evaluate_videos, format_video_report

    checkpoints = [None if str(c) == "default" else c for c in (args.checkpoint or [Path("default")])]
    for c in checkpoints:
        if c is not None and not c.is_file():
            raise FileNotFoundError(f"checkpoint not found: {c}")
    if not args.videos.is_dir():
        raise FileNotFoundError(f"video folder not found: {args.videos}")

    def progress(k: int, n: int, rel: str) -> None:
        if not args.json:
            print(f"[{k + 1}/{n}] {rel}", file=sys.stderr, flush=True)

    rep = evaluate_videos(
        args.videos, checkpoints, num_frames=args.num_frames, device=device, progress=progress
    )
    if args.out:
        with atomic_write(args.out / "video_metrics.json") as fh:
            fh.write(json.dumps(rep, indent=2).encode())
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        print(format_video_report(rep))
        if args.out:
            print(f"written: {args.out / 'video_metrics.json'}")
    return 1 if rep["failed"] else 0


def run_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_checkpoint, format_report

    device = _device(args.device)
    if args.videos is not None:
        return _run_evaluate_videos(args, device)
    if args.list is None or args.data_path is None or not args.checkpoint:
        raise ValueError("give --checkpoint, --list and --data-path (or --videos DIR with labels.tsv)")
    if len(args.checkpoint) > 1:
        raise ValueError("--checkpoint may be repeated only with --videos")
    args.checkpoint = args.checkpoint[0]
    for what, path in (("checkpoint", args.checkpoint), ("list", args.list), ("data path", args.data_path)):
        if not path.exists():
            raise FileNotFoundError(f"{what} not found: {path}")
    if not zipfile.is_zipfile(
        args.checkpoint
    ):  # torch.save writes zip archives; anything else is no checkpoint
        raise ValueError(f"{args.checkpoint}: not a checkpoint (expected best.pt of `mintime train`)")
    rep = evaluate_checkpoint(
        args.checkpoint,
        args.list,
        args.data_path,
        args.out,
        device=device,
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
        print(f"{args.checkpoint} on {args.list} (data: {args.data_path})")
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
    try:
        parts = [int(v) for v in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or min(parts) < 0:
        raise argparse.ArgumentTypeError(f"give three counts train,val,test (e.g. 90,26,40), got {text!r}")
    return dict(zip(("train", "val", "test"), parts, strict=True))


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    """``mintime synth --out DIR`` (synthetic face-swap benchmark from real clips)."""
    _describe(
        p,
        "Build the synthetic face-swap benchmark the demo model is trained on: short clips cut from real videos\n"
        "and portraits, each in a pristine version and versions with one or both identities swapped, encoded\n"
        "as H.264 (videos/), laid out as face crops (faces/) with train/val/test lists (lists/). Methods:\n"
        "0 pristine, 1 single identity swapped, 2 one of two identities swapped, 3 both swapped. A second run\n"
        "completes a partial build.",
        "example (the demo benchmark, ~6 min on 2 CPU cores):\n"
        "  mintime synth --out outputs/synth --pairs 90,26,50 --workers 2",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (videos/, faces/, lists/)")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with videos/ and images/ (default: ../shared/data)",
    )
    p.add_argument("--videos", type=Path, nargs="*", help="source videos (default: data-dir/videos/*.mp4)")
    p.add_argument("--images", type=Path, nargs="*", help="source images (default: the four portraits)")
    p.add_argument(
        "--singles",
        type=_three,
        default="100,28,32",
        help="single-person base clips per split train,val,test",
    )
    p.add_argument("--pairs", type=_three, default="90,26,40", help="two-person base clips train,val,test")
    p.add_argument(
        "--both-fake-fraction",
        type=float,
        default=0.3,
        help="share of pairs that also get a both-swapped clip",
    )
    p.add_argument("--clip-frames", type=int, default=40, help="frames per clip")
    p.add_argument("--layout-frames", type=int, default=16, help="frames sampled per clip for the face crops")
    p.add_argument("--strength", type=float, default=1.0, help="artefact strength 0..1 (lower = subtler)")
    p.add_argument("--seed", type=int, default=0, help="recipe seed (the benchmark is a function of it)")
    p.add_argument("--workers", type=int, default=1, help="processes rendering clips")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_synth(args: argparse.Namespace) -> int:
    from training.synth import SynthConfig, default_sources, generate

    data_dir = args.data_dir or _default_data_dir()
    videos, images = default_sources(data_dir) if data_dir.is_dir() else ([], [])
    if args.videos is not None:
        videos = [str(v) for v in args.videos]
    if args.images is not None:
        images = [str(i) for i in args.images]
    if not videos and not images:
        print(
            f"error: no source videos/images (looked in {data_dir}); give --videos/--images", file=sys.stderr
        )
        return 2
    missing = [p for p in videos + images if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"source not found: {', '.join(missing)}")
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
    for name, err in s["failed"].items():
        print(f"FAILED {name}: {err}", file=sys.stderr)
    return 1 if s["failed"] else 0


# --- sbi ---------------------------------------------------------------------------------------------------------
def add_sbi_arguments(p: argparse.ArgumentParser) -> None:
    """``mintime sbi --real DIR --out RUN [--validation DIR]``."""
    from training.sbi_config import SbiConfig

    d = SbiConfig()
    _describe(
        p,
        "Train a MINTIME model that detects face swaps from real faces alone (self-blended images): build a\n"
        "frame bank (faces, boxes, 68 landmarks) of the real videos, fine-tune EfficientNet-Lite0 on real/blended\n"
        "pairs, then train the temporal model on real and blended identity tracks. Every step resumes from what\n"
        "--out holds (rerun the same command after an interruption). Writes <out>/sbi.pt, the frozen-ImageNet\n"
        "baseline <out>/imagenet.pt and <out>/summary.json. docs/training.md describes the recipe.",
        "example:\n  mintime sbi --real ../shared/data/real_faces/arabic_news \\\n"
        "      --validation ../shared/data/validation/faceswap_pairs --out outputs/sbi",
    )
    p.add_argument("--real", type=Path, required=True, help="folder of real videos (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="run folder (bank/, checkpoints, logs)")
    p.add_argument(
        "--validation", type=Path, help="folder with labels.tsv for model selection and the threshold"
    )
    p.add_argument("--frames-per-video", type=int, default=16, help="frames of each real video in the bank")
    p.add_argument("--max-videos", type=int, help="use only the first N real videos")
    p.add_argument(
        "--frame-minutes", type=float, default=d.frame_minutes, help="time budget of the frame step"
    )
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="frame steps between validations")
    p.add_argument("--frozen-blocks", type=int, default=d.frozen_blocks, help="backbone blocks kept frozen")
    p.add_argument("--track-videos", type=int, default=d.track_videos, help="videos turned into tracks")
    p.add_argument(
        "--temporal-epochs", type=int, default=d.temporal_epochs, help="epochs of the temporal step"
    )
    p.add_argument(
        "--target-fpr",
        type=float,
        default=d.target_fpr,
        help="share of validation reals allowed above the threshold",
    )
    p.add_argument("--no-baseline", action="store_true", help="skip the frozen-ImageNet baseline")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of every draw")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads")


def run_sbi(args: argparse.Namespace) -> int:
    import time

    from training.sbi_bank import build_bank
    from training.sbi_config import SbiConfig
    from training.sbi_train import run

    if not args.real.exists():
        raise FileNotFoundError(f"real video folder not found: {args.real}")
    if args.validation is not None and not (args.validation / "labels.tsv").is_file():
        raise FileNotFoundError(f"{args.validation / 'labels.tsv'} not found (--validation needs labels.tsv)")
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{(time.perf_counter() - t0) / 60:6.1f} min] {msg}", file=sys.stderr, flush=True)

    bank = args.out / "bank"
    if not (bank / "bank.json").is_file():
        build_bank(
            args.real,
            bank,
            frames_per_video=args.frames_per_video,
            max_videos=args.max_videos,
            progress=lambda k, n, s: log(f"bank: chunk {k}/{n}, ETA {s / k * (n - k) / 60:.1f} min"),
        )
    cfg = SbiConfig(
        bank=str(bank),
        out=str(args.out),
        validation=str(args.validation) if args.validation else None,
        seed=args.seed,
        threads=args.threads,
        frame_minutes=args.frame_minutes,
        eval_every=args.eval_every,
        frozen_blocks=args.frozen_blocks,
        track_videos=args.track_videos,
        temporal_epochs=args.temporal_epochs,
        target_fpr=args.target_fpr,
    )
    summary = run(cfg, baseline=not args.no_baseline, log=log)
    print(
        json.dumps(
            {k: v.get("checkpoint") for k, v in summary.items() if isinstance(v, dict) and "checkpoint" in v}
        )
    )
    return 0
