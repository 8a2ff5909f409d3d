"""``mintime export``: weights → ONNX (+ TensorRT) → new versions in the model repository.

Wired into :mod:`mintime.cli` through :func:`add_arguments` and :func:`run`; the work is
:func:`export.workflow.export_to_repository`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "source_record"]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mintime export``."""
    from mintime.cli import add_weights_arguments
    from mintime.serving.server import default_model_repository

    add_weights_arguments(parser)
    parser.add_argument(
        "--model-repository", type=Path, default=default_model_repository(), help="default: %(default)s"
    )
    parser.add_argument(
        "--networks",
        nargs="+",
        choices=["backbone", "temporal"],
        default=["backbone", "temporal"],
        help="default: both",
    )
    parser.add_argument(
        "--keep", type=int, default=2, help="versions kept per model, the new one included (default 2)"
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--check-batches",
        type=int,
        nargs="+",
        default=[1, 3],
        help="ONNX Runtime parity batch sizes (default 1 3)",
    )
    parser.add_argument("--no-fp16", dest="fp16", action="store_false", help="skip the fp16 ONNX graph")
    trt = parser.add_mutually_exclusive_group()
    trt.add_argument(
        "--trt",
        dest="trt",
        action="store_const",
        const="require",
        help="build TensorRT engines (fail without TensorRT)",
    )
    trt.add_argument(
        "--no-trt", dest="trt", action="store_const", const="off", help="never build TensorRT engines"
    )
    parser.set_defaults(trt="auto")
    parser.add_argument(
        "--max-batch", type=int, default=None, help="TensorRT profile max (default: production config)"
    )
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing for a network whose served version already has its artifact (with --trt: a model.plan "
        "tagged with this TensorRT and this GPU, else model.onnx): what the Docker entrypoint runs at every start",
    )
    parser.add_argument(
        "--dali", action="store_true", help="also serialize video_decode/<version>/model.dali"
    )
    parser.add_argument(
        "--dali-device", default="mixed", choices=["mixed", "cpu"], help="DALI decoder (default mixed)"
    )
    parser.add_argument(
        "--onnx-dir", type=Path, help="also copy backbone.onnx/temporal.onnx here (predict --onnx-dir)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def source_record(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    """What the export was made from: files with their SHA-256, plus the loader's description."""
    from export.repository import sha256_file
    from mintime.networks import DEMO_CHECKPOINT

    files = {}
    if args.model_weights is not None:
        files = {"model_weights": args.model_weights, "extractor_weights": args.extractor_weights}
    else:
        files = {"checkpoint": args.checkpoint or DEMO_CHECKPOINT}
    record: dict[str, Any] = {
        k: {"path": str(Path(v).resolve()), "sha256": sha256_file(v)} for k, v in files.items()
    }
    record["loader"] = json.loads(json.dumps(info, default=str))
    return record


def _has_artifact(model_dir: Path, trt: str) -> bool:
    from export.repository import latest_version

    latest = latest_version(model_dir)
    if latest is None:
        return False
    if trt == "require":  # a plan counts only when built here: this TensorRT, this GPU (its tag)
        from export.tensorrt import plan_matches

        ok, why = plan_matches(model_dir / str(latest) / "model.plan")
        if not ok:
            logger.warning("%s: (re)building the TensorRT engine: %s", model_dir.name, why)
        return ok
    return (model_dir / str(latest) / "model.onnx").is_file()


def run(args: argparse.Namespace) -> int:
    """Load the weights, export, print a summary."""
    from export.workflow import ExportOptions, export_to_repository, serialize_dali
    from mintime.networks import load_networks

    repo_dir: Path = args.model_repository
    networks = list(args.networks)
    if args.if_missing:
        networks = [n for n in networks if not _has_artifact(repo_dir / n, args.trt)]
    summary: dict[str, Any] = {"model_repository": str(repo_dir), "networks": {}}
    if networks:
        loaded = load_networks(
            checkpoint=args.checkpoint,
            model_weights=args.model_weights,
            extractor_weights=args.extractor_weights,
            variant=args.variant,
        )
        opts = ExportOptions(
            model_repository=repo_dir,
            networks=networks,
            keep=args.keep,
            opset=args.opset,
            check_batches=args.check_batches,
            fp16=args.fp16,
            trt=args.trt,
            max_batch=args.max_batch,
            onnx_dir=args.onnx_dir,
        )
        for r in export_to_repository(loaded, opts, source_record(args, loaded.model)):
            summary["networks"][r.network] = {
                "version": r.version,
                "path": str(r.version_dir),
                "dims": r.dims,
                "max_abs_error": r.parity["max_abs_error"],
                "fp16": None if r.fp16 is None else r.fp16.get("kept"),
                "tensorrt": r.tensorrt.get("built") if r.tensorrt else False,
                "tensorrt_note": None
                if not r.tensorrt or r.tensorrt.get("built")
                else r.tensorrt.get("reason"),
                "removed_versions": r.removed_versions,
            }
    else:
        summary["note"] = "every network already has its artifact (--if-missing)"
    if args.dali:
        try:
            summary["dali"] = str(serialize_dali(repo_dir, device=args.dali_device))
        except Exception as exc:  # DALI missing or an operator it lacks: a served model would not load
            print(
                f"error: the DALI pipeline could not be serialized: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return 1
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for name, s in summary["networks"].items():
            trt = "TensorRT engine built" if s["tensorrt"] else f"no TensorRT engine ({s['tensorrt_note']})"
            print(
                f"{name}: version {s['version']} at {s['path']}, dims {s['dims']}, fp16 ONNX kept: {s['fp16']}, "
                f"{trt}; removed versions {s['removed_versions']}"
            )
        if "note" in summary:
            print(summary["note"])
        if summary.get("dali"):
            print(f"video_decode: {summary['dali']}")
    return 0
