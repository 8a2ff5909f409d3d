"""What a training run tells its user while it runs: one line per epoch with losses, validation AUC, time per
epoch and the remaining time.

The lines go to stderr (stdout keeps the final summary line of ``mintime train``); with progress off they go to
the ``training.train`` logger instead (visible with ``mintime -v``). Under ``torchrun`` only rank 0 reports.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["format_duration", "EpochReporter"]

logger = logging.getLogger("training.train")


def format_duration(seconds: float) -> str:
    """``"4.2 s"``, ``"42 s"``, ``"3m 05s"``, ``"2h 07m"``."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f} s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {(s % 3600) // 60:02d}m"


def _num(v: Any, digits: int = 4) -> str:
    return "n/a" if v is None or v != v else f"{v:.{digits}f}"


class EpochReporter:
    """Per-epoch progress lines of one training run.

    Args:
        total_epochs: the run's ``epochs`` (epoch numbers are shown 1-based against it).
        enabled: print to ``stream``; when False the same lines are logged at INFO level.
        stream: where the lines go (default: ``sys.stderr`` at the time of each line).
    """

    def __init__(self, total_epochs: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total_epochs = total_epochs
        self.enabled = enabled
        self.stream = stream
        self.durations: list[float] = []
        self._t0: float | None = None

    def say(self, text: str) -> None:
        """One line to the user (or to the log when progress is off)."""
        if self.enabled:
            print(text, file=self.stream or sys.stderr, flush=True)
        else:
            logger.info("%s", text)

    def epoch_started(self) -> None:
        """Start the clock of an epoch (training and validation together)."""
        self._t0 = time.perf_counter()

    def eta(self, epoch: int) -> float | None:
        """Seconds left after ``epoch`` (0-based) at the mean epoch time so far; None before the first epoch."""
        if not self.durations:
            return None
        return (self.total_epochs - epoch - 1) * sum(self.durations) / len(self.durations)

    def epoch_done(self, epoch: int, train: dict[str, Any], val: dict[str, Any], *, improved: bool) -> str:
        """Report a finished epoch; returns the line.

        Args:
            epoch: 0-based epoch index.
            train: ``loss``, ``accuracy`` of :func:`training.train.train_one_epoch`.
            val: ``loss``, ``accuracy``, ``auc`` (None with one class) of :func:`training.train.evaluate`.
            improved: a new best validation loss (``best.pt`` written).
        """
        seconds = time.perf_counter() - self._t0 if self._t0 is not None else float(train.get("seconds", 0.0))
        self.durations.append(seconds)
        eta = self.eta(epoch)
        width = len(str(self.total_epochs))
        line = (
            f"epoch {epoch + 1:>{width}}/{self.total_epochs}: train loss {_num(train['loss'])} "
            f"acc {_num(train['accuracy'], 3)} | val loss {_num(val['loss'])} acc {_num(val['accuracy'], 3)} "
            f"AUC {_num(val.get('auc'), 3)}{' (best)' if improved else ''} | {format_duration(seconds)}/epoch"
        )
        if eta is not None and epoch + 1 < self.total_epochs:
            line += f", ETA {format_duration(eta)}"
        self.say(line)
        return line
