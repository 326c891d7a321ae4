"""The HTML report written beside the model card: optimisation history, Pareto front of metric vs
p99 latency, feature importance. Plots are matplotlib PNGs embedded inline, so the file is
self-contained and opens without a network."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from fabric.search import SearchResult


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _figure(width: float = 6.5, height: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def history_plot(search: SearchResult, metric: str, higher: bool) -> str:
    fig, ax = _figure()
    colors = {"lightgbm": "tab:green", "xgboost": "tab:blue", "mlp": "tab:orange"}
    done = [t for t in search.trials if t.value is not None]
    for family in sorted({t.family for t in done}):
        points = [t for t in done if t.family == family]
        ax.scatter([t.number for t in points], [t.value for t in points], s=18, label=family, color=colors.get(family))
    best, running = [], None
    for t in sorted(done, key=lambda t: t.number):
        running = t.value if running is None else (max(running, t.value) if higher else min(running, t.value))
        best.append((t.number, running))
    if best:
        ax.step([b[0] for b in best], [b[1] for b in best], where="post", color="black", lw=1, label="best so far")
    pruned = [t.number for t in search.trials if t.state == "pruned"]
    ax.set_title(f"Optimisation history ({len(done)} complete, {len(pruned)} pruned)")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.legend(fontsize=8)
    return _png(fig)


def pareto_plot(search: SearchResult, metric: str, budget_ms: float) -> str:
    fig, ax = _figure()
    done = [t for t in search.trials if t.value is not None and t.p99_ms is not None]
    ax.scatter([t.p99_ms for t in done], [t.value for t in done], s=14, color="lightgray", label="trials")
    if search.pareto:
        ax.plot([t.p99_ms for t in search.pareto], [t.value for t in search.pareto], "o-", color="tab:red", label="Pareto front")
    ax.scatter([search.best.p99_ms], [search.best.value], marker="*", s=160, color="gold", edgecolor="black", label="chosen", zorder=5)
    ax.axvline(budget_ms, color="tab:red", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("single-row p99 (ms, ONNX Runtime); dashed: budget")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("Quality vs latency")
    ax.legend(fontsize=8)
    return _png(fig)


def importance_plot(importance: dict[str, float]) -> str:
    items = sorted(importance.items(), key=lambda kv: kv[1])[-15:]
    fig, ax = _figure(6.5, 0.3 * len(items) + 1)
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.set_title("Feature importance (gain)")
    return _png(fig)


def render(card: dict[str, Any], search: SearchResult, extra_sections: list[tuple[str, str]] | None = None) -> str:
    """A self-contained HTML page. `extra_sections` are (title, html) pairs added by later stages."""
    images = [
        ("Optimisation history", history_plot(search, card["metric"], card.get("higher_is_better", True))),
    ]
    if search.pareto or any(t.p99_ms for t in search.trials):
        images.append(("Pareto front: metric vs p99", pareto_plot(search, card["metric"], card["latency_budget_ms"])))
    if card.get("feature_importance"):
        images.append(("Feature importance", importance_plot(card["feature_importance"])))
    test_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in card["metrics"]["test"].items())
    lat = card["latency"]
    sections = "".join(f'<h2>{html.escape(t)}</h2><img alt="{html.escape(t)}" src="{src}">' for t, src in images)
    sections += "".join(f"<h2>{html.escape(t)}</h2>{body}" for t, body in extra_sections or [])
    title = f"{card['name']}" + (f" v{card['version']}" if card.get("version") else "")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>fabric report: {html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{html.escape(card['task'])} on {html.escape(str(card['data']['source']))}, {card['data']['rows']} rows;
family <b>{html.escape(card['family'])}</b>; single-row p99 <b>{lat['p99_ms']} ms</b> (budget {card['latency_budget_ms']} ms).</p>
<h2>Test metrics</h2><table><tr><th>metric</th><th>value</th></tr>{test_rows}</table>
{sections}
</body></html>"""
