"""Fuzz the decoder: mutated videos through ``mintime.video.decode_sampled`` in worker processes under limits.

Every input must end as a decoded clip or a :class:`mintime.video.VideoDecodeError`; anything else is a bug.

    python benchmarks/fuzz_decode.py --inputs 300                     # the bounded run of the test suite
    nice -n 10 python benchmarks/fuzz_decode.py --inputs 10000 --corpus all --json outputs/fuzz/10k.json

The corpus: small synthetic clips of every accepted container and several codecs (made here with PyAV), size
bombs (8192x4096 and 4096x2304 H.264 of flat frames, a 3840x2160 MJPEG), and with ``--corpus all`` the shared
footage (``../shared/data/videos``). Input ``i`` is derived from ``(seed, i)`` only, so any input can be made
again (``--only i``): bit flips, byte runs, truncation, container-structure corruption (MP4 boxes, EBML
elements, RIFF chunks: sizes and names), codec-tag corruption, random bytes, known magic numbers followed by
random bytes, splices of two files, duplicated chunks, appended garbage, and bombs with lying headers.

Each input runs in a worker process with an address-space limit (``--memory-mb``) and a per-input time limit
(``--timeout``): a worker that dies is a *crash*, one that does not answer in time is a *hang* (it is killed;
a fresh worker takes over). The peak RSS of every input is measured (``VmHWM`` after resetting it through
``/proc/self/clear_refs``). Printed: inputs tried, decoded, clean errors, other exceptions (must be 0), out of
memory (an allocation failing near the limit; FFmpeg's refusal of an absurd size a header asks for is a clean
error, counted apart), crashes, hangs, peak RSS; inputs of the failing kinds are written to ``--out``. Exit
code 1 when any input failed.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = Path(os.environ.get("MINTIME_SHARED", REPO.parent / "shared")) / "data" / "videos"
sys.path.insert(0, str(REPO))  # the checkout's tests/helpers (synthetic clips)

#: Mutation kinds and their weights.
KINDS = {
    "bitflip": 14,
    "bytes": 12,
    "truncate": 10,
    "structure": 16,
    "codec_tag": 8,
    "random": 5,
    "magic": 8,
    "splice": 7,
    "duplicate": 6,
    "append": 4,
    "bomb": 6,
    "clean": 4,
}
MAGICS = [
    b"\x00\x00\x00\x18ftypisom",
    b"\x00\x00\x00\x20ftypqt  ",
    b"\x1a\x45\xdf\xa3",
    b"RIFF\x00\x00\x00\x00AVI LIST",
    b"\x00\x00\x01\xba",
    b"\x00\x00\x01\xb3",
    b"\x47\x40\x00\x10",
    b"FLV\x01\x05",
    b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",
    b"GIF89a",
    b"#EXTM3U\n",
    b"ffconcat version 1.0\n",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0",
    b"ID3\x03",
    b"OggS",
    b"\x00\x00\x00\x01\x67",
]
MP4_BOXES = [b"ftyp", b"moov", b"mvhd", b"trak", b"tkhd", b"mdia", b"mdhd", b"hdlr", b"minf", b"stbl", b"stsd",
             b"stts", b"stss", b"stsc", b"stsz", b"stco", b"co64", b"ctts", b"edts", b"elst", b"mdat", b"avcC",
             b"udta", b"meta"]  # fmt: skip
EBML_IDS = [b"\x1a\x45\xdf\xa3", b"\x18\x53\x80\x67", b"\x16\x54\xae\x6b", b"\xae", b"\x1f\x43\xb6\x75", b"\xa3",
            b"\x1c\x53\xbb\x6b", b"\x15\x49\xa9\x66", b"\xe0", b"\xb0", b"\xba", b"\x86", b"\x63\xa2"]  # fmt: skip
RIFF_IDS = [b"RIFF", b"LIST", b"hdrl", b"avih", b"strl", b"strh", b"strf", b"movi", b"idx1", b"00dc", b"vids"]
CODEC_TAGS = [b"avc1", b"avc3", b"hvc1", b"hev1", b"vp09", b"av01", b"mp4v", b"mjpa", b"H264", b"FMP4", b"XVID",
              b"MJPG", b"V_MPEG4/ISO/AVC", b"V_VP9", b"V_VP8", b"V_MJPEG"]  # fmt: skip


# --- the corpus ------------------------------------------------------------------------------------------------


def build_corpus(folder: Path, *, shared: bool) -> list[Path]:
    """Write the base files into ``folder``; returns them in a fixed order."""
    from tests.helpers.media import flat_clip, make_clip

    folder.mkdir(parents=True, exist_ok=True)
    size = (160, 120)
    specs = [
        ("h264.mp4", "libx264", {}),
        ("h264_faststart.mp4", "libx264", {"container_options": {"movflags": "faststart"}}),
        ("h264.mov", "libx264", {}),
        ("h264.mkv", "libx264", {}),
        ("h264.ts", "libx264", {}),
        ("h264.flv", "libx264", {}),
        ("vp9.webm", "libvpx-vp9", {}),
        ("vp8.webm", "libvpx", {}),
        ("mjpeg.avi", "mjpeg", {}),
        ("mpeg4.avi", "mpeg4", {}),
        ("mpeg4.mp4", "mpeg4", {}),
    ]
    files = []
    for name, codec, kw in specs:
        path = folder / name
        if not path.exists():
            make_clip(path, frames=24, size=size, codec=codec, **kw)
        files.append(path)
    for name, wh, frames, codec in (
        ("bomb_8k.mp4", (8192, 4096), 3, "libx264"),
        ("bomb_4k.mp4", (4096, 2304), 6, "libx264"),
        ("bomb_uhd_mjpeg.avi", (3840, 2160), 3, "mjpeg"),
    ):
        path = folder / name
        if not path.exists():
            flat_clip(path, wh, frames, codec)
        files.append(path)
    if shared and SHARED_VIDEOS.is_dir():
        files += sorted(SHARED_VIDEOS.glob("*.mp4"))
    return files


# --- mutations (pure: input i depends only on (seed, i) and the corpus) -----------------------------------------


def _positions(data: bytes, needles: list[bytes]) -> list[int]:
    found = []
    for needle in needles:
        start = 0
        while len(found) < 4096:
            at = data.find(needle, start)
            if at < 0:
                break
            found.append(at)
            start = at + 1
    return found


def _random_bytes(rng: np.random.Generator, n: int) -> bytes:
    return rng.integers(0, 256, int(n), dtype=np.uint8).tobytes()


def _offset(rng: np.random.Generator, n: int) -> int:
    """A position, biased towards the head where the container headers are."""
    if n <= 1:
        return 0
    if rng.random() < 0.6:
        return int(rng.integers(0, min(n, 65536)))
    return int(rng.integers(0, n))


def mutate(kind: str, base: bytes, other: bytes, rng: np.random.Generator) -> bytes:
    """One mutation of ``base`` (``other`` is a second corpus file, for splices)."""
    data = bytearray(base)
    n = len(data)
    if kind == "bitflip":
        for _ in range(int(rng.integers(1, 65))):
            at = _offset(rng, n)
            data[at] ^= 1 << int(rng.integers(0, 8))
    elif kind == "bytes":
        for _ in range(int(rng.integers(1, 9))):
            at, length = _offset(rng, n), int(rng.integers(1, 17))
            fill = rng.choice([0, 1, 2])
            run = {0: b"\x00" * length, 1: b"\xff" * length, 2: _random_bytes(rng, length)}[int(fill)]
            data[at : at + length] = run[: max(0, n - at)]
    elif kind == "truncate":
        cut = int(rng.integers(0, n)) if rng.random() < 0.5 else int(rng.integers(0, min(n, 4096)))
        return bytes(data[:cut])
    elif kind == "structure":
        spots = _positions(base, MP4_BOXES + EBML_IDS + RIFF_IDS)
        for _ in range(int(rng.integers(1, 4))):
            if not spots:
                break
            at = spots[int(rng.integers(0, len(spots)))]
            choice = int(rng.integers(0, 4))
            if choice == 0 and at >= 4:  # the size field before an MP4 box name / after a RIFF id
                value = int(rng.choice([0, 1, 7, 8, 0xFFFFFFFF, int(rng.integers(0, 2**32))]))
                data[at - 4 : at] = value.to_bytes(4, "big")
            elif choice == 1:  # the name itself
                data[at : at + 4] = _random_bytes(rng, 4)
            elif choice == 2:  # an EBML size vint: the byte after the id
                if at + 4 < n:
                    data[at + 4] = int(rng.choice([0x01, 0x80, 0xFF, int(rng.integers(0, 256))]))
            else:  # a 32-bit field inside (counts, sizes, widths)
                field = at + 4 + 4 * int(rng.integers(0, 8))
                if field + 4 <= n:
                    value = int(rng.choice([0, 0xFFFFFFFF, 0x7FFFFFFF, 65535, int(rng.integers(0, 2**32))]))
                    data[field : field + 4] = value.to_bytes(4, "big")
    elif kind == "codec_tag":
        spots = _positions(base, CODEC_TAGS)
        if spots:
            at = spots[int(rng.integers(0, len(spots)))]
            if rng.random() < 0.5:
                data[at : at + 4] = bytes(rng.integers(0x20, 0x7F, 4, dtype=np.uint8))
            else:
                tag = CODEC_TAGS[int(rng.integers(0, len(CODEC_TAGS)))][:4]
                data[at : at + len(tag)] = tag
    elif kind == "random":
        return _random_bytes(rng, int(rng.integers(1, 65536)))
    elif kind == "magic":
        return MAGICS[int(rng.integers(0, len(MAGICS)))] + _random_bytes(rng, int(rng.integers(0, 4096)))
    elif kind == "splice":
        a, b = int(rng.integers(0, n)), int(rng.integers(0, len(other)))
        return bytes(data[:a]) + other[b:]
    elif kind == "duplicate":
        a = int(rng.integers(0, n))
        b = min(n, a + int(rng.integers(1, 65536)))
        at = int(rng.integers(0, n))
        return bytes(data[:at]) + bytes(data[a:b]) + bytes(data[at:])
    elif kind == "append":
        return bytes(data) + _random_bytes(rng, int(rng.integers(1, 65536)))
    elif (
        kind == "bomb"
    ):  # header width/height fields (tkhd: 16.16 fixed, avc1 sample entry: 16-bit) set large
        for needle, fmt in ((b"tkhd", "fixed"), (b"avc1", "short")):
            at = base.find(needle)
            if at < 0:
                continue
            if fmt == "fixed" and at + 4 + 84 <= n:
                data[at + 4 + 76 : at + 4 + 84] = (16384 << 16).to_bytes(4, "big") * 2
            elif fmt == "short" and at + 4 + 28 <= n:
                data[at + 4 + 24 : at + 4 + 28] = (16384).to_bytes(2, "big") * 2
        if rng.random() < 0.5:
            return mutate("bitflip", bytes(data), other, rng)
    elif kind != "clean":
        raise ValueError(f"unknown mutation {kind!r}")
    return bytes(data)


def make_input(corpus: list[bytes], names: list[str], seed: int, index: int) -> tuple[str, str, bytes]:
    """Input ``index``: (mutation kind, base file name, bytes)."""
    rng = np.random.default_rng([seed, index])
    kinds, weights = zip(*KINDS.items(), strict=True)
    p = np.array(weights, float) / sum(weights)
    kind = str(rng.choice(kinds, p=p))
    bombs = [i for i, n in enumerate(names) if n.startswith("bomb")]
    pick = int(rng.choice(bombs)) if kind == "bomb" and bombs else int(rng.integers(0, len(corpus)))
    other = corpus[int(rng.integers(0, len(corpus)))]
    return kind, names[pick], mutate(kind, corpus[pick], other, rng)


# --- the worker -------------------------------------------------------------------------------------------------


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_one(data: bytes, num_frames: int, probe_too: bool) -> dict[str, Any]:
    """Decode one input; classify the outcome."""
    import av

    from mintime.video import VideoDecodeError, decode_sampled, probe

    outcome, error, etype, enomem = "ok", "", "", False
    try:
        decode_sampled(data, num_frames)
    except VideoDecodeError as exc:
        cause = exc.__cause__
        # FFmpeg answers ENOMEM both when an allocation fails and when a header asks for more than its
        # max_alloc_size (2 GiB): the worker tells the two apart by the peak RSS
        enomem = isinstance(cause, av.error.MemoryError)
        oom = (isinstance(cause, MemoryError) and not enomem) or "out of memory" in str(exc)
        outcome, error, etype = ("oom" if oom else "clean"), str(exc), type(exc).__name__
    except MemoryError as exc:
        outcome, error, etype = "oom", str(exc), type(exc).__name__
    except Exception as exc:  # a bug: reported, never hidden
        outcome, error, etype = "other", str(exc), type(exc).__name__
    if probe_too and outcome in ("ok", "clean"):
        try:
            probe(data, count_packets=True)
        except VideoDecodeError:
            pass
        except Exception as exc:
            outcome, error, etype = "other", f"probe: {exc}", type(exc).__name__
    return {"outcome": outcome, "error": error[:300], "type": etype, "ffmpeg_enomem": enomem}


def worker_main(args: argparse.Namespace) -> int:
    """Serve input indices read from stdin, one JSON line per input on stdout."""
    limit = args.memory_mb * 1024**2
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import logging

    logging.disable(logging.WARNING)  # truncated inputs log warnings by design
    files = [Path(p) for p in json.loads(Path(args.corpus_list).read_text())]
    corpus, names = [p.read_bytes() for p in files], [p.name for p in files]
    out = sys.stdout
    for line in sys.stdin:
        index = int(line)
        kind, base, data = make_input(corpus, names, args.seed, index)
        _reset_peak()
        start = time.perf_counter()
        result = run_one(data, args.num_frames, probe_too=index % 4 == 0)
        result.update(i=index, kind=kind, base=base, bytes=len(data), s=round(time.perf_counter() - start, 4))
        result["peak_mb"] = round(_peak_kb() / 1024, 1)
        if result["ffmpeg_enomem"] and result["peak_mb"] > args.memory_mb / 2:
            result["outcome"] = "oom"  # a real allocation failure near the limit
        out.write(json.dumps(result) + "\n")
        out.flush()
    return 0


# --- the driver -------------------------------------------------------------------------------------------------


class _Worker:
    def __init__(self, args: argparse.Namespace, corpus_list: Path) -> None:
        cmd = [sys.executable, __file__, "--worker", "--corpus-list", str(corpus_list), "--seed", str(args.seed),
               "--memory-mb", str(args.memory_mb), "--num-frames", str(args.num_frames)]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True
        )

    def ask(self, index: int, timeout: float) -> dict[str, Any] | str:
        """The worker's answer, or ``"crash:<signal>"`` / ``"hang"``."""
        try:
            self.proc.stdin.write(f"{index}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self._crash()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.kill()
            return "hang"
        line = self.proc.stdout.readline()
        if not line:
            return self._crash()
        return json.loads(line)

    def _crash(self) -> str:
        code = self.proc.wait()
        return f"crash:{signal.Signals(-code).name if code < 0 else code}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_fuzz(
    *,
    inputs: int,
    seed: int = 0,
    workers: int = 2,
    timeout: float = 30.0,
    memory_mb: int = 4096,
    num_frames: int = 16,
    corpus: str = "synthetic",
    corpus_dir: Path | None = None,
    out: Path | None = None,
    only: list[int] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the fuzzer; returns the summary (see the module docstring)."""
    tmp = None
    if corpus_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="fuzz-corpus-")
        corpus_dir = Path(tmp.name)
    files = build_corpus(corpus_dir, shared=corpus == "all")
    corpus_list = corpus_dir / "corpus.json"
    corpus_list.write_text(json.dumps([str(p) for p in files]))
    args = argparse.Namespace(seed=seed, memory_mb=memory_mb, num_frames=num_frames)
    todo: queue.Queue[int] = queue.Queue()
    for i in only if only is not None else range(inputs):
        todo.put(i)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    start = time.monotonic()

    def slot() -> None:
        worker = _Worker(args, corpus_list)
        try:
            while True:
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    return
                answer = worker.ask(index, timeout)
                if isinstance(answer, str):  # crash or hang: record, start a fresh worker
                    answer = {
                        "i": index,
                        "outcome": answer.split(":")[0],
                        "error": answer,
                        "type": "",
                        "s": timeout,
                    }
                    worker.kill()
                    worker = _Worker(args, corpus_list)
                with lock:
                    results.append(answer)
                    if progress and len(results) % 500 == 0:
                        print(
                            f"  {len(results)} inputs, {time.monotonic() - start:.0f} s",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            worker.kill()

    threads = [threading.Thread(target=slot) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    counts = Counter(r["outcome"] for r in results)
    failing = [r for r in results if r["outcome"] in ("other", "crash", "hang", "oom")]
    if failing and out is not None:
        out.mkdir(parents=True, exist_ok=True)
        data = [p.read_bytes() for p in files]
        names = [p.name for p in files]
        for r in failing:
            kind, base, raw = make_input(data, names, seed, r["i"])
            (out / f"input_{r['i']:06d}_{r['outcome']}_{kind}.bin").write_bytes(raw)
    peak = max(results, key=lambda r: r.get("peak_mb", 0.0), default={})
    summary = {
        "inputs": len(results),
        "decoded": counts["ok"],
        "clean_errors": counts["clean"],
        "other_exceptions": counts["other"],
        "out_of_memory": counts["oom"],
        "ffmpeg_refused_allocation": sum(
            1 for r in results if r.get("ffmpeg_enomem") and r["outcome"] == "clean"
        ),
        "crashes": counts["crash"],
        "hangs": counts["hang"],
        "peak_rss_mb": peak.get("peak_mb", 0.0),
        "peak_rss_input": {k: peak.get(k) for k in ("i", "kind", "base", "bytes")},
        "seconds": round(elapsed, 1),
        "by_kind": {k: dict(Counter(r["outcome"] for r in results if r.get("kind") == k)) for k in KINDS},
        "errors_by_prefix": dict(
            Counter(r["error"].split(":")[0] for r in results if r["outcome"] == "clean")
        ),
        "failures": failing[:50],
        "settings": {
            "seed": seed,
            "workers": workers,
            "timeout_s": timeout,
            "memory_mb": memory_mb,
            "num_frames": num_frames,
            "corpus": [p.name for p in files],
        },  # fmt: skip
    }
    if tmp is not None:
        tmp.cleanup()
    return summary


def print_summary(s: dict[str, Any]) -> None:
    print(f"inputs tried        {s['inputs']}  ({s['seconds']} s)")
    print(f"decoded             {s['decoded']}")
    print(f"clean errors        {s['clean_errors']}  (VideoDecodeError)")
    print(f"other exceptions    {s['other_exceptions']}  (must be 0)")
    print(f"out of memory       {s['out_of_memory']}  (limit {s['settings']['memory_mb']} MB)")
    print(f"  of the clean errors, FFmpeg refused a header's allocation: {s['ffmpeg_refused_allocation']}")
    print(f"crashes             {s['crashes']}")
    print(f"hangs               {s['hangs']}  (timeout {s['settings']['timeout_s']} s)")
    print(f"peak RSS per input  {s['peak_rss_mb']} MB  ({s['peak_rss_input']})")
    for f in s["failures"][:10]:
        print(f"  FAILED input {f['i']} ({f.get('kind')}, {f.get('base')}): {f.get('type')} {f['error']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inputs", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per input before it counts as a hang")
    p.add_argument("--memory-mb", type=int, default=4096, help="address-space limit of a worker")
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument(
        "--corpus", choices=["synthetic", "all"], default="synthetic", help="all: + shared footage"
    )
    p.add_argument("--corpus-dir", type=Path, default=None, help="keep the generated corpus here")
    p.add_argument(
        "--out", type=Path, default=REPO / "outputs" / "fuzz", help="failing inputs are written here"
    )
    p.add_argument("--only", type=int, nargs="+", default=None, help="run just these input indices")
    p.add_argument("--json", type=Path, default=None, help="write the summary here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--corpus-list", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args)
    summary = run_fuzz(
        inputs=args.inputs,
        seed=args.seed,
        workers=args.workers,
        timeout=args.timeout,
        memory_mb=args.memory_mb,
        num_frames=args.num_frames,
        corpus=args.corpus,
        corpus_dir=args.corpus_dir,
        out=args.out,
        only=args.only,
        progress=True,
    )
    print_summary(summary)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    bad = summary["other_exceptions"] + summary["crashes"] + summary["hangs"] + summary["out_of_memory"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
