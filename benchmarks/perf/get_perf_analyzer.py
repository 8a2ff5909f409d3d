"""Obtain the ``perf_analyzer`` 2.51.0 binary without Docker (see docs/serving.md, "perf_analyzer").

Only ``tritonclient`` wheels up to 2.60.0 carry ``perf_analyzer``, and only 2.51.0's runs on glibc 2.36 (Debian 12).
This script downloads that wheel with ``pip download --no-deps`` (14 MB), extracts just the binary, and links
the two libraries it needs (``libb64.so.0d`` and ``libcudart.so.12``) from ``nvidia_pytriton.libs/`` (they ship
there under hashed names) into a ``lib/`` folder to put on ``LD_LIBRARY_PATH``::

    python benchmarks/perf/get_perf_analyzer.py            # -> .tools/perf_analyzer/{bin,lib}
    LD_LIBRARY_PATH=.tools/perf_analyzer/lib .tools/perf_analyzer/bin/perf_analyzer --help

``run_perf.py`` finds it there by itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

__all__ = [
    "VERSION",
    "WHEEL_MEMBER",
    "LIBRARIES",
    "default_dir",
    "download_wheel",
    "extract_binary",
    "pytriton_libs_dir",
    "link_libraries",
    "install",
    "main",
]

logger = logging.getLogger(__name__)

VERSION = "2.51.0"
WHEEL_MEMBER = f"tritonclient-{VERSION}.data/data/bin/perf_analyzer"
#: soname perf_analyzer asks for -> prefix of the hashed file in nvidia_pytriton.libs/
LIBRARIES = {"libb64.so.0d": "libb64-", "libcudart.so.12": "libcudart-"}


def default_dir() -> Path:
    """``.tools/perf_analyzer`` at the repository root (git-ignored)."""
    return Path(__file__).resolve().parents[2] / ".tools" / "perf_analyzer"


def download_wheel(dest: Path, version: str = VERSION) -> Path:
    """``pip download --no-deps`` the manylinux tritonclient wheel into ``dest``; returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    found = sorted(dest.glob(f"tritonclient-{version}-*manylinux*.whl"))
    if found:
        return found[0]
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--platform", "manylinux1_x86_64", "--platform", "manylinux2014_x86_64",
        "--python-version", "3.11", "-d", str(dest), f"tritonclient=={version}",
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    found = sorted(dest.glob(f"tritonclient-{version}-*manylinux*.whl"))
    if not found:
        raise FileNotFoundError(f"pip did not leave a tritonclient {version} manylinux wheel in {dest}")
    return found[0]


def extract_binary(wheel: Path, bin_dir: Path, member: str = WHEEL_MEMBER) -> Path:
    """Extract only ``perf_analyzer`` from the wheel into ``bin_dir`` (executable)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / "perf_analyzer"
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(member)
        except KeyError as exc:
            raise FileNotFoundError(f"{wheel.name} has no {member}") from exc
    target.write_bytes(data)
    target.chmod(0o755)
    return target


def pytriton_libs_dir() -> Path:
    """``site-packages/nvidia_pytriton.libs`` of this environment."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("nvidia-pytriton is not installed (it provides libb64 and libcudart)")
    libs = Path(next(iter(spec.submodule_search_locations))).parent / "nvidia_pytriton.libs"
    if not libs.is_dir():
        raise FileNotFoundError(f"{libs} not found")
    return libs


def link_libraries(libs_dir: Path, lib_dir: Path, libraries: dict[str, str] = LIBRARIES) -> dict[str, Path]:
    """Symlink each soname in ``lib_dir`` to its hashed file in ``libs_dir``.

    Raises:
        FileNotFoundError: a library is missing from ``libs_dir``.
    """
    lib_dir.mkdir(parents=True, exist_ok=True)
    links = {}
    for soname, prefix in libraries.items():
        matches = sorted(libs_dir.glob(f"{prefix}*.so*"))
        if not matches:
            raise FileNotFoundError(f"no {prefix}*.so* in {libs_dir} for {soname}")
        link = lib_dir / soname
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(matches[0])
        links[soname] = link
    return links


def install(target: Path | None = None) -> tuple[Path, Path]:
    """Download, extract and link; returns ``(binary, lib_dir)``."""
    target = target or default_dir()
    wheel = download_wheel(target / "wheels")
    binary = extract_binary(wheel, target / "bin")
    lib_dir = target / "lib"
    link_libraries(pytriton_libs_dir(), lib_dir)
    env = dict(
        os.environ, LD_LIBRARY_PATH=os.pathsep.join([str(lib_dir), os.environ.get("LD_LIBRARY_PATH", "")])
    )
    proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, env=env)
    if proc.returncode not in (0, 1) or "error while loading shared libraries" in proc.stderr:
        raise RuntimeError(f"perf_analyzer does not start: {proc.stderr.strip()}")
    return binary, lib_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install perf_analyzer 2.51.0 into a local folder.")
    parser.add_argument("--target", type=Path, default=default_dir(), help="default: %(default)s")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    binary, lib_dir = install(args.target)
    print(f"LD_LIBRARY_PATH={lib_dir} {binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
