"""Refit the search's winner on train+validation, evaluate it on the held-out test split and write
its model card (Markdown + JSON): data, metrics, calibration, slices, latency, limits."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fabric.checkpoint import Checkpoint
from fabric.data.dataset import Dataset
from fabric.families import get_family
from fabric.families.trees import validation_metric
from fabric.latency import LatencyProfile, measure, predict
from fabric.search import SearchResult, TrialSummary, fit_data
from fabric.spec import PipelineSpec

SLICE_MIN_ROWS = 200


@dataclass(frozen=True)
class TrainedModel:
    family: str
    params: dict[str, Any]
    onnx: bytes
    metrics: dict[str, Any]
    latency: LatencyProfile
    importance: dict[str, float]
    test_scores: np.ndarray


def _prefixed(trial: TrialSummary) -> dict[str, Any]:
    return dict(trial.params)


def refit(spec: PipelineSpec, dataset: Dataset, trial: TrialSummary, checkpoint: Checkpoint | None = None) -> TrainedModel:
    """Fit the chosen configuration on train+validation with the round/epoch count found in search.

    With `checkpoint`, the final fit saves its state as it goes and a rerun continues from it."""
    family = get_family(trial.family)
    data = fit_data(dataset, spec, deadline=None)
    # one search-style fit finds the early-stopped length, then the refit uses all labelled rows
    probe = family.fit(_prefixed(trial), data)
    params = family.refit_params(_prefixed(trial), probe)
    full = replace(
        data,
        X_train=np.concatenate([dataset.train.X, dataset.validation.X]),
        y_train=np.concatenate([dataset.train.y, dataset.validation.y]),
        checkpoint=checkpoint,
    )
    model = family.fit(params, full)
    n_features = dataset.train.X.shape[1]
    onnx_bytes = family.to_onnx(model, n_features)
    scores = predict(onnx_bytes, dataset.test.X)
    importance = family.feature_importance(model, n_features)
    names = dataset.schema.names
    return TrainedModel(
        family=trial.family,
        params=params,
        onnx=onnx_bytes,
        metrics=evaluate(spec, dataset, scores),
        latency=measure(onnx_bytes, dataset.test.X, runs=2000, warmup=100, batch_rows=256),
        importance={} if importance is None else {n: float(v) for n, v in zip(names, importance, strict=True)},
        test_scores=scores,
    )


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Brier score, expected calibration error and a reliability table over quantile bins."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    table, ece = [], 0.0
    for b in range(max(len(edges) - 1, 1)):
        mask = which == b
        if not mask.any():
            continue
        predicted, observed = float(p[mask].mean()), float(y[mask].mean())
        ece += mask.mean() * abs(predicted - observed)
        table.append({"rows": int(mask.sum()), "predicted": round(predicted, 5), "observed": round(observed, 5)})
    return {"brier": round(float(np.mean((p - y) ** 2)), 6), "ece": round(float(ece), 6), "bins": table}


def evaluate(spec: PipelineSpec, dataset: Dataset, scores: np.ndarray) -> dict[str, Any]:
    y = dataset.test.y
    out: dict[str, Any] = {"test": {spec.metric: round(validation_metric(spec.metric, y, scores), 6)}, "test_rows": len(y)}
    if spec.task == "binary":
        for metric in ("roc_auc", "pr_auc", "log_loss"):
            out["test"][metric] = round(validation_metric(metric, y, scores), 6)
        out["calibration"] = calibration(y, scores)
    else:
        for metric in ("rmse", "mae", "r2"):
            out["test"][metric] = round(validation_metric(metric, y, scores), 6)
    out["slices"] = slices(spec, dataset, scores)
    return out


def slices(spec: PipelineSpec, dataset: Dataset, scores: np.ndarray) -> list[dict[str, Any]]:
    """The metric per value of each categorical feature (values with enough rows and, for binary
    tasks, both classes), worst first: where the model is weakest."""
    frame, y = dataset.test.frame, dataset.test.y
    rows = []
    for feature in dataset.schema.categorical:
        for value, index in frame.groupby(feature, observed=True).indices.items():
            if len(index) < SLICE_MIN_ROWS or (spec.task == "binary" and len(np.unique(y[index])) < 2):
                continue
            value_metric = validation_metric(spec.metric, y[index], scores[index])
            rows.append({"feature": feature, "value": str(value), "rows": len(index), spec.metric: round(value_metric, 5)})
    sign = 1 if spec.higher_is_better else -1
    return sorted(rows, key=lambda r: sign * r[spec.metric])[:12]


def model_card(
    spec: PipelineSpec, dataset: Dataset, search: SearchResult, trained: TrainedModel, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    limits = [
        f"Trained on {dataset.rows} rows of {dataset.source}; rows unlike these (new merchants, markets or "
        "channels) are out of distribution and watched by the drift monitor.",
        f"Latency profile is model compute only (ONNX Runtime, one thread, single row): p99 "
        f"{trained.latency.p99_ms} ms against a budget of {spec.latency_budget.p99_ms} ms; the HTTP path adds to it.",
    ]
    if spec.task == "binary":
        limits.append("Scores are probabilities; check the calibration table before using them as such.")
    return {
        "name": spec.name,
        "task": spec.task,
        "metric": spec.metric,
        "family": trained.family,
        "params": trained.params,
        "data": dataset.describe(),
        "search": search.to_dict(),
        "metrics": trained.metrics,
        "latency": trained.latency.to_dict(),
        "latency_budget_ms": spec.latency_budget.p99_ms,
        "feature_importance": dict(sorted(trained.importance.items(), key=lambda kv: -kv[1])),
        "limits": limits,
        **(extra or {}),
    }


def write_model_card(card: dict[str, Any], folder: Path) -> None:
    (folder / "model_card.json").write_text(json.dumps(card, indent=2, default=str))
    (folder / "model_card.md").write_text(card_markdown(card))


def card_markdown(card: dict[str, Any]) -> str:
    test = card["metrics"]["test"]
    latency = card["latency"]
    search = card["search"]
    lines = [
        f"# Model card: {card['name']}" + (f" v{card['version']}" if card.get("version") else ""),
        "",
        f"- Task: {card['task']}, metric: {card['metric']}, family: {card['family']}",
        f"- Data: {card['data']['source']} ({card['data']['rows']} rows, fingerprint `{card['data']['fingerprint']}`)",
        f"- Split: {card['data']['split_rows']}",
        f"- Search: study `{search['study_name']}`, {search['counts']}, {search['wall_s']} s of {search['budget_s']} s"
        + (f" (+{search['spent_before_s']} s by an interrupted run it resumed)" if search.get("spent_before_s") else ""),
        "",
        "## Test metrics",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in test.items()],
        "",
        "## Latency (single row, ONNX Runtime, one thread)",
        "",
        f"p50 {latency['p50_ms']} ms, p95 {latency['p95_ms']} ms, p99 {latency['p99_ms']} ms "
        f"(budget {card['latency_budget_ms']} ms); batch of {latency.get('batch_rows')}: p99 {latency.get('batch_p99_ms')} ms",
        "",
    ]
    if card.get("precisions"):
        lines += ["## Precisions", "", f"Served: **{card.get('served_precision', 'fp32')}**.", "",
                  "| precision | bytes | test metric | drop | p99 ms | status | note |", "|---|---|---|---|---|---|---|"]
        lines += [
            f"| {p['precision']} | {p.get('size_bytes')} | {p.get('metric')} | {p.get('drop')} | {p.get('p99_ms')} "
            f"| {p.get('status')} | {p.get('message', '')} |"
            for p in card["precisions"]
        ]
        lines.append("")
    if card["metrics"].get("calibration"):
        cal = card["metrics"]["calibration"]
        lines += ["## Calibration", "", f"Brier {cal['brier']}, ECE {cal['ece']}", ""]
    if card["metrics"].get("slices"):
        lines += ["## Weakest slices", "", f"| feature | value | rows | {card['metric']} |", "|---|---|---|---|"]
        lines += [f"| {s['feature']} | {s['value']} | {s['rows']} | {s[card['metric']]} |" for s in card["metrics"]["slices"]]
        lines.append("")
    lines += ["## Limits", "", *[f"- {limit}" for limit in card["limits"]], ""]
    return "\n".join(lines)
