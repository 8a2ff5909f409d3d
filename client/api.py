"""gRPC client of the ``mintime`` ensemble: one video in, the result JSON out.

The request carries the encoded file as ``VIDEO`` (``UINT8``, shape ``[1, num_bytes]``); the answer's
``RESULT_JSON`` is the same object as ``mintime predict --json`` prints (without ``"video"``, which the server
never sees; :meth:`Prediction.to_json` adds it back).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mintime import contract
from mintime.contract import ENSEMBLE
from mintime.limits import DEFAULT_LIMITS

__all__ = [
    "DEFAULT_URL",
    "RETRYABLE",
    "MintimeClientError",
    "Prediction",
    "MintimeClient",
    "read_video",
    "video_tensor",
    "parse_result",
    "backoff_delay",
]

logger = logging.getLogger(__name__)

DEFAULT_URL = "127.0.0.1:8001"
#: gRPC status codes worth retrying (the server is starting, restarting or overloaded).
RETRYABLE = frozenset({"StatusCode.UNAVAILABLE"})
_OUTPUTS = tuple(t.name for t in ENSEMBLE.outputs)
_VIDEO = ENSEMBLE.inputs[0]

Video = bytes | bytearray | memoryview | str | os.PathLike | np.ndarray


class MintimeClientError(RuntimeError):
    """A request failed; ``status`` is the gRPC status (``"StatusCode.INVALID_ARGUMENT"``, ...) when known."""

    def __init__(self, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Prediction:
    """The outcome for one video of :meth:`MintimeClient.predict_many`.

    Attributes:
        source: the path (or ``"<bytes>"``) as given.
        result: the result JSON, None on error.
        error: the error message, None on success.
        attempts: requests sent (1 + retries used).
        seconds: wall time including retries.
    """

    source: str
    result: dict[str, Any] | None
    error: str | None = None
    attempts: int = 1
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """The line ``mintime predict --json`` would print: ``{"video": ..., **result}`` or an error object."""
        if self.result is None:
            return {"video": self.source, "status": "error", "error": self.error}
        return {"video": self.source, **self.result}


def read_video(video: Video, *, max_bytes: int | None = DEFAULT_LIMITS.max_bytes) -> bytes:
    """The encoded bytes of a path, bytes-like object or uint8 array.

    Args:
        video: a path, the encoded bytes, or a uint8 array of them.
        max_bytes: refuse larger videos before reading or sending them (the service's decode budget,
            :data:`mintime.limits.DEFAULT_LIMITS`; None: no check).

    Raises:
        FileNotFoundError: a path that does not exist.
        MintimeClientError: an empty input, or one over ``max_bytes`` (status ``INVALID_ARGUMENT``, not sent).
    """
    if isinstance(video, (str, os.PathLike)):
        path = Path(video)
        if not path.is_file():
            raise FileNotFoundError(f"video not found: {path}")
        _check_bytes(path.stat().st_size, max_bytes)
        data = path.read_bytes()
    elif isinstance(video, np.ndarray):
        _check_bytes(video.nbytes, max_bytes)
        data = np.ascontiguousarray(video, dtype=np.uint8).tobytes()
    else:
        _check_bytes(memoryview(video).nbytes, max_bytes)
        data = bytes(video)
    if not data:
        raise MintimeClientError("empty video (0 bytes)", "StatusCode.INVALID_ARGUMENT")
    _check_bytes(len(data), max_bytes)
    return data


def _check_bytes(num_bytes: int, max_bytes: int | None) -> None:
    if max_bytes is not None and num_bytes > max_bytes:
        raise MintimeClientError(
            f"too large: {num_bytes} bytes exceeds max_bytes={max_bytes} (the service's decode budget, "
            f"mintime.limits); not sent",
            "StatusCode.INVALID_ARGUMENT",
        )


def video_tensor(data: bytes) -> np.ndarray:
    """The ``VIDEO`` input: (1, num_bytes) uint8 (batch 1: one video per request)."""
    return np.frombuffer(data, dtype=np.uint8).reshape(1, -1)


def parse_result(result_json: np.ndarray) -> dict[str, Any]:
    """The ``RESULT_JSON`` output ((1, 1) bytes) as a dict."""
    value = np.asarray(result_json, dtype=object).reshape(-1)[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return json.loads(value)


def backoff_delay(attempt: int, base: float, cap: float = 10.0) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): ``base * 2**(attempt-1)``, at most ``cap``."""
    return min(cap, base * 2 ** max(0, attempt - 1))


def _status(exc: Exception) -> str | None:
    status = getattr(exc, "status", None)
    return str(status()) if callable(status) else None


def _message(exc: Exception) -> str:
    message = getattr(exc, "message", None)
    text = message() if callable(message) else str(exc)
    return str(text or exc)


class MintimeClient:
    """Client of the ``mintime`` ensemble over gRPC.

    Args:
        url: ``host:port`` of Triton's gRPC endpoint.
        model_name: the ensemble's name.
        timeout: per-request timeout in seconds (None: no limit).
        max_bytes: videos over this many bytes are refused without being sent (default: the decode budget's
            ``max_bytes``, which the server applies too; None: no check).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        model_name: str = ENSEMBLE.name,
        timeout: float | None = None,
        max_bytes: int | None = DEFAULT_LIMITS.max_bytes,
    ) -> None:
        self.url = url
        self.model_name = model_name
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._sync: Any = None

    # -- sync ----------------------------------------------------------------------------------------------------
    @property
    def grpc(self) -> Any:
        """The underlying ``tritonclient.grpc.InferenceServerClient`` (created on first use)."""
        if self._sync is None:
            import tritonclient.grpc as grpcclient

            self._sync = grpcclient.InferenceServerClient(self.url)
        return self._sync

    def is_ready(self) -> bool:
        """Server live and the ensemble ready."""
        try:
            return bool(self.grpc.is_server_live() and self.grpc.is_model_ready(self.model_name))
        except Exception:
            return False

    def _request(self, data: bytes, module: Any) -> tuple[list[Any], list[Any]]:
        inp = module.InferInput(_VIDEO.name, [1, len(data)], _VIDEO.client_dtype)
        inp.set_data_from_numpy(video_tensor(data))
        return [inp], [module.InferRequestedOutput(name) for name in _OUTPUTS]

    def predict(self, video: Video, *, retries: int = 0, backoff: float = 0.5) -> dict[str, Any]:
        """Classify one video.

        Args:
            video: a path, the encoded bytes, or a uint8 array of them.
            retries: extra attempts when the server is unavailable.
            backoff: first retry delay in seconds (doubles each time).

        Returns:
            The result JSON (``fake_probability`` is None and ``status`` is ``"no_face"`` without a face).

        Raises:
            MintimeClientError: the server refused or failed the request (its message says why).
            FileNotFoundError: a path that does not exist.
        """
        import tritonclient.grpc as grpcclient

        inputs, outputs = self._request(read_video(video, max_bytes=self.max_bytes), grpcclient)
        for attempt in range(retries + 1):
            try:
                response = self.grpc.infer(
                    self.model_name, inputs, outputs=outputs, client_timeout=self.timeout
                )
                return parse_result(response.as_numpy(contract.RESULT_JSON))
            except Exception as exc:
                status = _status(exc)
                if status in RETRYABLE and attempt < retries:
                    time.sleep(backoff_delay(attempt + 1, backoff))
                    continue
                raise MintimeClientError(_message(exc), status) from exc
        raise AssertionError("unreachable")

    # -- async ---------------------------------------------------------------------------------------------------
    async def predict_many(
        self,
        videos: Sequence[Video],
        *,
        concurrency: int = 4,
        retries: int = 3,
        backoff: float = 0.5,
        on_result: Callable[[Prediction], None] | None = None,
    ) -> list[Prediction]:
        """Classify many videos with ``concurrency`` requests in flight (``tritonclient.grpc.aio``).

        Args:
            videos: paths, bytes or arrays.
            concurrency: requests in flight at once.
            retries: extra attempts per video when the server is unavailable (exponential backoff).
            backoff: first retry delay in seconds.
            on_result: called with each :class:`Prediction` as it completes (e.g. a progress bar).

        Returns:
            One :class:`Prediction` per video, in input order; errors are reported, not raised.
        """
        import tritonclient.grpc as grpcclient
        import tritonclient.grpc.aio as aioclient

        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        semaphore = asyncio.Semaphore(concurrency)
        client = aioclient.InferenceServerClient(self.url)

        async def one(video: Video) -> Prediction:
            source = str(video) if isinstance(video, (str, os.PathLike)) else "<bytes>"
            start = time.monotonic()
            attempts = 0
            async with semaphore:
                try:
                    data = await asyncio.to_thread(read_video, video, max_bytes=self.max_bytes)
                    inputs, outputs = self._request(data, grpcclient)
                except (OSError, MintimeClientError) as exc:
                    pred = Prediction(source, None, str(exc), 0, time.monotonic() - start)
                    if on_result:
                        on_result(pred)
                    return pred
                while True:
                    attempts += 1
                    try:
                        response = await client.infer(
                            self.model_name, inputs, outputs=outputs, client_timeout=self.timeout
                        )
                        pred = Prediction(
                            source,
                            parse_result(response.as_numpy(contract.RESULT_JSON)),
                            None,
                            attempts,
                            time.monotonic() - start,
                        )
                        break
                    except Exception as exc:
                        if _status(exc) in RETRYABLE and attempts <= retries:
                            delay = backoff_delay(attempts, backoff)
                            logger.info("%s: server unavailable, retry %d in %.1f s", source, attempts, delay)
                            await asyncio.sleep(delay)
                            continue
                        pred = Prediction(source, None, _message(exc), attempts, time.monotonic() - start)
                        break
            if on_result:
                on_result(pred)
            return pred

        try:
            return list(await asyncio.gather(*(one(v) for v in videos)))
        finally:
            await client.close()

    def predict_many_sync(self, videos: Sequence[Video], **kwargs: Any) -> list[Prediction]:
        """:meth:`predict_many` from synchronous code (runs its own event loop)."""
        return asyncio.run(self.predict_many(videos, **kwargs))

    def close(self) -> None:
        """Close the synchronous connection (the async one is closed by each :meth:`predict_many`)."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    def __enter__(self) -> MintimeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
