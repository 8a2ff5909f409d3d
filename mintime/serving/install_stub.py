"""Copy the Python-backend stub into the bundled tritonserver's backend folder.

The ``nvidia-pytriton`` wheel ships ``tritonserver`` 2.51 with the Python backend, but keeps one stub per Python
version under ``python_backend_stubs/<major>.<minor>/``; the server looks for it next to
``backends/python/libtriton_python.so``. The stub must stay inside pytriton's folder (it finds its libraries by
relative path), so it is copied, not linked. Run once per virtual environment::

    python -m mintime.serving.install_stub
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

__all__ = ["pytriton_server_dir", "stub_source", "stub_target", "install_stub", "main"]

logger = logging.getLogger(__name__)

STUB_NAME = "triton_python_backend_stub"


def pytriton_server_dir() -> Path:
    """The ``tritonserver`` folder inside the installed ``pytriton`` package.

    Raises:
        RuntimeError: pytriton is not installed.
    """
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "nvidia-pytriton is not installed: `pip install nvidia-pytriton==0.7.0` (it bundles tritonserver 2.51)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "tritonserver"


def stub_source(server_dir: Path, python_version: str | None = None) -> Path:
    """The stub built for ``python_version`` (default: this interpreter's ``major.minor``)."""
    version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"
    return server_dir / "python_backend_stubs" / version / STUB_NAME


def stub_target(server_dir: Path) -> Path:
    """Where the Python backend looks for its stub."""
    return server_dir / "backends" / "python" / STUB_NAME


def install_stub(
    server_dir: Path | None = None, python_version: str | None = None, *, force: bool = False
) -> Path:
    """Copy the stub for this Python into ``backends/python/`` (idempotent).

    Returns:
        The installed stub's path.

    Raises:
        RuntimeError: pytriton is missing or has no stub for this Python version.
    """
    server_dir = server_dir or pytriton_server_dir()
    src, dst = stub_source(server_dir, python_version), stub_target(server_dir)
    if not src.is_file():
        have = sorted(p.name for p in (server_dir / "python_backend_stubs").glob("*"))
        raise RuntimeError(f"no Python-backend stub for Python {src.parent.name} in pytriton (has: {have})")
    if dst.is_file() and not force and dst.read_bytes() == src.read_bytes():
        logger.info("stub already installed: %s", dst)
        return dst
    shutil.copy2(src, dst)
    dst.chmod(0o755)
    logger.info("installed %s -> %s", src, dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mintime.serving.install_stub``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python-version", default=None, help="stub for this major.minor (default: this Python)"
    )
    parser.add_argument("--force", action="store_true", help="copy even if an identical stub is installed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = install_stub(python_version=args.python_version, force=args.force)
    except RuntimeError as exc:
        logger.error("%s", exc)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
