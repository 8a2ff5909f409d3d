"""``mintime serve``: run the model repository on the local tritonserver (nvidia-pytriton's 2.51 build).

Wired into :mod:`mintime.cli` through :func:`add_arguments` and :func:`run`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from mintime.repository import CHECKPOINT_ENV

__all__ = ["add_arguments", "run"]

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mintime serve``."""
    from mintime.repository import default_model_repository

    parser.add_argument(
        "--model-repository", type=Path, default=default_model_repository(), help="default: %(default)s"
    )
    parser.add_argument(
        "--config-name",
        default=None,
        help="--model-config-name for tritonserver: 'gpu' selects configs/gpu.pbtxt (this server on a GPU "
        "machine: DALI/NVDEC decoding, faces and networks on CUDA); 'production' selects configs/production.pbtxt "
        "(TensorRT; only in the NGC image). Default: each model's config.pbtxt (Python backend, CPU)",
    )
    parser.add_argument("--grpc-port", type=int, default=8001, help="default: %(default)s")
    parser.add_argument("--http-port", type=int, default=8000, help="default: %(default)s")
    parser.add_argument("--metrics-port", type=int, default=8002, help="default: %(default)s")
    parser.add_argument(
        "--address",
        default="127.0.0.1",
        help="address all endpoints bind (default loopback only: %(default)s)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="project checkpoint for the backbone/temporal models (sets $MINTIME_CHECKPOINT for the server); "
        "default: the models' 'checkpoint' parameter, else the shipped default checkpoint",
    )
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="seconds (default %(default)s)")
    parser.add_argument(
        "--log-file",
        type=Path,
        default=None,
        help="server log (default: a new file in $MINTIME_LOG_DIR, else ~/.cache/mintime/logs; the last 20 kept)",
    )
    parser.add_argument("--tritonserver", type=Path, default=None, help="another tritonserver binary")
    parser.add_argument("--backend-directory", type=Path, default=None, help="another backend folder")


def checkpoint_overridden(
    model_repository: Path, checkpoint: Path, config_name: str | None = None
) -> str | None:
    """Why ``--checkpoint`` would not be what a network serves (None: it is).

    An exported version (``model.onnx`` / ``model.plan`` with ``export.json``) serves the weights it was
    exported from, whatever ``$MINTIME_CHECKPOINT`` says; serving another checkpoint silently is refused.
    """
    from mintime.fileio import sha256_file
    from mintime.repository import served_version

    wanted = sha256_file(checkpoint)
    for network in ("backbone", "temporal"):
        model_dir = Path(model_repository) / network
        if not model_dir.is_dir():
            continue
        served = served_version(model_dir, config_name=config_name, env={CHECKPOINT_ENV: str(checkpoint)})
        if served.weights and set(served.weights.values()) != {wanted}:
            return (
                f"--checkpoint {checkpoint} would be ignored: {served.describe()}. Export it "
                f"(`mintime export --checkpoint {checkpoint} --model-repository DIR`, then "
                "`mintime serve --model-repository DIR`), or serve a repository without exported versions "
                "(the committed model_repository/)"
            )
    return None


def served_slots(model_repository: Path) -> int | None:
    """F, the face slots the repository's configs are written for (``face_slots_mask`` of the temporal model's
    ``config.pbtxt``; ``mintime export`` writes the checkpoint's); None when it has no such config."""
    import re

    config = Path(model_repository) / "temporal" / "config.pbtxt"
    if not config.is_file():
        return None
    found = re.search(r'name:\s*"face_slots_mask"[^}]*?dims:\s*\[\s*(\d+)\s*\]', config.read_text())
    return int(found.group(1)) if found else None


def checkpoint_slots(checkpoint: Path) -> int | None:
    """F of a project checkpoint (its temporal config's ``num_frames``; a baseline pools any count: None)."""
    from mintime.checkpoints import read_checkpoint

    ck = read_checkpoint(checkpoint)
    config = getattr(ck, "temporal_config", None)
    return int(config.get("num_frames", 16)) if isinstance(config, dict) else None


def run(args: argparse.Namespace) -> int:
    """Start the server, report where it listens, and stop it cleanly on Ctrl-C or SIGTERM."""
    from mintime.serving.server import ServerStartError, TritonServer

    if args.config_name:  # a typo would silently serve every model's default config
        models = [p.parent for p in Path(args.model_repository).glob("*/config.pbtxt")]
        named = [m for m in models if (m / "configs" / f"{args.config_name}.pbtxt").is_file()]
        if models and not named:
            print(
                f"error: no model in {args.model_repository} has configs/{args.config_name}.pbtxt",
                file=sys.stderr,
            )
            return 2
    env = {}
    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            print(f"error: checkpoint not found: {args.checkpoint}", file=sys.stderr)
            return 2
        env[CHECKPOINT_ENV] = str(args.checkpoint.resolve())
        wanted, configured = checkpoint_slots(args.checkpoint), served_slots(args.model_repository)
        if wanted is not None and configured is not None and wanted != configured:
            print(
                f"error: {args.checkpoint} has {wanted} face slots, the configs of {args.model_repository} are "
                f"for {configured}: export it (`mintime export --checkpoint {args.checkpoint} --model-repository "
                "DIR` writes configs for its slots), then `mintime serve --model-repository DIR`",
                file=sys.stderr,
            )
            return 2
        problem = checkpoint_overridden(args.model_repository, args.checkpoint, args.config_name)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    server = TritonServer(
        args.model_repository,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        address=args.address,
        config_name=args.config_name,
        tritonserver=args.tritonserver,
        backend_directory=args.backend_directory,
        env=env,
        log_path=args.log_file,
        startup_timeout=args.startup_timeout,
    )

    def _terminate(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        server.check_ports()  # a taken port is one line, before anything starts
        print(
            f"starting tritonserver on {args.address}: loading the models of {args.model_repository} "
            f"(up to {args.startup_timeout:.0f} s) ...",
            file=sys.stderr,
            flush=True,
        )
        server.start()
        print(
            f"Triton is serving {args.model_repository} on gRPC {server.grpc_url}, HTTP {server.http_url}, "
            f"metrics {server.metrics_url} (log: {server.log_path}); Ctrl-C stops it",
            flush=True,
        )
        for served in server.served:
            print(f"  {served.describe()}", flush=True)
        code = server.wait()
        print(f"tritonserver exited with code {code}\n{server.log_tail()}", file=sys.stderr)
        return 1 if code else 0
    except ServerStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        logger.info("stopping the server")
        code = server.stop()
        print(f"stopped (exit code {code})", file=sys.stderr)
        return 0
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
