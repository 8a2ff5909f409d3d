"""What the GPU check carries to the lent machine, in how many calls, and how long the whole session takes.

Every device call carries the working tree (tracked and untracked-not-ignored files) plus the paths it names,
at most 64 MiB together. ``prepare.sh`` writes the wheel bundle and the extra bundle as parts under
``.gpu/parts`` (``p*``: wheels, ``x*``: clips, dlib's models, perf_analyzer); this module packs consecutive
parts into as few calls as fit, the last call also running ``check.sh``, and adds up the device time::

    python benchmarks/gpu/carry.py            # the calls to make and the time plan (what check.sh --dry-run shows)
    python benchmarks/gpu/carry.py --calls    # only the calls, one per line (prepare.sh prints them)

The time plan: the machine's start (1-3 min, counted as 3), each part-carrying call (``PER_CALL_S``: an
estimate until a lent machine measures it), unpacking and installing the wheels, then the check's own caps
(``check.py``'s ``PLAN``). It must fit the 15 device minutes with room for one rerun of a short step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MIB = 1024 * 1024
#: What one call may carry, tree included (the device tool's limit).
CALL_LIMIT_MIB = 64.0
#: Room left in every call for files that appear in the tree between now and the calls.
MARGIN_MIB = 1.0
DEVICE_MINUTES = 15.0
#: Assumed, not measured: a machine's start (the device tool says 1-3 minutes) and one part-carrying call (the
#: transfer of <= 64 MiB plus the call's own overhead).
START_S = 180.0
PER_CALL_S = 20.0
#: check.sh before check.py: checksum, untar and `pip install --no-deps --target` of the wheels (an estimate).
INSTALL_S = 45.0


@dataclass
class Call:
    parts: list[Path]
    mib: float  # parts only
    last: bool = False


def tree_mib(repo: Path = REPO) -> float:
    """Size of what every call sends: tracked plus untracked-not-ignored files."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo, capture_output=True, check=True
    ).stdout
    total = 0
    for name in out.split(b"\0"):
        p = repo / name.decode()
        if name and p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total / MIB


def pack(parts: list[Path], room_mib: float) -> list[Call]:
    """Consecutive parts into calls of at most ``room_mib`` each (order kept: each tar is appended in order)."""
    calls: list[Call] = []
    for part in parts:
        size = part.stat().st_size / MIB
        if size > room_mib:
            raise ValueError(f"{part} is {size:.1f} MiB, more than a call can carry ({room_mib:.1f} MiB)")
        if calls and calls[-1].mib + size <= room_mib:
            calls[-1].parts.append(part)
            calls[-1].mib += size
        else:
            calls.append(Call([part], size))
    if calls:
        calls[-1].last = True
    return calls


def command(call: Call, check: str) -> str:
    """The shell command of one call: append its parts to their tars (the first part of each tar starts it)."""
    steps = []
    for part in call.parts:
        target = "/tmp/extra.tar" if part.name.startswith("x") else "/tmp/bundle.tar"
        op = ">" if part.name in ("p00", "x00") else ">>"
        steps.append(f"cat .gpu/parts/{part.name} {op} {target}")
    if call.last:
        steps.append(check)
    return " && ".join(steps)


def plan(repo: Path = REPO, check: str = "benchmarks/gpu/check.sh") -> dict:
    """Calls, sizes and the device-time plan for the parts under ``repo/.gpu/parts``."""
    from benchmarks.gpu.check import CAPS

    tree = tree_mib(repo)
    parts_dir = repo / ".gpu" / "parts"
    parts = sorted(parts_dir.glob("p*")) + sorted(parts_dir.glob("x*")) if parts_dir.is_dir() else []
    room = CALL_LIMIT_MIB - tree - MARGIN_MIB
    calls = pack(parts, room) if parts else []
    check_s = sum(CAPS.values())
    device_s = START_S + PER_CALL_S * max(len(calls) - 1, 0) + INSTALL_S + check_s
    return {
        "tree_mib": round(tree, 1),
        "room_per_call_mib": round(room, 1),
        "parts": len(parts),
        "parts_mib": round(sum(p.stat().st_size for p in parts) / MIB, 1),
        "calls": [
            {"parts": [p.name for p in c.parts], "mib": round(c.mib + tree, 1), "command": command(c, check)}
            for c in calls
        ],  # fmt: skip
        "seconds": {
            "start": START_S,
            "carrying_calls": PER_CALL_S * max(len(calls) - 1, 0),
            "install": INSTALL_S,
            "check": check_s,
            "total": device_s,
        },  # fmt: skip
        "fits": device_s <= DEVICE_MINUTES * 60 and check_s + INSTALL_S <= 8 * 60,
    }


def text(p: dict) -> str:
    if not p["calls"]:
        return (
            f"carry: the working tree is {p['tree_mib']} MiB per call; no parts under .gpu/parts yet "
            "(run benchmarks/gpu/prepare.sh to build them)"
        )
    s = p["seconds"]
    lines = [
        f"carry: {p['parts']} parts, {p['parts_mib']} MiB, in {len(p['calls'])} calls of <= "
        f"{CALL_LIMIT_MIB:.0f} MiB (tree {p['tree_mib']} MiB each; the last call runs the check):",
        *(f"  {i + 1:>2}. {c['mib']:5.1f} MiB  {c['command']}" for i, c in enumerate(p["calls"])),
        f"device time: start {s['start'] / 60:.1f} min (assumed) + {len(p['calls']) - 1} carrying calls x "
        f"{PER_CALL_S:.0f} s (assumed) + install {s['install']:.0f} s + check caps {s['check']:.0f} s = "
        f"{s['total'] / 60:.1f} min of {DEVICE_MINUTES:.0f} ({'fits' if p['fits'] else 'DOES NOT FIT'}; "
        f"on the machine: {(s['install'] + s['check']) / 60:.1f} min of 8)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", action="store_true", help="print only the calls' commands")
    parser.add_argument("--check", default="benchmarks/gpu/check.sh", help="the last call's check command")
    args = parser.parse_args(argv)
    p = plan(check=args.check)
    if args.calls:
        for c in p["calls"]:
            print(f"carry {json.dumps([f'.gpu/parts/{n}' for n in c['parts']])}  command: {c['command']}")
    else:
        print(text(p))
    return 0 if p["fits"] or not p["calls"] else 1


if __name__ == "__main__":
    sys.exit(main())
