"""Request and prediction capture for drift monitoring: sampled JSONL, one line per scored row,
one file per UTC hour under `<endpoint>/capture/`.

Line: {"ts", "request_id", "model", "slot", "features": {name: raw value}, "prediction"}.
Lines are buffered and written in batches (a write per request would cost more than the model),
and encoded with orjson (7 us a line with the standard library's encoder, 0.5 us with orjson).
"""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

FLUSH_LINES = 256
# the standard library's encoder, built once, for what orjson refuses (an integer past 64 bits)
_encode_slowly = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _encode(line: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(line, default=str)
    except TypeError:
        return _encode_slowly(line).encode()


class Capture:
    def __init__(self, folder: Path, rate: float, seed: int | None = None) -> None:
        self.folder, self.rate = folder, rate
        self.folder.mkdir(parents=True, exist_ok=True)
        self._random = random.Random(seed)
        self._lines: list[bytes] = []
        self.written = 0
        self._second, self._second_text = -1, ""

    def offer(
        self, request_id: str, version: str, slot: str, records: list[dict[str, Any]], scores: list[float],
        lookups: list[dict[str, Any] | None] | None = None,
    ) -> None:  # fmt: skip
        if self.rate <= 0 or (self.rate < 1 and self._random.random() >= self.rate):
            return
        ts = self._timestamp()
        for i, (record, score) in enumerate(zip(records, scores, strict=True)):
            row_id = request_id if len(records) == 1 else f"{request_id}:{i}"
            line = {"ts": ts, "request_id": row_id, "model": version, "slot": slot, "features": record, "prediction": score}
            if lookups and lookups[i] is not None:  # what the online store answered, for the skew check
                line["feature_lookup"] = lookups[i]
            self._lines.append(_encode(line))
        if len(self._lines) >= FLUSH_LINES:
            self.flush()

    def _timestamp(self) -> str:
        """UTC now as `datetime.isoformat(timespec="milliseconds")` writes it, the date part formatted
        once a second (a datetime formatted per request cost several microseconds)."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1000):03d}+00:00"

    def flush(self) -> None:
        if not self._lines:
            return
        name = datetime.now(UTC).strftime("%Y%m%dT%H") + ".jsonl"
        with open(self.folder / name, "ab") as out:
            out.write(b"\n".join(self._lines) + b"\n")
        self.written += len(self._lines)
        self._lines.clear()
