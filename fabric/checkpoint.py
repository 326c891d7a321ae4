"""Checkpoints for training stages that may be interrupted (spot capacity is reclaimed with two
minutes' notice): a fit writes its state every `every` rounds or epochs into one folder, and a
restarted fit with the same folder continues from the last one instead of starting over.

Writes are atomic (temp file + rename), so a kill mid-write leaves the previous checkpoint. The
search stage needs nothing here: its Optuna study (SQLite or PostgreSQL) is its checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Checkpoint:
    folder: Path
    every: int = 50  # boosting rounds; an MLP checkpoints every epoch

    def path(self, name: str) -> Path:
        return self.folder / name

    def write(self, name: str, save: Any) -> None:
        """`save(tmp_path)` writes the state; it becomes `name` only once complete."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".tmp-{name}"  # keeps the extension, which some savers read
        save(tmp)
        os.replace(tmp, self.folder / name)

    def note(self, **progress: Any) -> None:
        self.write("progress.json", lambda p: p.write_text(json.dumps(progress)))

    def progress(self) -> dict[str, Any]:
        path = self.folder / "progress.json"
        return json.loads(path.read_text()) if path.is_file() else {}
