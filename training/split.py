"""Stratified validation split from ForgeryNet-style list files (the original's ``split_dataset.py``, §5.4).

List format (the original's ``csv/*.csv``): one video per line, space separated, no header,
``<relative face-folder path> <binary label> [...] <method id>``; label 1 = fake, 0 = pristine, the method id is
the last column (0 = pristine, 1..8 = ForgeryNet methods). With only two columns the method is the label.

Differences from the original: nothing is moved on disk (the split is three list files), the per-method
validation counts are rounded rather than truncated, rows are never lost to truncation, and a split whose lists
lack a class or are too small is refused (:func:`check_lists`) instead of producing a run without a validation
AUC.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ListRow",
    "read_list",
    "write_list",
    "stratified_split",
    "filter_existing",
    "split_lists",
    "check_lists",
    "SplitSummary",
    "SplitError",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ListRow:
    """One line of a list file: face-folder path (relative to the data root), binary label, method id."""

    path: str
    label: int
    method: int

    def line(self) -> str:
        return f"{self.path} {self.label} {self.method}"


def read_list(path: str | Path, *, path_map: dict[str, str] | None = None) -> list[ListRow]:
    """Read a list file; blank lines and ``#`` comments are skipped.

    Args:
        path: the list file.
        path_map: prefix replacements applied to each path (e.g. ``{"train_video_release/": "train/"}``).

    Raises:
        ValueError: a line with fewer than two columns or a non-integer label/method.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"list file not found: {path}")
    rows: list[ListRow] = []
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise ValueError(f"{path}:{n}: expected '<path> <label> [<method>]', got {raw!r}")
        try:
            label = int(float(parts[1]))
            method = int(float(parts[-1])) if len(parts) > 2 else label
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: label and method must be integers: {raw!r}") from exc
        p = parts[0]
        for old, new in (path_map or {}).items():
            if p.startswith(old):
                p = new + p[len(old) :]
                break
        rows.append(ListRow(p, label, method))
    return rows


def write_list(rows: Iterable[ListRow], path: str | Path) -> Path:
    """Write rows in the list format (same as the original's csv files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r.line() + "\n" for r in rows))
    return path


def filter_existing(rows: list[ListRow], data_path: str | Path) -> tuple[list[ListRow], list[ListRow]]:
    """Split rows into (kept, missing): kept rows have a face folder holding at least one ``.png``."""
    root = Path(data_path)
    kept, missing = [], []
    for r in rows:
        folder = root / r.path
        ok = folder.is_dir() and next(folder.rglob("*.png"), None) is not None
        (kept if ok else missing).append(r)
    return kept, missing


def stratified_split(
    rows: list[ListRow], val_fraction: float = 0.1, seed: int = 42
) -> tuple[list[ListRow], list[ListRow]]:
    """Per method id, move ``round(val_fraction * count)`` randomly chosen rows to validation.

    Deterministic for a given (rows, fraction, seed), independent of the input order. Order of the outputs follows
    the input order.

    Returns:
        (train rows, validation rows).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = random.Random(seed)
    by_method: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        by_method.setdefault(r.method, []).append(i)
    val_idx: set[int] = set()
    for method in sorted(by_method):
        idx = sorted(by_method[method], key=lambda i: rows[i].path)
        k = min(len(idx), int(round(val_fraction * len(idx))))
        val_idx.update(rng.sample(idx, k))
    train = [r for i, r in enumerate(rows) if i not in val_idx]
    val = [r for i, r in enumerate(rows) if i in val_idx]
    return train, val


class SplitError(ValueError):
    """A list of the split would be unusable (a class missing, or too few videos)."""


@dataclass
class SplitSummary:
    """Counts per list and method, the rows dropped because their face folder is missing, and the problems
    written anyway (``allow_incomplete``)."""

    counts: dict[str, dict[str, int]]
    missing: dict[str, int]
    outputs: dict[str, str]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "counts": self.counts,
            "missing": self.missing,
            "outputs": self.outputs,
            "warnings": self.warnings,
        }


def _counts(rows: list[ListRow]) -> dict[str, int]:
    c = Counter(r.method for r in rows)
    out = {
        "total": len(rows),
        "real": sum(r.label == 0 for r in rows),
        "fake": sum(r.label == 1 for r in rows),
    }
    out.update({f"method_{m}": c[m] for m in sorted(c)})
    return out


def check_lists(lists: dict[str, list[ListRow]], *, min_videos: int = 10) -> list[str]:
    """The problems of a split: every list needs both classes (AUC, EER and the class weight are undefined
    otherwise) and at least ``min_videos`` videos.

    Args:
        lists: name (``train``, ``val``, ``test``) → rows.
        min_videos: smallest acceptable list.

    Returns:
        One sentence per problem (empty: the split is usable).
    """
    problems = []
    for name, rows in lists.items():
        real = sum(r.label == 0 for r in rows)
        fake = len(rows) - real
        lacks = [c for c, n in (("pristine (label 0)", real), ("fake (label 1)", fake)) if n == 0]
        if lacks or len(rows) < min_videos:
            why = []
            if lacks:
                why.append(f"no {' and no '.join(lacks)} video")
            if len(rows) < min_videos:
                why.append(f"fewer than {min_videos} videos")
            n = len(rows)
            problems.append(
                f"{name}.csv would hold {n} video{'' if n == 1 else 's'} ({real} real / {fake} fake): "
                + ", ".join(why)
            )
    return problems


def split_lists(
    train_list: str | Path,
    out_dir: str | Path,
    *,
    test_list: str | Path | None = None,
    data_path: str | Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 42,
    path_map: dict[str, str] | None = None,
    min_videos: int = 10,
    allow_incomplete: bool = False,
) -> SplitSummary:
    """Write ``train.csv``, ``val.csv`` (stratified by method) and ``test.csv`` into ``out_dir``.

    Nothing is written when a list would lack a class or hold fewer than ``min_videos`` videos (see
    :func:`check_lists`), unless ``allow_incomplete``.

    Args:
        train_list: the list to split (ForgeryNet *Training*).
        out_dir: output folder (created).
        test_list: an optional list copied (filtered) to ``test.csv`` (ForgeryNet *Validation* in the paper).
        data_path: when given, rows whose face folder has no png are dropped and counted as missing.
        val_fraction: fraction of each method moved to validation.
        seed: random seed of the split.
        path_map: prefix replacements for the paths (see :func:`read_list`).
        min_videos: smallest acceptable list.
        allow_incomplete: write the lists anyway; the problems become ``warnings`` of the summary.

    Raises:
        SplitError: a list is unusable and ``allow_incomplete`` is False.
    """
    out = Path(out_dir)
    rows = read_list(train_list, path_map=path_map)
    test = read_list(test_list, path_map=path_map) if test_list is not None else None
    missing: dict[str, int] = {}
    if data_path is not None:
        rows, lost = filter_existing(rows, data_path)
        missing["train"] = len(lost)
        if lost:
            logger.warning("%d rows of %s have no face folder under %s", len(lost), train_list, data_path)
        if test is not None:
            test, lost = filter_existing(test, data_path)
            missing["test"] = len(lost)
    train, val = stratified_split(rows, val_fraction, seed)
    lists = {"train": train, "val": val, **({"test": test} if test is not None else {})}
    problems = check_lists(lists, min_videos=min_videos)
    if problems and not allow_incomplete:
        dropped = (
            f" ({sum(missing.values())} rows dropped: no face folder under {data_path})"
            if any(missing.values())
            else ""
        )
        raise SplitError(
            "; ".join(problems)
            + f"{dropped}. Nothing written. Add videos, change --val-fraction or --min-videos, or pass "
            "--allow-incomplete to write these lists anyway"
        )
    for problem in problems:
        logger.info("written anyway (allow_incomplete): %s", problem)
    outputs = {name: str(write_list(part, out / f"{name}.csv")) for name, part in lists.items()}
    counts = {name: _counts(part) for name, part in lists.items()}
    summary = SplitSummary(counts=counts, missing=missing, outputs=outputs, warnings=problems)
    (out / "split_summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    return summary
