"""Start and stop a Triton server: the ``tritonserver`` 2.51 bundled with nvidia-pytriton (Python backend only).

Usage (tests use free ports, ``mintime serve`` the defaults)::

    with TritonServer("model_repository", grpc_port=18001, http_port=18000, metrics_port=18002) as server:
        client = MintimeClient(server.grpc_url)

The server binds the given address (loopback by default, also for metrics), its Python models run with the
first ``python3`` on ``PATH`` (this interpreter's folder is put first, so they import this environment's
``mintime`` and numpy < 2), and its log goes to a file whose tail is part of every start-up error.

Lifetime: the server dies with the process that started it, however that process dies (SIGKILL included):
on Linux it is started with a parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGTERM)``, so Triton shuts down
cleanly and its Python-backend stubs, which watch their parent, exit too). The signal fires when the *thread*
that started the server ends, so call :meth:`TritonServer.start` from a thread that lives as long as the server
(the main thread, as ``mintime serve`` does).

Start-up checks: every port must be free (another server on them would answer our readiness probe), and the
server is ready only when *its own* process listens on the HTTP and gRPC ports and answers
``/v2/health/ready``. Before launching, the served ``backbone`` and ``temporal`` versions must be complete, verified
exports (or the committed Python-backend version) holding the same weights
(:func:`mintime.repository.check_served_pair`); otherwise :class:`ServerStartError` names both.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from mintime.repository import default_model_repository
from mintime.serving.install_stub import install_stub, pytriton_server_dir, stub_target

__all__ = [
    "PortInUseError",
    "ServerStartError",
    "TritonServer",
    "default_model_repository",
    "free_port",
    "listens_on",
    "port_in_use",
]

logger = logging.getLogger(__name__)


class ServerStartError(RuntimeError):
    """The server exited or did not become ready in time (the message ends with its log tail), or the
    repository's served networks cannot be served together."""


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """``preexec_fn``: have the kernel send ``signum`` to the child when its parent dies (Linux only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        os._exit(125)  # nothing can be reported from here: refuse to start an orphan-prone server
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(125)


def _preexec(parent_pid: int) -> None:
    os.setsid()  # its own session: Ctrl-C reaches us, we stop it cleanly
    if sys.platform.startswith("linux"):
        _die_with_parent(parent_pid)


class PortInUseError(ServerStartError):
    """A port the server needs is taken by another process (checked before tritonserver starts)."""


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails now (another process listens there)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # as tritonserver binds: TIME_WAIT is no owner
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (any address), from ``/proc/net/tcp`` and ``tcp6``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXADDR:HEXPORT; state 0A is LISTEN; field 9 is the inode
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds the socket listening on TCP ``port`` (None: cannot tell on this system)."""
    if not Path("/proc/net/tcp").is_file():
        return None
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


#: Environment variable naming the folder of the server logs (default ``~/.cache/mintime/logs``).
LOG_DIR_ENV = "MINTIME_LOG_DIR"
#: Server logs kept in that folder (older ones are removed when a server starts).
KEEP_LOGS = 20


def log_dir() -> Path:
    """The folder of the server logs: ``$MINTIME_LOG_DIR``, else ``~/.cache/mintime/logs``."""
    value = os.environ.get(LOG_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "mintime" / "logs"


def new_log_path(keep: int = KEEP_LOGS) -> Path:
    """A fresh log file in :func:`log_dir` (date, time and process id in its name); the oldest beyond ``keep``
    are removed."""
    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    old = sorted(folder.glob("tritonserver-*.log"), key=lambda p: p.stat().st_mtime)
    for stale in old[: max(0, len(old) - keep + 1)]:
        stale.unlink(missing_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return folder / f"tritonserver-{stamp}-{os.getpid()}-{secrets.token_hex(3)}.log"


class TritonServer:
    """A ``tritonserver`` process as a context manager.

    Args:
        model_repository: the model repository folder.
        grpc_port, http_port, metrics_port: ports (Triton's defaults 8001, 8000, 8002).
        address: address every endpoint binds (default loopback only).
        config_name: ``--model-config-name`` (``"production"`` selects ``configs/production.pbtxt`` where a model
            has one); None = each model's ``config.pbtxt``.
        tritonserver: the binary; default the one inside nvidia-pytriton.
        backend_directory: ``--backend-directory``; default pytriton's ``backends/`` (the Python backend).
        env: extra environment variables for the server (e.g. ``MINTIME_CHECKPOINT``).
        log_path: server log file; default a temporary file.
        startup_timeout: seconds to wait for ``/v2/health/ready``.
        extra_args: more command-line flags (``--log-verbose=1``, ``--model-control-mode=explicit``, ...).
        grpc_allocation_pool: ``--grpc-infer-allocation-pool-size``: request objects Triton keeps for reuse.
            Each keeps the capacity of the largest message it held, so the default 0 returns the memory of large
            (even refused) requests: measured, 8 refused 100 MB requests left +690 MB with Triton's default (8),
            +170 MB with 0.
        check_weights: refuse to start when the served ``backbone`` and ``temporal`` versions are untrusted or
            hold different weights (default True; a repository without those models is not checked).
    """

    def __init__(
        self,
        model_repository: str | os.PathLike,
        *,
        grpc_port: int = 8001,
        http_port: int = 8000,
        metrics_port: int = 8002,
        address: str = "127.0.0.1",
        config_name: str | None = None,
        tritonserver: str | os.PathLike | None = None,
        backend_directory: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        log_path: str | os.PathLike | None = None,
        startup_timeout: float = 180.0,
        extra_args: Sequence[str] = (),
        grpc_allocation_pool: int = 0,
        check_weights: bool = True,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.grpc_port, self.http_port, self.metrics_port = int(grpc_port), int(http_port), int(metrics_port)
        self.address = address
        self.config_name = config_name
        self._tritonserver = Path(tritonserver) if tritonserver else None
        self._backend_directory = Path(backend_directory) if backend_directory else None
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path else None
        self.startup_timeout = float(startup_timeout)
        self.extra_args = list(extra_args)
        self.grpc_allocation_pool = int(grpc_allocation_pool)
        self.check_weights = check_weights
        #: the served backbone and temporal versions (:class:`mintime.repository.ServedVersion`), after start
        self.served: tuple = ()
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file = None

    # -- endpoints ---------------------------------------------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint (what tritonclient.grpc wants)."""
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint."""
        return f"{self._client_host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        """Full URL of the Prometheus metrics."""
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.address in ("0.0.0.0", "") else self.address

    # -- command -----------------------------------------------------------------------------------------------
    def binary(self) -> Path:
        """The ``tritonserver`` executable."""
        return self._tritonserver or pytriton_server_dir() / "bin" / "tritonserver"

    def backend_directory(self) -> Path:
        """The folder holding ``python/libtriton_python.so``."""
        return self._backend_directory or pytriton_server_dir() / "backends"

    def command(self) -> list[str]:
        """The full command line (pure: nothing is started)."""
        cmd = [
            str(self.binary()),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={self.backend_directory()}",
            f"--http-address={self.address}",
            f"--grpc-address={self.address}",
            f"--metrics-address={self.address}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            f"--grpc-infer-allocation-pool-size={self.grpc_allocation_pool}",
        ]
        if self.config_name:
            cmd.append(f"--model-config-name={self.config_name}")
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        """The server's environment: this interpreter's folder first on PATH, glibc's allocator told to return
        large blocks to the system (unless set already), plus :attr:`env`."""
        env = dict(os.environ)
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = os.pathsep.join(
            [bindir, *(p for p in env.get("PATH", "").split(os.pathsep) if p != bindir)]
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        # Frames, crops and slot tensors are large, short-lived and of varying size: served from mmap (returned to
        # the system when freed) instead of glibc's heaps, which fragment and keep growing under a mixed load.
        env.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 20))
        env.setdefault("MALLOC_TRIM_THRESHOLD_", str(1 << 20))
        env.update(self.env)
        return env

    # -- life cycle --------------------------------------------------------------------------------------------
    def start(self) -> TritonServer:
        """Start the server and wait until it is ready.

        Raises:
            ServerStartError: the binary is missing, the process exited, or it was not ready in time.
        """
        if self.process is not None:
            raise RuntimeError("server already started")
        binary = self.binary()
        if not binary.is_file():
            raise ServerStartError(f"tritonserver not found at {binary} (pip install nvidia-pytriton==0.7.0)")
        if self._backend_directory is None and not stub_target(pytriton_server_dir()).is_file():
            install_stub()
        if not self.model_repository.is_dir():
            raise ServerStartError(f"model repository not found: {self.model_repository}")
        self.check_ports()
        if self.check_weights:
            self.check_served_weights()
        if self.log_path is None:
            self.log_path = new_log_path()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "wb")  # closed in stop()
        logger.info("starting %s", " ".join(self.command()))
        self.process = subprocess.Popen(
            self.command(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            preexec_fn=functools.partial(_preexec, os.getpid()),  # own session + dies with us
        )
        try:
            self.wait_ready(self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        logger.info(
            "Triton ready: gRPC %s, HTTP %s, metrics %s (log %s)",
            self.grpc_url,
            self.http_url,
            self.metrics_url,
            self.log_path,
        )
        return self

    def check_ports(self) -> None:
        """Refuse to start when a port this server needs is taken (another server would answer in its place).

        Raises:
            PortInUseError: names the port and the option that picks another.
        """
        for endpoint, option, port in (
            ("gRPC", "--grpc-port", self.grpc_port),
            ("HTTP", "--http-port", self.http_port),
            ("metrics", "--metrics-port", self.metrics_port),
        ):
            if port_in_use(self.address, port):
                raise PortInUseError(
                    f"port {port} on {self.address} (for {endpoint}) is in use by another process (another "
                    f"server?): stop it, or pick a free port with {option} N"
                )

    def check_served_weights(self) -> None:
        """Refuse a repository whose served ``backbone`` and ``temporal`` cannot be served together.

        Raises:
            ServerStartError: an interrupted or modified export, or two different checkpoints (names both).
        """
        if not all((self.model_repository / n).is_dir() for n in ("backbone", "temporal")):
            return
        from mintime.repository import MixedExportError, check_served_pair

        try:
            pair = check_served_pair(
                self.model_repository, config_name=self.config_name, env=self.environment()
            )
        except MixedExportError as exc:
            raise ServerStartError(f"refusing to start: {exc}") from exc
        self.served = pair
        for served in pair:
            logger.info("serving %s", served.describe())

    def is_ready(self, timeout: float = 2.0) -> bool:
        """``GET /v2/health/ready`` answers 200."""
        return self._get_status("/v2/health/ready", timeout) == 200

    def owns_ports(self) -> bool:
        """Our ``tritonserver`` is alive and is the process listening on the HTTP and gRPC ports (a readiness
        answer from any other process is not ours). True where the system cannot tell (no ``/proc``)."""
        if self.process is None or self.process.poll() is not None:
            return False
        return all(
            listens_on(self.process.pid, port) is not False for port in (self.http_port, self.grpc_port)
        )

    def is_live(self, timeout: float = 2.0) -> bool:
        """``GET /v2/health/live`` answers 200."""
        return self._get_status("/v2/health/live", timeout) == 200

    def _get_status(self, path: str, timeout: float) -> int | None:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}{path}", timeout=timeout) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            return None

    def wait_ready(self, timeout: float) -> None:
        """Poll readiness until ``timeout`` seconds.

        Raises:
            ServerStartError: the process exited or the timeout passed (with the log tail).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ServerStartError(
                    f"tritonserver exited with code {code} while starting\n{self.log_tail()}"
                )
            if self.is_ready() and self.owns_ports():
                return
            time.sleep(0.5)
        raise ServerStartError(f"tritonserver not ready after {timeout:.0f} s\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server log."""
        if self.log_path is None or not self.log_path.is_file():
            return "(no server log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "--- tritonserver log (tail) ---\n" + "\n".join(text[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop the server: SIGINT (graceful unload), then SIGKILL of its process group after ``timeout``.

        Returns:
            The server's exit code (None if it was not running).
        """
        proc, self.process = self.process, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("tritonserver did not stop in %.0f s: killing it", timeout)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            code = proc.returncode
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def wait(self) -> int:
        """Block until the server exits; returns its exit code."""
        if self.process is None:
            raise RuntimeError("server not started")
        return self.process.wait()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
