"""One pass of the drift loop for a live local endpoint:

read new capture -> score complete windows -> on an alarm (persistent, corrected, large enough)
retrain on reference + fresh labelled traffic -> compare challenger and champion on the same recent
labelled rows they did not train on -> promote only a challenger that wins by `drift.promote_margin`
within the latency budget, through a zero-downtime swap. Every step is a registry event on the
versions involved (evidence, retrain, comparison, decision and why). An alarm that cannot be
decided for want of labels stays open in the monitor's state, so labels that arrive later decide
it on a later pass. For a champion served with feature tables, each pass also runs the train/serve
skew check on the lookups captured since the last one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fabric._imports import require
from fabric.errors import FabricError
from fabric.monitor.detect import PersistenceTracker, WindowVerdict, score_window
from fabric.monitor.profile import PREDICTION, Profile
from fabric.monitor.traffic import read_capture, read_labels
from fabric.registry import ModelVersion, Registry, now
from fabric.spec import PipelineSpec

REFERENCE_ROWS = 30_000  # the most recent reference rows the challenger trains on beside fresh ones
TRAIN_SHARE = 0.6  # of the fresh labelled rows, in time order; the rest judge the two models
MIN_EVAL_ROWS = 200


@dataclass
class MonitorReport:
    endpoint: str
    model: str
    windows: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    pending_rows: int = 0
    alarm: dict[str, Any] | None = None
    skew: dict[str, Any] | None = None  # train/serve skew of online features (specs with `features:`)
    evidently: dict[str, Any] | None = None  # the optional Evidently report (`fabric monitor --evidently-report`)
    retrain: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    decision: str = "none"  # none | promoted | kept | cannot_evaluate | retrain_disabled
    reason: str = ""
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class DriftLoop:
    def __init__(self, backend: Any, endpoint: str) -> None:
        from fabric.serving.endpoints import Endpoints

        self.backend = backend
        self.registry: Registry = backend.registry
        self.home: Path = backend.home
        self.endpoints = Endpoints(self.home, backend.settings.env)
        self.endpoint = endpoint
        self.state_path = self.home / "monitor" / f"{endpoint}.json"

    # -- state ----------------------------------------------------------------------------------
    def _load_state(self, model: str) -> dict[str, Any]:
        state = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        if state.get("model") != model:  # a new champion: its own reference, streaks and buffer
            history = state.get("history", [])
            state = {"model": model, "position": state.get("position", {}), "streaks": {}, "pending": [], "history": history}
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, default=str))
        os.replace(tmp, self.state_path)

    def _champion(self) -> ModelVersion:
        live = self.endpoints.load(self.endpoint)
        if live is not None and self.endpoints.alive(live):
            self.endpoints.admin(live, "flush")
        # a local endpoint knows what it serves; elsewhere (a cluster's servers) the alias says
        address = live.champion if live is not None else f"{self.endpoint}@champion"
        if address is None:
            raise FabricError(f"endpoint {self.endpoint} serves no model; deploy one first")
        return self.registry.get(address)

    # -- one pass -------------------------------------------------------------------------------
    def run_once(self, labels_wait_s: float = 0.0, detect_only: bool = False) -> MonitorReport:
        """One pass. `detect_only`: record an alarm but leave retraining to someone else (the
        kubernetes backend's CronJob starts a retrain Job instead)."""
        clock = time.monotonic()
        champion = self._champion()
        spec = PipelineSpec.model_validate(json.loads((champion.path / "spec.json").read_text()))
        profile = Profile.load(champion.path / "profile.json")
        features = list(json.loads((champion.path / "schema.json").read_text())["features"])
        names = [f["name"] for f in features]
        report = MonitorReport(self.endpoint, champion.address)
        state = self._load_state(champion.address)
        numeric = frozenset(f["name"] for f in features if f["kind"] == "numeric")
        batch = read_capture(self.endpoints.capture_dir(self.endpoint), names, state["position"], numeric)
        state["position"] = batch.position
        report.skipped = {"corrupt": batch.corrupt, "missing_columns": batch.missing_columns, "other_slots": batch.other_slots}
        rows = state["pending"] + [r for r in batch.rows if r.get("model") == champion.address]
        tracker = PersistenceTracker(spec.drift.persistence, state["streaks"])
        size = spec.drift.window_rows
        recent: list[dict[str, Any]] = state.get("recent", [])
        alarm_verdict: WindowVerdict | None = None
        alarm_at = ""
        while len(rows) >= size:
            window, rows = rows[:size], rows[size:]
            columns = {n: np.array([r[n] if r[n] is not None else np.nan for r in window], dtype=object) for n in names}
            for name in numeric:
                columns[name] = columns[name].astype(np.float64)
            columns[PREDICTION] = np.array([r["prediction"] for r in window], dtype=np.float64)
            verdict = tracker.update(score_window(profile, columns, spec.drift.threshold_sigma, spec.drift.min_effect))
            entry = {"at": now(), "model": champion.address, "rows": size, "verdict": verdict.verdict,
                     "max_sigma": round(verdict.max_sigma, 3),
                     "sigmas": {s.column: s.corrected_sigma for s in verdict.scores}, "alarmed": verdict.alarmed}  # fmt: skip
            report.windows.append(entry)
            state["history"].append(entry)
            recent = (recent + window)[-size * max(spec.drift.persistence + 8, 10) :]
            if verdict.verdict == "alarm":
                alarm_verdict, alarm_at = verdict, entry["at"]
                break
        if len(rows) and not report.windows and len(rows) < size:
            report.reason = f"{len(rows)} rows captured, below drift.window_rows={size}: no verdict yet"
        if alarm_verdict is not None:  # traffic after the alarm window is fresh evidence too
            recent = (recent + rows)[-size * max(spec.drift.persistence + 8, 10) :]
        state["pending"], state["streaks"], state["recent"] = rows, tracker.streaks, recent
        report.pending_rows = len(rows)
        report.timings_s["detect"] = time.monotonic() - clock
        self._check_skew(report, spec, champion, [lookup for model, lookup in batch.lookups if model == champion.address])
        self._save_state(state)
        reopened = alarm_verdict is None and state.get("open_alarm") is not None
        if alarm_verdict is None and not reopened:
            return report

        if reopened:  # an earlier alarm waits for labels: late ones count on this pass
            report.alarm = state["open_alarm"]
        else:
            report.alarm = {"at": alarm_at, "columns": alarm_verdict.alarmed, "scores": [s.__dict__ for s in alarm_verdict.scores[:8]]}
            self.registry.add_event(champion.address, "drift_alarm", {"endpoint": self.endpoint, **report.alarm})
        if not spec.drift.retrain or detect_only:
            why = "drift.retrain is false" if not spec.drift.retrain else "--detect-only"
            report.decision, report.reason = "retrain_disabled", f"{why}: alarm recorded, nothing retrained here"
            return report
        deadline = time.monotonic() + labels_wait_s
        while True:
            labels, _ = read_labels(self.home / "labels" / champion.name)
            labelled = [r for r in recent if str(r.get("request_id")) in labels]
            if len(labelled) >= 2 * MIN_EVAL_ROWS or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        self._retrain_and_decide(report, spec, champion, labelled, labels, record_wait=not reopened)
        report.timings_s["total"] = time.monotonic() - clock
        # the next pass starts from the new champion's own reference
        state = self._load_state(report.retrain["challenger"] if report.decision == "promoted" and report.retrain else champion.address)
        if report.decision == "cannot_evaluate":  # kept open: labels that arrive later decide it
            state["open_alarm"] = report.alarm
        else:
            state.pop("open_alarm", None)
        self._save_state(state)
        return report

    def _check_skew(self, report: MonitorReport, spec: PipelineSpec, champion: ModelVersion, lookups: list[dict[str, Any]]) -> None:
        """Train/serve skew of the champion's online features on this pass's captured lookups: the
        same check as `fabric features skew`, its report kept beside theirs, an alarm recorded on
        the version like drift evidence (retraining cannot fix a serving bug: no retrain here)."""
        if spec.features is None or not lookups or not (champion.path / "features.json").is_file():
            return
        from fabric.features.definitions import FeatureSet
        from fabric.features.skew import skew_check
        from fabric.features.store import FeatureStore, features_home

        clock = time.monotonic()
        feature_set = FeatureSet.from_dict(json.loads((champion.path / "features.json").read_text()))
        store = FeatureStore(features_home(self.home))
        settings = spec.features.skew
        try:  # the drift check must go on when the offline side cannot be read here
            tables = [store.offline_table(t, spec.data)[0] for t in feature_set.tables]
            result = skew_check(feature_set, tables, lookups, sample=settings.sample, tolerance=settings.tolerance,
                                max_mismatch_rate=settings.max_mismatch_rate)  # fmt: skip
        except FabricError as exc:
            report.skew = {"error": f"skew check skipped: {exc}", "records": len(lookups)}
            return
        folder = store.root / "skew"
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{spec.name}-monitor-{now().replace(':', '')}.json"
        out.write_text(json.dumps({"spec": spec.name, "model": champion.address, "capture": str(self.endpoints.capture_dir(self.endpoint)),
                                   **result.to_dict()}, indent=2))  # fmt: skip
        report.skew = {**result.to_dict(), "report": str(out)}
        report.timings_s["skew"] = time.monotonic() - clock
        if result.alarm:
            evidence = {k: report.skew[k] for k in ("checked", "mismatched", "mismatch_rate", "max_mismatch_rate", "per_feature", "examples", "report")}
            self.registry.add_event(champion.address, "feature_skew_alarm", {"endpoint": self.endpoint, **evidence})

    def _retrain_and_decide(
        self, report: MonitorReport, spec: PipelineSpec, champion: ModelVersion, labelled: list[dict[str, Any]],
        labels: dict[str, Any], record_wait: bool = True,
    ) -> None:  # fmt: skip
        """`record_wait`: record a `cannot_evaluate` decision (once per alarm, not on every pass that waits)."""
        from fabric.data.dataset import prepare
        from fabric.lifecycle import run_pipeline

        eval_rows = labelled[int(len(labelled) * TRAIN_SHARE) :]
        train_rows = labelled[: int(len(labelled) * TRAIN_SHARE)]
        target = spec.data.target
        eval_frame = _frame(eval_rows, labels, target)
        if len(eval_frame) < MIN_EVAL_ROWS or (spec.task == "binary" and eval_frame[target].nunique() < 2):
            report.decision = "cannot_evaluate"
            report.reason = (f"cannot evaluate: {len(labelled)} labelled recent rows ({len(eval_frame)} held out, "
                             f"need {MIN_EVAL_ROWS} with both classes); no retrain, no promotion. Add labels with `fabric labels add`")  # fmt: skip
            if record_wait:
                self.registry.add_event(champion.address, "drift_decision", {"decision": report.decision, "reason": report.reason})
            return
        clock = time.monotonic()
        reference, feature_set, feature_lineage = self._reference(spec)
        fresh = _frame(train_rows, labels, target)
        columns = [c for c in reference.columns if c in fresh.columns or c == target]
        for c in columns:  # a served column of nulls only (a feature's missing default) is still numeric
            if c in fresh.columns and reference[c].dtype.kind in "iuf":
                fresh[c] = pd.to_numeric(fresh[c], errors="coerce")
        combined = pd.concat([reference[columns], fresh[columns]], ignore_index=True)
        # fresh rows carry serving times, not the source's event times: split stratified instead
        retrain_spec = spec.model_copy(update={"data": spec.data.model_copy(update={"time_column": None, "id_column": None})})
        if feature_set is None:
            dataset = prepare(retrain_spec, combined)
        else:  # joined already: prepare the rows as plain columns, keep what the server looks up
            dataset = prepare(retrain_spec.model_copy(update={"features": None}), combined)
            dataset = dataclasses.replace(dataset, feature_set=feature_set, feature_lineage=feature_lineage)
        result = run_pipeline(retrain_spec, self.backend.settings.env, self.registry, self.home, dataset=dataset,
                              parent=champion.address, budget_s=spec.drift.retrain_budget_s or spec.search.budget_s,
                              alias="challenger")  # fmt: skip
        challenger = result.version
        report.timings_s["retrain"] = time.monotonic() - clock
        from fabric.cost import record_run

        record_run(self.home, self.backend.settings, retrain_spec, result, kind="retrain")
        report.retrain = {"challenger": challenger.address, "rows": len(combined), "fresh_rows": len(fresh),
                          "seconds": round(report.timings_s["retrain"], 2)}  # fmt: skip
        self.registry.add_event(challenger.address, "retrained_on_drift", {"parent": champion.address, **report.retrain})

        clock = time.monotonic()
        champion_metric = _score(champion, eval_frame, spec)
        challenger_metric = _score(challenger, eval_frame, spec)
        sign = 1 if spec.higher_is_better else -1
        gain = sign * (challenger_metric - champion_metric)
        p99 = challenger.latency.get("p99_ms", float("inf"))
        budget_ms, budget_key = self._latency_budget(spec)
        report.comparison = {"metric": spec.metric, "rows": len(eval_frame), "champion": round(champion_metric, 5),
                             "challenger": round(challenger_metric, 5), "gain": round(gain, 5),
                             "margin": spec.drift.promote_margin, "challenger_p99_ms": p99,
                             "latency_budget_ms": budget_ms, "latency_budget_from": budget_key}  # fmt: skip
        report.timings_s["evaluate"] = time.monotonic() - clock
        for address in (champion.address, challenger.address):
            self.registry.add_event(address, "champion_challenger", report.comparison)
        failed = []  # every rule the challenger fails, so the reason is complete
        if gain < spec.drift.promote_margin:
            failed.append(f"{spec.metric} gain {gain:+.5f} < drift.promote_margin={spec.drift.promote_margin}")
        if p99 > budget_ms:
            failed.append(f"p99 {p99} ms > {budget_key}={budget_ms}")
        if failed:
            report.decision = "kept"
            report.reason = f"challenger {'; '.join(failed)}: champion {champion.address} kept"
        else:
            clock = time.monotonic()
            self.backend.deploy(challenger.address, "all_at_once", endpoint=self.endpoint)
            report.timings_s["promote"] = time.monotonic() - clock
            report.decision = "promoted"
            report.reason = f"challenger wins by {gain:+.5f} {spec.metric} (margin {spec.drift.promote_margin}) within {p99} ms"
        self.registry.add_event(challenger.address, "drift_decision", {"decision": report.decision, "reason": report.reason})


    def _reference(self, spec: PipelineSpec) -> tuple[pd.DataFrame, Any, dict[str, Any] | None]:
        """The most recent REFERENCE_ROWS rows of the spec's data, as the champion trained on them
        (for a spec with `features:`, each row joined to the feature tables as of its time; served
        rows already carry the features the server looked up), with the feature set and its lineage."""
        from fabric.data.sources import load_frame

        reference = load_frame(spec.data)
        feature_set, feature_lineage = None, None
        if spec.features is not None:
            from fabric.features.store import FeatureStore, build_training_set, features_home

            training, feature_set = build_training_set(spec, reference, FeatureStore(features_home(self.home)))
            reference = training.frame.drop(columns=[spec.features.entity])
            feature_lineage = {**training.lineage, "fresh_rows": "served rows with the features looked up online"}
        if spec.data.time_column:
            reference = reference.sort_values(spec.data.time_column)
        return reference.tail(REFERENCE_ROWS), feature_set, feature_lineage

    def evidently_report(self, path: Path) -> dict[str, Any]:
        """Evidently's data-drift report (the `evidently` extra) on a sample of the recent captured
        window against a sample of the champion's reference rows, its scores beside each."""
        from fabric.latency import predict
        from fabric.data.schema import FeatureSchema
        from fabric.monitor.evidently_report import SAMPLE_ROWS, write_evidently_report

        require("evidently")  # before loading any data: the install hint first
        champion = self._champion()
        state = self._load_state(champion.address)
        recent = state.get("recent", [])[-SAMPLE_ROWS:] or state.get("pending", [])[-SAMPLE_ROWS:]
        if not recent:
            raise FabricError(f"endpoint {self.endpoint}: no captured window of {champion.address} yet; "
                              "send traffic and run `fabric monitor` first")  # fmt: skip
        spec = PipelineSpec.model_validate(json.loads((champion.path / "spec.json").read_text()))
        schema = FeatureSchema.from_dict(json.loads((champion.path / "schema.json").read_text()))
        reference = self._reference(spec)[0].tail(SAMPLE_ROWS).reset_index(drop=True)
        reference[PREDICTION] = predict((champion.path / "model.onnx").read_bytes(), schema.encode(reference))
        current = pd.DataFrame([{n: r.get(n) for n in [*schema.names, PREDICTION]} for r in recent])
        numeric = [f.name for f in schema.features if f.kind == "numeric"] + [PREDICTION]
        categorical = [f.name for f in schema.features if f.kind != "numeric"]
        for frame in (reference, current):
            frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
            frame[categorical] = frame[categorical].astype("string")
        result = write_evidently_report(path, reference, current, numeric, categorical)
        return {"report": str(path), "model": champion.address, "reference_rows": len(reference), "current_rows": len(current),
                "drifted": result.drifted, "drifted_share": round(result.share, 4), "dataset_drift": result.dataset_drift}  # fmt: skip

    def _latency_budget(self, spec: PipelineSpec) -> tuple[float, str]:
        """The tighter of the spec's budget and the stack's for this endpoint (a pinned version over
        the endpoint's latencyBudgetMs fails the policy check), and the key that set it."""
        budget = (spec.latency_budget.p99_ms, "latency_budget.p99_ms")
        endpoint = self.backend.settings.endpoints.get(self.endpoint)
        if endpoint is not None and endpoint.latency_budget_ms < budget[0]:
            budget = (endpoint.latency_budget_ms, f"fabric:endpoints.{self.endpoint}.latencyBudgetMs")
        return budget


def _frame(rows: list[dict[str, Any]], labels: dict[str, Any], target: str) -> pd.DataFrame:
    frame = pd.DataFrame([{k: v for k, v in r.items() if k not in ("prediction", "model", "ts", "request_id")} for r in rows])
    frame[target] = [labels[str(r["request_id"])] for r in rows]
    return frame


def _score(version: ModelVersion, frame: pd.DataFrame, spec: PipelineSpec) -> float:
    from fabric.data.schema import FeatureSchema
    from fabric.families.trees import validation_metric
    from fabric.latency import predict

    schema = FeatureSchema.from_dict(json.loads((version.path / "schema.json").read_text()))
    scores = predict((version.path / "model.onnx").read_bytes(), schema.encode(frame))
    y = frame[spec.data.target].to_numpy(dtype=np.float64)
    return float(validation_metric(spec.metric, y, scores))
