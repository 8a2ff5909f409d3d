"""``mintime export``: weights → ONNX (+ TensorRT) → new versions in the model repository.

Wired into :mod:`mintime.cli` through :func:`add_arguments` and :func:`run`; the work is
:func:`export.workflow.export_to_repository`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "source_record", "source_files", "networks_to_export"]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mintime export``."""
    from export.repository import default_export_repository
    from mintime.cli import add_weights_arguments

    add_weights_arguments(parser)
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=default_export_repository(),
        help="the repository to write (seeded from the committed model_repository/ with what it lacks; the "
        "committed one is never written). Default: %(default)s (git-ignored)",
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
        help="do nothing for a network whose served version is a complete, verified export of these weights "
        "with its artifact (with --trt: a model.plan tagged with this TensorRT and this GPU, else model.onnx): "
        "what the Docker entrypoint runs at every start",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="export nothing: check that the served backbone and temporal versions are complete, verified and "
        "from the same weights (exit 1 naming both otherwise)",
    )
    parser.add_argument(
        "--onnx-dir", type=Path, help="also copy backbone.onnx/temporal.onnx here (predict --onnx-dir)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def source_files(args: argparse.Namespace) -> dict[str, Path]:
    """The weight files an export is made from: ``{role: path}``."""
    from mintime.networks import DEFAULT_CHECKPOINT

    if args.model_weights is not None:
        return {"model_weights": Path(args.model_weights), "extractor_weights": Path(args.extractor_weights)}
    return {"checkpoint": Path(args.checkpoint or DEFAULT_CHECKPOINT)}


def source_record(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    """What the export was made from: files with their SHA-256, plus the loader's description."""
    from export.repository import sha256_file

    record: dict[str, Any] = {
        k: {"path": str(v.resolve()), "sha256": sha256_file(v)} for k, v in source_files(args).items()
    }
    record["loader"] = json.loads(json.dumps(info, default=str))
    return record


def networks_to_export(repo_dir: Path, networks: list[str], trt: str, weights: dict[str, str]) -> list[str]:
    """The networks ``--if-missing`` must export: those whose served version is not a trusted export of
    ``weights`` (``{role: sha256}``) holding its artifact (``model.plan`` with ``trt="require"``, else
    ``model.onnx``)."""
    from export import repository as repo

    name = "model.plan" if trt == "require" else "model.onnx"
    missing = []
    for network in networks:
        model_dir = repo_dir / network
        latest = repo.latest_version(model_dir)
        vdir = model_dir / str(latest)
        ok = (
            latest is not None
            and repo.is_exported(vdir)
            and repo.version_problem(vdir) is None
            and (vdir / name).is_file()
            and repo.weights_id(json.loads((vdir / repo.PROVENANCE_FILENAME).read_text())["source"])
            == weights
        )
        if ok and trt == "require":  # a plan counts only when built here: this TensorRT, this GPU (its tag)
            from export.tensorrt import plan_matches

            ok, why = plan_matches(vdir / "model.plan")
            if not ok:
                logger.warning("%s: (re)building the TensorRT engine: %s", network, why)
        if not ok:
            missing.append(network)
    return missing


def _check(repo_dir: Path, config_name: str | None) -> int:
    from export.repository import MixedExportError, check_served_pair

    try:
        pair = check_served_pair(repo_dir, config_name=config_name)
    except MixedExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for served in pair:
        print(f"ok: {served.describe()}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Load the weights, export, print a summary."""
    from export.workflow import ExportOptions, export_to_repository
    from mintime.networks import load_networks

    repo_dir: Path = args.model_repository
    if args.check:
        return _check(repo_dir, "production" if args.trt == "require" else None)
    networks = list(args.networks)
    if args.if_missing:
        from export.repository import sha256_file, weights_id

        wanted = weights_id({k: {"sha256": sha256_file(v)} for k, v in source_files(args).items()})
        networks = networks_to_export(repo_dir, networks, args.trt, wanted)
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
        with warnings.catch_warnings():
            # torch's TorchScript exporter warns that it cannot fold Slice ops with steps > 1 (the graphs are
            # checked against PyTorch anyway): nothing a user can act on
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
            exported = export_to_repository(loaded, opts, source_record(args, loaded.model))
        for r in exported:
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
                "tensorrt_precision": (r.tensorrt or {}).get("precision"),
                "fp16_engine_rejected": (r.tensorrt or {}).get("fp16_rejected"),
                "removed_versions": r.removed_versions,
            }
    else:
        summary["note"] = "every network already has a complete export of these weights (--if-missing)"
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for name, s in summary["networks"].items():
            trt = (
                f"TensorRT {s['tensorrt_precision']} engine built"
                if s["tensorrt"]
                else "no TensorRT engine"  # why is said once, above
            )
            if s["fp16_engine_rejected"]:
                trt += f" (the fp16 engine failed its parity check, rebuilt from model.onnx: {s['fp16_engine_rejected']})"
            print(
                f"{name}: version {s['version']} at {s['path']}, dims {s['dims']}, fp16 ONNX kept: {s['fp16']}, "
                f"{trt}; removed versions {s['removed_versions']}"
            )
        if "note" in summary:
            print(summary["note"])
        print(f"serve it: mintime serve --model-repository {repo_dir}")
    return 0
