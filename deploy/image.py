#!/usr/bin/env python3
"""The server image's versions and install set, from one table (``deploy/ngc_releases.json``) and ``pyproject.toml``.

Standard library only: it runs in the NGC base image before anything is installed (Python >= 3.11 for
``tomllib``), in CI, and on a developer machine.

Commands (``--release`` defaults to the table's ``default`` row)::

    python3 deploy/image.py show                  # the row, as JSON
    python3 deploy/image.py requirements          # what `pip install -r` gets in the image (wheels only)
    python3 deploy/image.py requirements --kind sdist|no-deps
    python3 deploy/image.py build-args            # --build-arg flags for `docker build`
    python3 deploy/image.py check-base            # in the base image: Python/CUDA/TensorRT/DALI == the row
    python3 deploy/image.py check-installed       # after pip: bindings, DALI as the row says; numpy's version and file

The install set is the ``core`` and ``export`` extras of ``pyproject.toml`` plus the row's TensorRT bindings
(``--no-deps``: the libraries are the image's own libnvinfer) and the row's DALI (the same version as the
image's DALI backend: the in-process NVDEC pipeline is built and checked by the DALI the image ships). A few packages
cannot come as wheels for every platform: ``face-recognition-models`` is an sdist of model files, and
``facenet-pytorch`` pins an old torch and is installed ``--no-deps``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TABLE = HERE / "ngc_releases.json"
PYPROJECT = HERE.parent / "pyproject.toml"
#: Extras of pyproject.toml that the server image installs.
IMAGE_EXTRAS = ("core", "export")
#: Requirements that are sdists (no wheel): installed by pip normally, excluded from the wheel-only dry run.
SDIST_ONLY = ("face-recognition-models",)
#: Installed with --no-deps (their declared dependencies conflict with the pins above).
NO_DEPS = ("facenet-pytorch==2.6.0",)
#: Where Triton's DALI backend keeps the DALI wheel it was built with (dali_backend src/dali_executor/CMakeLists.txt).
DALI_BACKEND_WHEEL = Path("/opt/tritonserver/backends/dali/wheel/dali")
LIB_DIRS = (
    Path("/usr/lib/x86_64-linux-gnu"),
    Path("/usr/lib/aarch64-linux-gnu"),
    Path("/usr/local/tensorrt/lib"),
    Path("/usr/lib"),
)


class ReleaseError(ValueError):
    """Unknown release, or a malformed table."""


def load_table(path: Path = TABLE) -> dict[str, Any]:
    """The parsed table (``default`` and ``releases``)."""
    table = json.loads(Path(path).read_text())
    if table.get("default") not in table.get("releases", {}):
        raise ReleaseError(f"{path}: default {table.get('default')!r} is not one of the releases")
    return table


def release(name: str | None = None, path: Path = TABLE) -> dict[str, Any]:
    """One row of the table (the default row when ``name`` is None), with its ``release`` name added.

    Raises:
        ReleaseError: ``name`` is not in the table.
    """
    table = load_table(path)
    name = name or table["default"]
    if name not in table["releases"]:
        raise ReleaseError(f"unknown NGC release {name!r}; the table has {sorted(table['releases'])}")
    row = dict(table["releases"][name])
    row["release"] = name
    for key in ("python", "cuda", "dali", "dali_package", "tensorrt", "tensorrt_package"):
        if not row.get(key):
            raise ReleaseError(f"release {name}: {key} missing in {path}")
    return row


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def pyproject_requirements(extras: tuple[str, ...] = IMAGE_EXTRAS, path: Path = PYPROJECT) -> list[str]:
    """The base dependencies plus the given extras of pyproject.toml, self-references (``mintime[core]``) expanded."""
    import tomllib

    project = tomllib.loads(Path(path).read_text())["project"]
    optional = project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", []))
    seen: set[str] = set()

    def add(extra: str) -> None:
        if extra in seen:
            return
        seen.add(extra)
        if extra not in optional:
            raise ReleaseError(f"pyproject.toml has no extra {extra!r}")
        for req in optional[extra]:
            m = re.fullmatch(r"\s*mintime\[([^\]]+)\]\s*", req)
            if m:
                for sub in m.group(1).split(","):
                    add(sub.strip())
            elif req not in out:
                out.append(req)

    for extra in extras:
        add(extra)
    return out


def install_set(name: str | None = None) -> dict[str, list[str]]:
    """What the image installs: ``binary`` (wheels), ``sdist`` and ``no_deps`` requirement lists."""
    row = release(name)
    reqs = pyproject_requirements()
    binary = [r for r in reqs if _name(r) not in SDIST_ONLY]
    sdist = [r for r in reqs if _name(r) in SDIST_ONLY]
    if row.get("dali_index"):  # that DALI is not on PyPI as a wheel
        binary.append(f"--extra-index-url {row['dali_index']}")
    binary.append(f"{row['dali_package']}=={row['dali']}")
    binary.append(f"{row['tensorrt_package']}=={row['tensorrt']}")
    return {"binary": binary, "sdist": sdist, "no_deps": list(NO_DEPS)}


def build_args(name: str | None = None) -> list[str]:
    """``docker build`` flags selecting a release of the table."""
    row = release(name)
    return [f"--build-arg=NGC_RELEASE={row['release']}"]


# ---------------------------------------------------------------------------------------------------------------
# checks inside the image
# ---------------------------------------------------------------------------------------------------------------
def _same_version(expected: str, found: str) -> bool:
    """``expected`` is ``found`` or a dotted prefix of it (``13.3.0`` matches ``13.3.0.035``)."""
    found = re.split(r"[+\-~ ]", found.strip(), maxsplit=1)[0]
    return found == expected or found.startswith(expected + ".")


def image_tensorrt_version() -> str | None:
    """TensorRT of the running image: ``$TRT_VERSION``, else dpkg's libnvinfer, else the library file name."""
    env = os.environ.get("TRT_VERSION", "").strip()
    if env:
        return env
    for pkg in ("libnvinfer11", "libnvinfer10", "tensorrt-libs", "tensorrt"):
        try:
            out = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, check=False
            )
        except FileNotFoundError:
            break
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    versions = []
    for d in LIB_DIRS:
        for p in d.glob("libnvinfer.so.*") if d.is_dir() else ():
            m = re.fullmatch(r"libnvinfer\.so\.(\d+\.\d+\.\d+(?:\.\d+)?)", p.name)
            if m:
                versions.append(m.group(1))
    return max(versions, key=lambda v: [int(x) for x in v.split(".")]) if versions else None


def backend_dali_version(wheel_dir: Path = DALI_BACKEND_WHEEL) -> str | None:
    """DALI version Triton's DALI backend was built with (from its wheel's dist-info), None if not found."""
    for info in sorted(wheel_dir.glob("nvidia_dali*.dist-info")) if wheel_dir.is_dir() else ():
        m = re.fullmatch(r"nvidia_dali[a-z0-9_]*-([0-9][^-]*)\.dist-info", info.name)
        if m:
            return m.group(1)
    return None


def check_base(name: str | None = None) -> tuple[list[str], list[str]]:
    """Compare the running base image with its row. Returns ``(failures, notes)``."""
    row = release(name)
    failures: list[str] = []
    notes: list[str] = []
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    (notes if py == row["python"] else failures).append(f"python {py} (table {row['python']})")
    found = {
        "cuda": os.environ.get("CUDA_VERSION", "").strip() or None,
        "tensorrt": image_tensorrt_version(),
        "dali": backend_dali_version(),
    }
    for key, value in found.items():
        if value is None:
            notes.append(f"{key}: not found in this image (table {row[key]}); not checked")
        elif _same_version(row[key], value):
            notes.append(f"{key} {value} (table {row[key]})")
        else:
            failures.append(
                f"{key} {value} in the image, but deploy/ngc_releases.json says {row[key]} for {row['release']}"
            )
    return failures, notes


#: First Triton whose python_backend accepts numpy 2 (r24.11: pybind11 2.12, numpy 2 ABI); older stubs answer
#: every request with "input byte size mismatch" under numpy 2.
NUMPY2_FROM_TRITON = (2, 52)


def numpy_check(row: dict[str, Any], version: str, file: str) -> tuple[bool, str]:
    """Whether the numpy that ``python3`` imports suits the row's Python backend: ``(ok, message)``.

    The message names the version and the file it was imported from. It fails when numpy comes from the DALI
    backend's wheel folder (``PYTHONPATH`` of the NGC image not cleared: that numpy shadows pip's), and when
    numpy is 2.x on a Triton whose python_backend predates numpy 2 (< 2.52).
    """
    where = f"numpy {version} from {file}"
    if Path(file).resolve().is_relative_to(DALI_BACKEND_WHEEL) or str(DALI_BACKEND_WHEEL) in file:
        return False, (
            f"{where}: the DALI backend's copy shadows pip's (the image's PYTHONPATH names "
            f'{DALI_BACKEND_WHEEL}); the Dockerfile must set PYTHONPATH=""'
        )
    triton = tuple(int(x) for x in str(row.get("triton", "0.0")).split(".")[:2])
    if int(version.split(".")[0]) >= 2 and triton < NUMPY2_FROM_TRITON:
        return False, f"{where}: Triton {row.get('triton')}'s Python backend needs numpy < 2"
    return True, f"{where} (Triton {row.get('triton')}'s Python backend accepts it)"


def check_installed(name: str | None = None) -> tuple[list[str], list[str]]:
    """After the pip installs: the bindings, DALI and numpy are what the row and the Python backend need."""
    row = release(name)
    failures: list[str] = []
    notes: list[str] = []
    try:
        import numpy

        ok, message = numpy_check(row, numpy.__version__, numpy.__file__)
        (notes if ok else failures).append(message)
    except ImportError as exc:
        failures.append(f"numpy: {exc}")
    try:
        import nvidia.dali as dali

        ok = dali.__version__ == row["dali"]
        (notes if ok else failures).append(f"nvidia.dali {dali.__version__} (table {row['dali']})")
    except ImportError as exc:
        failures.append(f"nvidia.dali: {exc}")
    try:
        import tensorrt_bindings as trt  # the bindings wheel's module; `tensorrt` is the meta package's name

        ok = trt.__version__ == row["tensorrt"]
        (notes if ok else failures).append(f"tensorrt_bindings {trt.__version__} (table {row['tensorrt']})")
    except ImportError as exc:  # libnvinfer.so.<major> missing: a wrong major version
        failures.append(f"tensorrt_bindings: {exc}")
    return failures, notes


def _report(failures: list[str], notes: list[str], what: str) -> int:
    for n in notes:
        print(f"[image] {n}")
    for f in failures:
        print(f"[image] MISMATCH: {f}", file=sys.stderr)
    if failures:
        print(
            f"[image] {what} failed: fix deploy/ngc_releases.json or pick another --build-arg NGC_RELEASE",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command", choices=["show", "requirements", "build-args", "check-base", "check-installed"]
    )
    parser.add_argument("--release", default=None, help="NGC release (default: the table's default)")
    parser.add_argument("--kind", default="binary", choices=["binary", "sdist", "no-deps"])
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            print(json.dumps(release(args.release), indent=2))
        elif args.command == "requirements":
            print("\n".join(install_set(args.release)[args.kind.replace("-", "_")]))
        elif args.command == "build-args":
            print(" ".join(build_args(args.release)))
        elif args.command == "check-base":
            return _report(*check_base(args.release), "check-base")
        else:
            return _report(*check_installed(args.release), "check-installed")
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
