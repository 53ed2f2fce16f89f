"""Read the scalars of TensorBoard event files (TFRecord framing; tensorboardX's protobufs)."""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["event_scalars"]


def event_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Tag -> ``(step, value)`` of every scalar in the event files of ``folder``."""
    from tensorboardX.proto import event_pb2

    tags: dict[str, list[tuple[int, float]]] = {}
    for f in folder.glob("events.out.tfevents.*"):
        data, i = f.read_bytes(), 0
        while i < len(data):
            n = struct.unpack("<Q", data[i:i + 8])[0]
            ev = event_pb2.Event()
            ev.ParseFromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in ev.summary.value:
                tags.setdefault(v.tag, []).append((ev.step, v.simple_value))
    return tags
