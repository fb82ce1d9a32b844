"""Reading an offline W&B run back from its transaction log, as `wandb sync` would upload it.

wandb 0.31 writes an offline run only as `run-<id>.wandb` (no `files/config.yaml` or `files/wandb-summary.json`
until it is synced); this decodes the LevelDB-style record framing W&B uses, each record one
`wandb.proto.wandb_internal_pb2.Record`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK_LEN = 32 * 1024  # records never straddle a block boundary without being split into FIRST/MIDDLE/LAST
HEADER = struct.Struct("<IHB")  # crc32, data length, record type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[pb.Record]:
    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path} is not a W&B transaction log"
    pos, pending = 7, b""
    while pos + HEADER.size <= len(data):
        if BLOCK_LEN - pos % BLOCK_LEN < HEADER.size:  # a block's tail too short for a header is zero padding
            pos += BLOCK_LEN - pos % BLOCK_LEN
            continue
        _crc, length, kind = HEADER.unpack_from(data, pos)
        pos += HEADER.size
        chunk, pos = data[pos : pos + length], pos + length
        if kind == FULL:
            yield pb.Record.FromString(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pb.Record.FromString(pending + chunk)
        else:
            break  # zero padding at the end of an unfinished block


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_run(run_dir: Path) -> dict[str, Any]:
    """The run record, config, history rows, summary, artifacts and exit code that `wandb sync` would upload."""
    (log_file,) = run_dir.glob("run-*.wandb")
    out: dict[str, Any] = {
        "run": None, "config": {}, "history": [], "summary": {}, "metrics": {}, "artifacts": [], "exit_code": None,
    }  # fmt: skip
    for record in records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"].update({_key(i): json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "config":
            out["config"].update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            out["summary"].update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "metric":
            out["metrics"][record.metric.name or record.metric.glob_name] = record.metric.step_metric
        elif kind == "artifact":
            out["artifacts"].append(record.artifact)
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out
