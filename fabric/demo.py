"""The end-to-end demo on the embedded default: each stage that the local backend has, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fabric.backends import backend_for
from fabric.spec import load_pipeline, load_stack


def run_demo(spec_path: Path, stack: str, budget_s: float | None = None, show_progress: bool = True) -> dict[str, Any]:
    from fabric.cli._progress import RichProgress

    spec = load_pipeline(spec_path)
    settings = load_stack(stack)
    backend = backend_for(settings)
    with RichProgress(enabled=show_progress) as progress:
        result = backend.run(spec, progress=progress, budget_s=budget_s)
    return {"run": result.to_dict(), "run_result": result}
