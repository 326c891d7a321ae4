"""The drift report: per-window corrected sigma (the largest, and per column) against the alarm
threshold, with the episode's alarm, comparison and decision; one self-contained HTML file."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from fabric.report import _figure, _png


def drift_plot(history: list[dict[str, Any]], threshold: float) -> str:
    fig, ax = _figure(7.5, 3.8)
    columns = sorted({c for w in history for c in w["sigmas"]})
    top = sorted(columns, key=lambda c: -max(w["sigmas"].get(c, 0.0) for w in history))[:5]
    x = list(range(1, len(history) + 1))
    for column in top:
        ax.plot(x, [w["sigmas"].get(column, 0.0) for w in history], marker=".", linewidth=1, label=column)
    ax.axhline(threshold, color="red", linestyle="--", linewidth=1, label=f"alarm {threshold} sigma")
    for i, w in enumerate(history, start=1):
        if w["verdict"] == "alarm":
            ax.axvline(i, color="red", alpha=0.25, linewidth=6)
    ax.set_xlabel("window")
    ax.set_ylabel("Holm-corrected sigma")
    ax.set_title("drift per window (five most shifted columns)")
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def write_drift_report(path: Path, state_path: Path, threshold: float, report: Any) -> Path:
    history = json.loads(state_path.read_text()).get("history", []) if state_path.is_file() else []
    rows = "".join(
        f"<tr><td>{i}</td><td>{html.escape(w['model'])}</td><td>{w['verdict']}</td><td>{w['max_sigma']:.2f}</td>"
        f"<td>{html.escape(', '.join(w.get('alarmed', [])))}</td></tr>"
        for i, w in enumerate(history, start=1)
    )
    summary = json.dumps({k: report.to_dict()[k] for k in ("alarm", "retrain", "comparison", "decision", "reason", "timings_s")},
                         indent=2, default=str)  # fmt: skip
    plot = f'<img src="{drift_plot(history, threshold)}" alt="drift per window">' if history else "<p>no windows yet</p>"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<!doctype html><meta charset='utf-8'><title>drift: {html.escape(report.endpoint)}</title>"
        f"<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td,th{{padding:2px 8px}}</style>"
        f"<h1>Drift on endpoint {html.escape(report.endpoint)}</h1>{plot}"
        f"<h2>Episode</h2><pre>{html.escape(summary)}</pre>"
        f"<h2>Windows</h2><table><tr><th>#</th><th>model</th><th>verdict</th><th>max sigma</th><th>alarmed</th></tr>{rows}</table>"
    )
    return path
