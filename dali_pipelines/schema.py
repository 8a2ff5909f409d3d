"""What a serialized DALI pipeline (``model.dali``) contains, and whether a given DALI version can run it.

Reading needs no DALI: the serialized pipeline is a protobuf ``PipelineDef`` (DALI's ``dali.proto``), decoded
here at the wire level. The parts used:

* ``PipelineDef``: field 5 = operators (``OpDef``), field 7 = pipeline outputs (``InputOutput``).
* ``OpDef``: 1 = schema name (``decoders__Video``), 2 = inputs, 3 = outputs, 4 = arguments.
* ``InputOutput``: 1 = name, 2 = device (``cpu``/``gpu``), 3 = is an argument input, 4 = the argument's name.
* ``Argument``: 1 = name, 5 = string values (``device`` is one).

The operator schemas of a DALI version (devices, argument names, which accept per-sample tensors) are dumped
to JSON with :func:`operator_schemas` (``python -m dali_pipelines.schema dump``). The repository keeps the
dump of the DALI that the image's Triton release ships (``deploy/dali-<version>-schema.json``), so CI checks a
graph built with the DALI installed here against the operators of the pinned one (:func:`check_against`).

Usage::

    python -m dali_pipelines.schema dump --out deploy/dali-2.1.1-schema.json    # with that DALI installed
    python -m dali_pipelines.schema check model.dali --schema deploy/dali-2.1.1-schema.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["read_pipeline", "gpu_to_cpu", "operator_schemas", "check_against", "main"]

#: Arguments every operator has or DALI's Python front end adds; not part of an operator's schema.
FRONTEND_ARGS = frozenset({"device", "preserve_name", "preserve", "name", "bytes_per_sample_hint"})


def _varint(b: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated varint")
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return result, i


def _fields(b: bytes) -> list[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of one protobuf message (values of length-delimited fields: bytes)."""
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(b, i)
        elif wire == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise ValueError("truncated length-delimited field")
            value, i = b[i : i + n], i + n
        elif wire == 5:
            value, i = b[i : i + 4], i + 4
        elif wire == 1:
            value, i = b[i : i + 8], i + 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((field, wire, value))
    return out


def _io(b: bytes) -> dict[str, Any]:
    f = {n: v for n, _, v in _fields(b)}
    return {
        "name": f.get(1, b"").decode(),
        "device": f.get(2, b"").decode(),
        "argument": bool(f.get(3, 0)),
        "arg_name": f.get(4, b"").decode() or None,
    }


def read_pipeline(blob: bytes) -> dict[str, Any]:
    """The operators and outputs of a serialized pipeline.

    Returns:
        ``{"ops": [{"schema", "device", "args", "inputs", "outputs"}], "outputs": [{"name", "device"}]}``;
        ``args`` are the argument names set on the operator, ``inputs`` carry ``arg_name`` for argument inputs.

    Raises:
        ValueError: not a serialized DALI pipeline.
    """
    ops, outputs = [], []
    for field, wire, value in _fields(bytes(blob)):
        if field == 5 and wire == 2:
            op: dict[str, Any] = {"schema": "", "device": "", "args": [], "inputs": [], "outputs": []}
            for f, w, v in _fields(value):
                if f == 1 and w == 2:
                    op["schema"] = v.decode()
                elif f == 2 and w == 2:
                    op["inputs"].append(_io(v))
                elif f == 3 and w == 2:
                    op["outputs"].append(_io(v))
                elif f == 4 and w == 2:
                    arg = _fields(v)
                    name = next((x.decode() for n, _, x in arg if n == 1), "")
                    op["args"].append(name)
                    if name == "device":
                        op["device"] = next((x.decode() for n, w2, x in arg if n == 5 and w2 == 2), "")
            ops.append(op)
        elif field == 7 and wire == 2:
            io = _io(value)
            outputs.append({"name": io["name"], "device": io["device"]})
    if not ops or not all(op["schema"] for op in ops):
        raise ValueError("not a serialized DALI pipeline (no operators found)")
    return {"ops": ops, "outputs": outputs}


def gpu_to_cpu(pipeline: dict[str, Any]) -> list[str]:
    """CPU operators of a :func:`read_pipeline` result that read GPU data (legacy executors refuse them)."""
    return [
        f"{op['schema']} (cpu) reads {i['name']} from the GPU"
        for op in pipeline["ops"]
        if op["device"] == "cpu"
        for i in op["inputs"]
        if i["device"] == "gpu"
    ]


def operator_schemas(names: Iterable[str]) -> dict[str, Any]:
    """Devices and arguments of DALI operators in the installed DALI (imports ``nvidia.dali``).

    Returns:
        ``{"dali": version, "operators": {schema: {"devices": [...], "args": {name: {"type", "tensor"}}}}}``.
    """
    import nvidia.dali as dali
    import nvidia.dali.backend as backend

    ops: dict[str, Any] = {}
    for name in sorted(set(names)):
        schema = backend.GetSchema(name)
        args = {}
        for arg in schema.GetArgumentNames():
            args[arg] = {
                "type": str(schema.GetArgumentType(arg)),
                "tensor": bool(schema.IsTensorArgument(arg)),
            }
        ops[name] = {"devices": sorted(schema.GetSupportedBackends()), "args": args}
    return {"dali": dali.__version__, "operators": ops}


def check_against(pipeline: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    """Problems running a :func:`read_pipeline` graph with the DALI whose :func:`operator_schemas` are given:
    unknown operators, unsupported devices, unknown arguments, argument inputs that are not tensor arguments."""
    problems = []
    known = schemas["operators"]
    version = schemas.get("dali", "?")
    for op in pipeline["ops"]:
        name = op["schema"]
        if name not in known:
            problems.append(f"DALI {version} has no operator {name}")
            continue
        spec = known[name]
        if op["device"] and op["device"] not in spec["devices"]:
            problems.append(f"DALI {version}: {name} has no {op['device']} backend ({spec['devices']})")
        for arg in op["args"]:
            if arg.startswith("_") or arg in FRONTEND_ARGS:
                continue
            if arg not in spec["args"]:
                problems.append(f"DALI {version}: {name} has no argument {arg!r}")
        for inp in op["inputs"]:
            if inp["argument"]:
                arg = spec["args"].get(inp["arg_name"] or "")
                if arg is None or not arg["tensor"]:
                    problems.append(
                        f"DALI {version}: {name} argument {inp['arg_name']!r} takes no per-sample tensor"
                    )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dali_pipelines.schema", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    dump = sub.add_parser("dump", help="operator schemas of the installed DALI for the project's graphs")
    dump.add_argument("--out", type=Path, required=True)
    check = sub.add_parser("check", help="check a model.dali against a schema dump")
    check.add_argument("model", type=Path)
    check.add_argument("--schema", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "dump":
        from dali_pipelines.video_decode import build_pipeline

        names = set()
        for sampling in ("indices", "in_graph"):
            for device in ("cpu", "mixed"):
                pipe = build_pipeline(device, sampling=sampling, max_decoded_frames=300, build=False)
                names |= {op["schema"] for op in read_pipeline(pipe.serialize())["ops"]}
        args.out.write_text(json.dumps(operator_schemas(names), indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.out}")
        return 0
    pipeline = read_pipeline(args.model.read_bytes())
    problems = check_against(pipeline, json.loads(args.schema.read_text()))
    for p in problems:
        print(p, file=sys.stderr)
    transitions = gpu_to_cpu(pipeline)
    for t in transitions:
        print(f"GPU->CPU transition (needs DALI_USE_EXEC2=1 in Triton's DALI backend): {t}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
