"""What the GPU check imports, resolved against the device image's packages plus the wheel bundle (no GPU needed).

The lent GPU machine has its own Python packages (``device_packages.txt``: the device tool's list, numpy 2.x among
them); ``check.sh`` puts the carried wheels (``/tmp/site``, installed ``--no-deps``) ahead of them on
``PYTHONPATH``. Whatever the check runs must then import with ONE numpy: the bundle's, because the
Python-backend stub of the pip-installed tritonserver (nvidia-pytriton 0.7.0 = Triton 2.51, python_backend
r24.10) is built with a pybind11 older than 2.12, which knows only numpy 1.x's array layout (with numpy 2 every
request fails with "input byte size mismatch"). :func:`stub_numpy_major` reads that from the stub binary itself.

The import closure is found statically, so that lazy imports inside functions count too:

1. roots: ``check.py``, every test file with a ``needs_cuda`` test (the ``cuda_tests`` step), the Python models
   of ``model_repository`` (the ``perf`` step's server), the benchmark scripts the check starts;
2. every ``import`` in those files and, transitively, in the project modules they import;
3. each third-party module -> its distribution (this machine's metadata), and for a distribution the bundle
   carries (installed ``--no-deps``), its own requirements, recursively.

Each distribution then comes from the bundle or from the device image; :func:`resolve` reports what is missing
and every numpy conflict: a bundle package that requires another numpy, or a device package that requires numpy
at all whose device version nobody has read (it was built against the device's numpy 2.x: carry a version that
accepts numpy 1.x). ``python benchmarks/gpu/closure.py`` prints the report; ``check.sh --dry-run`` shows it.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEVICE_PACKAGES = HERE / "device_packages.txt"
BUNDLE_EXTRAS = HERE / "bundle-extras.txt"
#: The shared wheel-bundle tool; its DEFAULT list is the bundle's base.
GPU_BUNDLE = REPO.parent / "shared" / "tools" / "gpu-bundle.sh"
PROJECT = ("mintime", "dali_pipelines", "export", "benchmarks", "tests", "client", "training")
#: The device's Python (device tool, KINDS.md) for evaluating requirement markers.
DEVICE_PYTHON = "3.12"
#: Modules whose distribution is not found from this machine's metadata (a namespace package, or not installable
#: here): module -> (distribution, extras needed).
MODULE_DIST: dict[str, tuple[str, frozenset[str]]] = {
    "nvidia.dali": ("nvidia-dali-cuda130", frozenset()),
    "tritonclient.grpc": ("tritonclient", frozenset({"grpc"})),
    "tritonclient.http": ("tritonclient", frozenset({"http"})),
    "pytriton": ("nvidia-pytriton", frozenset()),
    "face_recognition_models": ("face-recognition-models", frozenset()),
    "PIL": ("pillow", frozenset()),
    "yaml": ("pyyaml", frozenset()),
    "cv2": ("opencv-python-headless", frozenset()),
    "sklearn": ("scikit-learn", frozenset()),
    "dlib": ("dlib-bin", frozenset()),
    "google.protobuf": ("protobuf", frozenset()),
}
#: Modules that are no distribution: the Python backend's stub provides ``triton_python_backend_utils`` to the
#: models it runs.
PROVIDED = {"triton_python_backend_utils": "provided by the Python-backend stub to the models it runs"}
#: Distributions the check needs for their files, not imports: distribution -> why.
FILES_NEEDED = {
    "nvidia-pytriton": "the perf step's tritonserver 2.51 and its Python-backend stub (check.sh installs the stub)",
}
#: Test files with needs_cuda tests that the cuda_tests step leaves out, and why.
CUDA_TESTS_EXCLUDED = {
    "tests/export/test_tensorrt.py": "TensorRT cannot be installed on the lent machines (../shared/docs/environment.md)",
}
#: Imported only where present, each guarded by the code that imports it (not required on the device):
OPTIONAL = {
    "tensorrt": "TensorRT is not installable on the lent machines (tests skip: needs_trt)",
    "tensorrt_bindings": "the TensorRT bindings, as tensorrt",
    "face_recognition_models": "dlib's model files are carried as files (extra bundle), found without importing it",
    "efficientnet_pytorch": "the authors' EfficientNet-B0 reference, used by parity tests that are not needs_cuda",
    "hadolint": "a test tool",
    "kubernetes_validate": "a test tool",
    "tensorboard": "training only",
}
#: Distributions a bundle package requires that the check does without, and why.
OPTIONAL_DISTS = {
    "nvidia-nvjpeg": "nvImageCodec's image codecs (nvimgcodec[all]): loaded for image decoding only, not video",
    "nvidia-nvjpeg2k-cu13": "as nvidia-nvjpeg",
    "nvidia-nvtiff-cu13": "as nvidia-nvjpeg",
}
#: Device packages that use numpy without declaring it, and why numpy 1.x is fine for them.
NUMPY_UNDECLARED_OK = {
    "torch": "PyTorch wheels since 2.3 are built against numpy 2 and load numpy 1.x or 2.x at run time",
}


def read_device_packages(path: Path = DEVICE_PACKAGES) -> dict[str, str | None]:
    """``device_packages.txt``: canonical name -> version (None where nobody has read it)."""
    out: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition(" ")
            out[canonicalize_name(name)] = None if version.strip() in ("", "-") else version.strip()
    return out


def bundle_requirements(gpu_bundle: Path = GPU_BUNDLE, extras: Path = BUNDLE_EXTRAS) -> list[Requirement]:
    """The bundle's requirements: the shared tool's DEFAULT array plus ``bundle-extras.txt``."""
    text = gpu_bundle.read_text()
    m = re.search(r"^DEFAULT=\((.*?)^\)", text, flags=re.S | re.M)
    if m is None:
        raise ValueError(f"{gpu_bundle}: no DEFAULT=( ... ) array")
    reqs = re.findall(r'"([^"]+)"', m.group(1))
    reqs += [ln.split("#", 1)[0].strip() for ln in extras.read_text().splitlines()]
    return [Requirement(r) for r in reqs if r]


def stub_numpy_major(stub: Path) -> int:
    """The numpy major version a Python-backend stub binary can exchange arrays with.

    pybind11 >= 2.12 (numpy 2 support) looks numpy's C API up in ``numpy._core``; older ones only know
    ``numpy.core.multiarray`` and numpy 1.x's array layout.
    """
    data = stub.read_bytes()
    if b"numpy._core" in data:
        return 2
    if b"numpy.core.multiarray" in data:
        return 1
    raise ValueError(f"{stub}: no pybind11 numpy reference found")


def pytriton_stub(python: str = DEVICE_PYTHON) -> Path:
    """The Python-backend stub nvidia-pytriton ships for ``python`` (this machine's copy of the wheel)."""
    files = md.distribution("nvidia-pytriton").files or ()
    for f in files:
        if str(f).endswith(f"python_backend_stubs/{python}/triton_python_backend_stub"):
            return Path(md.distribution("nvidia-pytriton").locate_file(f))
    raise FileNotFoundError(f"nvidia-pytriton has no stub for Python {python}")


# ---------------------------------------------------------------------------------------------------------------
# the static import closure
# ---------------------------------------------------------------------------------------------------------------
def roots(repo: Path = REPO) -> list[Path]:
    """The files the check runs or imports first (see the module docstring)."""
    cuda_tests = cuda_test_files(repo)
    models = sorted((repo / "model_repository").glob("*/1/model.py"))
    scripts = [repo / "benchmarks" / "gpu" / "check.py", repo / "benchmarks" / "bench_pipeline.py"]
    return (
        scripts
        + [repo / "tests" / "conftest.py"]
        + cuda_tests
        + models
        + sorted((repo / "benchmarks" / "perf").glob("*.py"))
    )


def cuda_test_files(repo: Path = REPO) -> list[Path]:
    """The test files the ``cuda_tests`` step runs: those with a ``needs_cuda`` test, less
    :data:`CUDA_TESTS_EXCLUDED` (collecting only them keeps the step short and its imports known)."""
    return [
        p
        for p in sorted((repo / "tests").rglob("test_*.py"))
        if "needs_cuda" in p.read_text() and str(p.relative_to(repo)) not in CUDA_TESTS_EXCLUDED
    ]


def _module_file(name: str, repo: Path) -> Path | None:
    base = repo.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def third_party_modules(start: list[Path], repo: Path = REPO) -> dict[str, set[str]]:
    """Third-party modules imported anywhere in ``start`` and the project modules they reach: module -> the
    project files that import it."""
    stdlib = set(sys.stdlib_module_names)
    todo, seen = list(start), set()
    found: dict[str, set[str]] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            top = name.split(".")[0]
            if top in stdlib or top == "__future__":
                continue
            if top in PROJECT:
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # packages' __init__ run too
                    f = _module_file(".".join(parts[:i]), repo)
                    if f is not None and f not in seen:
                        todo.append(f)
                continue
            key = next((m for m in MODULE_DIST if name == m or name.startswith(m + ".")), top)
            found.setdefault(key, set()).add(str(path.relative_to(repo)))
    return found


# ---------------------------------------------------------------------------------------------------------------
# resolution against the device and the bundle
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Resolution:
    numpy: str  # the numpy every process of the check imports
    stub_numpy_major: int
    sources: dict[str, str] = field(default_factory=dict)  # distribution -> "bundle X" / "device X"
    missing: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.conflicts

    def to_dict(self) -> dict:
        return {"ok": self.ok, "numpy": self.numpy, "stub_numpy_major": self.stub_numpy_major,
                "missing": self.missing, "conflicts": self.conflicts, "notes": self.notes,
                "sources": self.sources}  # fmt: skip


def _marker_env() -> dict[str, str]:
    env = default_environment()
    env.update(python_version=DEVICE_PYTHON, python_full_version=f"{DEVICE_PYTHON}.3", sys_platform="linux",
               platform_system="Linux", platform_machine="x86_64", implementation_name="cpython")  # fmt: skip
    return env


def _requires(dist: str, extras: frozenset[str]) -> list[Requirement]:
    """Requirements of ``dist`` (this machine's metadata) that apply on the device with ``extras``."""
    try:
        raw = md.requires(dist) or []
    except md.PackageNotFoundError:
        return []
    out = []
    for text in raw:
        req = Requirement(text)
        if req.marker is None or any(
            req.marker.evaluate({**_marker_env(), "extra": e}) for e in extras | {""}
        ):
            out.append(req)
    return out


def _local_version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def resolve(
    modules: dict[str, set[str]] | None = None,
    device: dict[str, str | None] | None = None,
    bundle: list[Requirement] | None = None,
    stub_major: int | None = None,
) -> Resolution:
    """Resolve the check's import closure against ``device`` packages plus the ``bundle`` (see the docstring)."""
    modules = third_party_modules(roots()) if modules is None else modules
    device = read_device_packages() if device is None else device
    bundle = bundle_requirements() if bundle is None else bundle
    pins = {canonicalize_name(r.name): r for r in bundle}
    numpy_req = pins.get("numpy")
    numpy = next(iter(numpy_req.specifier)).version if numpy_req else (device.get("numpy") or "?")
    res = Resolution(
        numpy=numpy, stub_numpy_major=stub_numpy_major(pytriton_stub()) if stub_major is None else stub_major
    )
    if int(numpy.split(".")[0]) != res.stub_numpy_major:
        res.conflicts.append(
            f"numpy {numpy} is first on the check's path, but the pip tritonserver's Python-backend stub needs "
            f"numpy {res.stub_numpy_major}.x"
        )
    packages = md.packages_distributions()
    todo: list[tuple[str, frozenset[str], str]] = []
    for module, users in sorted(modules.items()):
        if module in OPTIONAL or module in PROVIDED:
            res.notes.append(
                f"{module}: not needed from a wheel ({OPTIONAL.get(module) or PROVIDED[module]})"
            )
            continue
        if module in MODULE_DIST:
            dist, extras = MODULE_DIST[module]
        elif module.split(".")[0] in packages:
            dist, extras = packages[module.split(".")[0]][0], frozenset()
        else:
            res.missing.append(f"module {module} (imported by {sorted(users)[0]}): no distribution known")
            continue
        todo.append((canonicalize_name(dist), extras, f"import {module} ({sorted(users)[0]})"))
    todo += [(dist, frozenset(), why) for dist, why in FILES_NEEDED.items()]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        dist, extras, why = todo.pop()
        if (dist, extras) in done:
            continue
        done.add((dist, extras))
        if dist in pins:
            pinned = next(iter(pins[dist].specifier), None)
            version = (
                pinned.version
                if pinned is not None and pinned.operator == "=="
                else str(pins[dist].specifier)
            )
            res.sources[dist] = f"bundle {version}"
            local = _local_version(dist)
            if local is not None and pinned is not None and local != version:
                res.notes.append(
                    f"{dist}: requirements read from {local} here (the bundle carries {version})"
                )
            if why == FILES_NEEDED.get(dist):  # its files are used, its Python code is not imported
                continue
            for req in _requires(dist, extras):
                name = canonicalize_name(req.name)
                if name == "numpy" and not req.specifier.contains(numpy, prereleases=True):
                    res.conflicts.append(
                        f"{dist} {version} (bundle) requires numpy{req.specifier}, the bundle has {numpy}"
                    )
                todo.append((name, frozenset(req.extras), f"{dist} requires {req}"))
        elif dist in device:
            version = device[dist]
            res.sources[dist] = f"device {version or '(version not read)'}"
            if dist == "numpy":
                continue
            needs_numpy = [r for r in _requires(dist, extras) if canonicalize_name(r.name) == "numpy"]
            if needs_numpy and version is None:
                res.conflicts.append(
                    f"{dist}: the device's build (version not read) requires numpy, built for the device's numpy "
                    f"{device.get('numpy')}; with numpy {numpy} first on the path it may not import: carry a version "
                    f"that accepts numpy {numpy} (benchmarks/gpu/bundle-extras.txt) ({why})"
                )
            elif needs_numpy and not all(r.specifier.contains(numpy, prereleases=True) for r in needs_numpy):
                res.conflicts.append(
                    f"{dist} {version} (device) requires {needs_numpy[0]}, the bundle has numpy {numpy}"
                )
            elif needs_numpy and version != _local_version(dist):
                res.notes.append(
                    f"{dist} (device {version}): accepts numpy {numpy} per the metadata of {_local_version(dist)} here"
                )
            elif dist in NUMPY_UNDECLARED_OK:
                res.notes.append(f"{dist} (device {version}): {NUMPY_UNDECLARED_OK[dist]}")
        elif dist in OPTIONAL_DISTS:
            res.notes.append(f"{dist}: not carried ({OPTIONAL_DISTS[dist]}; {why})")
        else:
            res.missing.append(f"{dist}: neither in the bundle nor on the device ({why})")
    res.missing.sort()
    return res


def main() -> int:
    res = resolve()
    print(json.dumps(res.to_dict(), indent=2))
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
