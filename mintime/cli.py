"""The ``mintime`` command: one entry point, one subcommand per job.

Subcommands import their modules lazily, so ``mintime --help`` is instant and a missing optional package only
affects the subcommand that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

logger = logging.getLogger("mintime")

# subcommand → (module, add-arguments function, run function, help)
_EXTERNAL = {
    "serve": ("mintime.serving.cli", "add_arguments", "run", "start the local Triton server on loopback"),
    "export": (
        "export.cli",
        "add_arguments",
        "run",
        "export ONNX / TensorRT and refresh the model repository",
    ),
    "preprocess": (
        "training.cli",
        "add_preprocess_arguments",
        "run_preprocess",
        "detect faces and write crops + identity folders",
    ),
    "split": (
        "training.cli",
        "add_split_arguments",
        "run_split",
        "make train/val/test lists from list files",
    ),
    "train": ("training.cli", "add_train_arguments", "run_train", "train MINTIME or the baseline"),
    "evaluate": ("training.cli", "add_evaluate_arguments", "run_evaluate", "evaluate a checkpoint on a list"),
    "synth": ("training.cli", "add_synth_arguments", "run_synth", "build the synthetic forgery benchmark"),
    "sbi": (
        "training.cli",
        "add_sbi_arguments",
        "run_sbi",
        "train a detector on real faces (self-blended images)",
    ),
}

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv"}


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    """``type=`` of options that must be a whole number >= 1 (argparse turns the error into exit 2)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """``type=`` of options that must be a whole number >= 0."""
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    """``type=`` of options that must be a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_weights_arguments(p: argparse.ArgumentParser) -> None:
    """Options that choose the weights (shared by predict and export)."""
    g = p.add_argument_group(
        "weights (default: the shipped default checkpoint, see mintime/weights/MODEL_CARD.md)"
    )
    g.add_argument("--checkpoint", type=Path, help="a project checkpoint (from `mintime train`)")
    g.add_argument("--model-weights", type=Path, help="the authors' MINTIME ..._Model_checkpointN file")
    g.add_argument("--extractor-weights", type=Path, help="the authors' ..._Extractor_checkpointN file")
    g.add_argument(
        "--variant", choices=["xc", "ef"], help="authors' variant: xc = Xception, ef = EfficientNet-B0"
    )


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the face stage (shared by predict and preprocess); defaults from :mod:`mintime.config`."""
    from mintime.config import DEFAULTS, EMBEDDERS, MASK_REGIMES

    g = p.add_argument_group("face stage")
    g.add_argument(
        "--num-frames",
        type=positive_int,
        default=DEFAULTS.num_frames,
        help=f"frames sampled over the clip (default {DEFAULTS.num_frames})",
    )
    g.add_argument(
        "--max-identities",
        type=positive_int,
        default=DEFAULTS.max_identities,
        help=f"identities kept, largest first (default {DEFAULTS.max_identities})",
    )
    g.add_argument(
        "--detect-scale",
        type=positive_float,
        default=DEFAULTS.detect_scale,
        help=f"MTCNN input scale (default {DEFAULTS.detect_scale})",
    )
    g.add_argument(
        "--embedder",
        choices=EMBEDDERS,
        default=DEFAULTS.embedder,
        help="identity embedder (default %(default)s)",
    )
    g.add_argument(
        "--embedder-weights",
        type=Path,
        help="FaceNet InceptionResnetV1 weights, facenet-pytorch's 20180402-114759-vggface2.pt "
        "(needed by --embedder facenet)",
    )
    g.add_argument(
        "--mask-regime",
        choices=MASK_REGIMES,
        default=DEFAULTS.mask_regime,
        help="'all_true' reproduces the original training loader (dummy slots visible; default %(default)s)",
    )


def pipeline_config(args: argparse.Namespace):
    """The :class:`mintime.config.PipelineConfig` of parsed face-stage options."""
    from mintime.config import DEFAULTS

    return DEFAULTS.replace(
        num_frames=args.num_frames,
        detect_scale=args.detect_scale,
        max_identities=args.max_identities,
        embedder=args.embedder,
        embedder_weights=str(args.embedder_weights) if args.embedder_weights else None,
        device=getattr(args, "device", DEFAULTS.device),
        mask_regime=args.mask_regime,
    )


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="classify videos in-process (no server)")
    p.add_argument("videos", nargs="+", type=Path, help="video files or folders")
    p.add_argument("--json", action="store_true", help="print one JSON object per video")
    p.add_argument("--output-video", type=Path, help="write an annotated MP4 (a folder when several videos)")
    p.add_argument(
        "--prefetch",
        type=non_negative_int,
        default=1,
        help="videos decoded ahead in a background thread while the current one is analysed (0: none)",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (cuda where torch sees a GPU, else cpu), cpu or cuda[:N] (default %(default)s)",
    )
    p.add_argument(
        "--onnx-dir", type=Path, help="run the networks with ONNX Runtime from backbone.onnx/temporal.onnx"
    )
    add_weights_arguments(p)
    add_pipeline_arguments(p)
    p.set_defaults(func=run_predict)


def expand_videos(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Files as given; folders expanded to the video files they contain (sorted).

    Returns:
        (videos, folders that hold no video file).
    """
    out: list[Path] = []
    empty: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix.lower() in VIDEO_SUFFIXES and q.is_file())
            out.extend(found)
            if not found:
                empty.append(p)
        else:
            out.append(p)
    return out, empty


def run_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mintime.devices import check_device
    from mintime.engines import OnnxEngines, TorchEngines
    from mintime.explain import human_summary, model_banner
    from mintime.networks import load_networks
    from mintime.pipeline import Predictor

    device = str(check_device(args.device))
    videos, empty = expand_videos(args.videos)
    for folder in empty:
        print(f"warning: no video file in folder {folder}", file=sys.stderr)
    if not videos:
        print("error: no video files found", file=sys.stderr)
        return 2
    if args.embedder == "facenet" and args.embedder_weights is None:
        raise ValueError(
            "--embedder facenet needs --embedder-weights FILE (facenet-pytorch's 20180402-114759-vggface2.pt; "
            "no copy ships with this project), or leave --embedder at its default, resnet"
        )
    if args.embedder_weights is not None and not args.embedder_weights.is_file():
        raise FileNotFoundError(f"--embedder-weights: file not found: {args.embedder_weights}")
    # weights first: a bad weights file is reported before any video is read
    nets = load_networks(
        checkpoint=args.checkpoint,
        model_weights=args.model_weights,
        extractor_weights=args.extractor_weights,
        variant=args.variant,
    )
    # the slot count is the model's (8 for a `tiny` checkpoint, 16 for the published weights)
    cfg = pipeline_config(args).replace(device=device, num_slots=nets.num_slots)
    if cfg.max_identities > cfg.num_slots:
        raise ValueError(
            f"--max-identities {cfg.max_identities} exceeds the model's {cfg.num_slots} face slots"
        )
    if args.onnx_dir:
        engines = OnnxEngines(args.onnx_dir / "backbone.onnx", args.onnx_dir / "temporal.onnx", device)
    else:
        engines = TorchEngines(nets.backbone, nets.head, device=device)
    predictor = Predictor(cfg, engines, model=nets.model)
    out_video = args.output_video
    if out_video is not None and len(videos) > 1:
        out_video.mkdir(parents=True, exist_ok=True)
    if not args.json:
        print(model_banner(nets.model), flush=True)

    # a progress bar only on a terminal (piped, its carriage returns would run into the error lines); otherwise
    # one line on stderr as each video starts, so a long video never leaves the user without output
    bar = tqdm(
        total=len(videos), unit="video", file=sys.stderr, disable=len(videos) < 2 or not sys.stderr.isatty()
    )
    failures = 0
    for i, (video, clip) in enumerate(predictor.decoded(videos, prefetch=args.prefetch), 1):
        if bar.disable:
            count = f" ({i}/{len(videos)})" if len(videos) > 1 else ""
            print(f"analysing {video}{count} ...", file=sys.stderr, flush=True)
        try:
            if isinstance(clip, BaseException):
                raise clip
            result = {"video": str(video), **predictor.predict_decoded(clip)}
            if out_video is not None:
                from mintime.annotate import write_annotated_video

                target = out_video / f"{video.stem}.annotated.mp4" if len(videos) > 1 else out_video
                result["output_video"] = str(write_annotated_video(video, result, target))
        except Exception as exc:  # one video never stops the run: its error line, then the next video
            failures += 1
            if getattr(args, "verbose", 0):  # -v: the traceback, then the one-line error
                bar.write(
                    f"failed on {video}:\n{''.join(traceback.format_exception(exc)).rstrip()}",
                    file=sys.stderr,
                )
            result = {"video": str(video), "status": "error", "error": _one_line(exc)}
        if args.json:
            bar.write(json.dumps(result), file=sys.stdout)
        elif result.get("status") == "error":
            bar.write(human_summary(str(video), result), file=sys.stderr)
        else:
            bar.write(human_summary(video.name, result), file=sys.stdout)
        sys.stdout.flush()
        bar.update(1)
    bar.close()
    return 1 if failures else 0


def _one_line(exc: BaseException) -> str:
    """The message of an expected error, or ``Type: message`` of an unexpected one."""
    from mintime.errors import USER_ERRORS

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, USER_ERRORS) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mintime", description="MINTIME video deepfake detection: predict, train, export, serve."
    )
    from mintime import __version__

    parser.add_argument("--version", action="version", version=f"mintime {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging and tracebacks (-v info, -vv debug)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_predict(sub)
    for name, (module, add_fn, run_fn, help_text) in _EXTERNAL.items():
        p = sub.add_parser(name, help=help_text)
        try:
            mod = importlib.import_module(module)
            getattr(mod, add_fn)(p)  # may import what the subcommand's options need
        except ImportError as exc:  # an optional part is not installed: only this subcommand is unavailable
            p.set_defaults(func=_missing(name, exc))
            continue
        p.set_defaults(func=getattr(mod, run_fn))
    return parser


def _missing(name: str, exc: ImportError):
    def run(_args: argparse.Namespace) -> int:
        print(
            f"`mintime {name}` is unavailable: {exc}. Install the full set with ./setup.sh", file=sys.stderr
        )
        return 2

    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:  # an optional part of the install is missing
        if args.verbose:
            raise
        print(
            f"error: `mintime {args.command}` needs the module {exc.name!r}, which this install lacks "
            "(a client-only install?): run ./setup.sh for the full set",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:  # expected errors: one line; the traceback only with -v
        from mintime.errors import USER_ERRORS

        if args.verbose:
            raise
        hint = "" if isinstance(exc, USER_ERRORS) else " (run with -v for the traceback)"
        print(f"error: {_one_line(exc)}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
