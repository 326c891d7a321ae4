"""Drift detection (calibration, power, persistence) and the monitor loop against a live endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from fabric.data.schema import Feature, FeatureSchema
from fabric.monitor.detect import PersistenceTracker, holm, score_window, sigma_of
from fabric.monitor.profile import PREDICTION, build_profile
from fabric.monitor.traffic import read_capture
from tests.conftest import fabric_cli, write_spec

LEVELS = ["a", "b", "c", "d"]


def _draw(rng: np.random.Generator, n: int, shift: str = "") -> dict[str, np.ndarray]:
    columns = {f"x{j}": rng.normal(0, 1, n) for j in range(20)}
    columns["c0"] = rng.choice(LEVELS, n, p=[0.4, 0.3, 0.2, 0.1] if shift != "category" else [0.2, 0.3, 0.2, 0.3])
    columns[PREDICTION] = rng.normal(0.5 if shift == "prediction" else 0.0, 1, n)
    if shift == "mean":
        columns["x3"] = columns["x3"] + 0.4
    if shift == "variance":
        columns["x3"] = columns["x3"] * 1.6
    return columns


@pytest.fixture(scope="module")
def profile():  # noqa: ANN201
    rng = np.random.default_rng(1)
    schema = FeatureSchema(tuple([Feature(f"x{j}", "numeric") for j in range(20)] + [Feature("c0", "categorical", tuple(LEVELS))]),
                           task="binary", target="y")  # fmt: skip
    ref = _draw(rng, 20_000)
    return build_profile(schema, pd.DataFrame({k: v for k, v in ref.items() if k != PREDICTION}), ref[PREDICTION])


def test_sigma_and_holm_are_the_textbook_ones() -> None:
    assert sigma_of(0.5) == pytest.approx(0.0) and sigma_of(0.0107) == pytest.approx(2.3, abs=0.01)
    assert holm(np.array([0.01, 0.04, 0.03])).tolist() == pytest.approx([0.03, 0.06, 0.06])


def test_no_drift_windows_rarely_flag_where_uncorrected_tests_would(profile) -> None:  # noqa: ANN001
    rng = np.random.default_rng(2)
    flagged = uncorrected = 0
    for _ in range(150):
        verdict = score_window(profile, _draw(rng, 1000), threshold_sigma=2.3, min_effect=0.0)
        flagged += bool(verdict.flagged())
        uncorrected += any(s.sigma >= 2.3 for s in verdict.scores)
    # Holm keeps the family-wise rate near 1%; 22 raw tests at 1% each would flag ~20% of windows
    assert flagged <= 6, flagged
    assert uncorrected >= 15, uncorrected


@pytest.mark.parametrize("shift", ["mean", "variance", "category", "prediction"])
def test_each_kind_of_shift_alarms_after_persistence_windows(profile, shift: str) -> None:  # noqa: ANN001
    rng = np.random.default_rng(3)
    tracker = PersistenceTracker(persistence=2)
    first = tracker.update(score_window(profile, _draw(rng, 1000, shift), 2.3, 0.1))
    second = tracker.update(score_window(profile, _draw(rng, 1000, shift), 2.3, 0.1))
    column = {"mean": "x3", "variance": "x3", "category": "c0", "prediction": PREDICTION}[shift]
    assert first.verdict == "flagged" and column in first.flagged()
    assert second.verdict == "alarm" and second.alarmed == [column]


def test_a_single_flagged_window_is_not_an_alarm_and_small_windows_get_no_verdict(profile) -> None:  # noqa: ANN001
    rng = np.random.default_rng(4)
    tracker = PersistenceTracker(persistence=2)
    assert tracker.update(score_window(profile, _draw(rng, 1000, "mean"), 2.3, 0.1)).verdict == "flagged"
    assert tracker.update(score_window(profile, _draw(rng, 1000), 2.3, 0.1)).verdict == "no_drift"
    assert tracker.update(score_window(profile, _draw(rng, 1000, "mean"), 2.3, 0.1)).verdict == "flagged"
    small = score_window(profile, _draw(rng, 50), 2.3, 0.1)
    assert small.verdict == "no_verdict" and "below the minimum" in small.message


def test_a_large_harmless_shift_is_significant_but_below_min_effect(profile) -> None:  # noqa: ANN001
    rng = np.random.default_rng(5)
    columns = _draw(rng, 100_000)
    columns["x5"] = columns["x5"] + 0.08  # very significant at 100k rows, too small to matter
    verdict = score_window(profile, columns, 2.3, 0.1)
    x5 = next(s for s in verdict.scores if s.column == "x5")
    assert x5.corrected_sigma >= 2.3 and not x5.flagged


def test_scores_equal_scipys_ks_numpys_histogram_and_string_counts_on_a_fixed_window(profile) -> None:  # noqa: ANN001
    """The fast path (window sorted once, KS from the reference's points, p-values in one call,
    hashed category counts) gives the very numbers of the textbook calls it replaced."""
    from scipy import stats

    from fabric.monitor.detect import _psi, _value_counts

    rng = np.random.default_rng(11)
    columns = _draw(rng, 3000, "mean")
    columns["x1"] = np.round(columns["x1"], 1)  # ties inside the window and with the reference
    columns["x2"][:40] = np.nan
    columns["x4"] = np.full(3000, 0.25)  # constant
    levels = columns["c0"].astype(object)
    levels[:5], levels[5:9] = None, 3  # missing and non-string values take the exact path
    columns["c0"] = levels
    verdict = score_window(profile, columns, 2.3, 0.1)
    scores = {s.column: s for s in verdict.scores}
    assert len(scores) == 22
    for column, ref in profile.numeric.items():
        values = columns[column][np.isfinite(columns[column])]
        ks = stats.ks_2samp(ref.sample, values, method="asymp")
        effect = max(abs(values.mean() - ref.mean) / ref.std, abs(np.log(max(values.std(), 1e-12) / ref.std)), ks.statistic)
        psi = _psi(ref.bin_shares, np.histogram(values, bins=ref.edges)[0] / len(values))
        got = scores[column]
        assert (got.p_value, got.effect, got.psi) == (float(ks.pvalue), round(float(effect), 5), round(psi, 5)), column
    ref = profile.categorical["c0"]
    counts = np.zeros(len(ref.categories) + 1)
    for value, n in zip(*np.unique(levels.astype(str), return_counts=True), strict=True):
        counts[ref.categories.index(value) if value in ref.categories else -1] += n
    expected = np.append(ref.shares * (1 - ref.unseen_share), ref.unseen_share)
    assert scores["c0"].effect == round(0.5 * float(np.abs(counts / counts.sum() - expected).sum()), 5)
    strings = levels[10:].astype(str).astype(object)  # all strings: counted by hashing
    hashed = sorted((v, int(n)) for v, n in _value_counts(strings))
    assert hashed == [(v, int(n)) for v, n in zip(*np.unique(strings.astype(str), return_counts=True), strict=True)]


def test_corrupt_and_incomplete_capture_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    good = {"ts": "t", "request_id": "r1", "model": "m:1", "slot": "champion", "features": {"a": 1, "b": "x"}, "prediction": 0.2}
    lines = [json.dumps(good), "{broken", json.dumps({**good, "features": {"a": 1}}), json.dumps({**good, "slot": "shadow"}),
             json.dumps({**good, "prediction": "n/a"}), json.dumps({**good, "features": {"a": "abc", "b": "x"}}),
             json.dumps({**good, "features": {"a": {"nested": 1}, "b": "x"}})]  # fmt: skip
    (tmp_path / "20261124T10.jsonl").write_text("\n".join(lines) + "\n")
    batch = read_capture(tmp_path, ["a", "b"], numeric=frozenset({"a"}))
    assert len(batch.rows) == 1 and (batch.corrupt, batch.missing_columns, batch.other_slots) == (4, 1, 1)
    assert read_capture(tmp_path, ["a", "b"], batch.position).rows == []  # consumed once


def test_demo_drift_episode_alarms_retrains_and_promotes(tmp_path: Path, home: Path) -> None:
    spec = write_spec(
        tmp_path,
        data={"rows": 20_000},
        search={"budget_s": 12, "families": ["lightgbm"]},
        drift={"window_rows": 1000, "retrain_budget_s": 15, "persistence": 2},
    )
    done = fabric_cli("demo", "--stack", "dev", "--spec", str(spec), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    monitor = result["monitor"]
    assert monitor["alarm"] and monitor["decision"] == "promoted", monitor["reason"]
    assert monitor["comparison"]["challenger"] > monitor["comparison"]["champion"]
    assert result["serving"]["model"] == monitor["retrain"]["challenger"] == "fraud:2"
    assert result["timings_s"]["first_drifted_window_to_serving"] < 120
    assert Path(result["drift_report"]).read_text().count("<img") == 1
    chain = json.loads(fabric_cli("models", "lineage", "fraud:2", "--stack", "dev", "--json").stdout)
    assert [v["address"] for v in chain] == ["fraud:2", "fraud:1"]
    kinds = {e["kind"] for e in chain[0]["events"]}
    assert {"retrained_on_drift", "champion_challenger", "drift_decision", "deployed"} <= kinds, kinds
    assert "drift_alarm" in {e["kind"] for e in chain[1]["events"]}


def test_no_labels_means_cannot_evaluate_and_no_promotion(tmp_path: Path, home: Path) -> None:
    from fabric.backends import backend_for
    from fabric.data.synthetic import generate_fraud
    from fabric.demo import send_traffic
    from fabric.monitor.loop import DriftLoop
    from fabric.spec import load_pipeline, load_stack

    spec = load_pipeline(write_spec(tmp_path, search={"budget_s": None, "trials": 2, "families": ["lightgbm"]},
                                    drift={"window_rows": 500, "persistence": 1}))  # fmt: skip
    backend = backend_for(load_stack("dev"))
    version = backend.run(spec).version
    deployed = backend.deploy(version.address, "all_at_once")
    try:
        features = [f["name"] for f in json.loads((version.path / "schema.json").read_text())["features"]]
        send_traffic(deployed.url, generate_fraud(rows=1200, seed=9, drift=1.5), features, "unlabelled")
        report = DriftLoop(backend, "fraud").run_once()
        assert report.alarm is not None
        assert report.decision == "cannot_evaluate" and "cannot evaluate" in report.reason
        assert backend.registry.get("fraud@champion").address == version.address
        assert [v.address for v in backend.registry.list("fraud")] == [version.address]  # nothing retrained
    finally:
        backend._deployer().endpoints.stop("fraud")


def _deployed_champion(tmp_path: Path, **drift: object):  # noqa: ANN202 - (backend, version, deployed)
    from fabric.backends import backend_for
    from fabric.spec import load_pipeline, load_stack

    # a trial count, not seconds: the same search however busy the machine is
    spec = load_pipeline(write_spec(tmp_path, search={"budget_s": None, "trials": 2, "families": ["lightgbm"]},
                                    drift={"window_rows": 800, "persistence": 1, **drift}))  # fmt: skip
    backend = backend_for(load_stack("dev"))
    version = backend.run(spec).version
    return backend, version, backend.deploy(version.address, "all_at_once")


def _events(address: str) -> list[dict]:
    """The version's recorded lineage events, as `fabric models lineage` shows them."""
    return json.loads(fabric_cli("models", "lineage", address, "--stack", "dev", "--json").stdout)[0]["events"]


def test_late_labels_decide_the_open_alarm_on_the_next_pass_and_a_small_gain_keeps_the_champion(tmp_path: Path, home: Path) -> None:
    from fabric.data.synthetic import generate_fraud
    from fabric.demo import send_traffic
    from fabric.monitor.loop import DriftLoop

    # no challenger can gain a whole point of ROC AUC: whatever it scores, the champion is kept
    backend, version, deployed = _deployed_champion(tmp_path, promote_margin=1.0)
    try:
        features = [f["name"] for f in json.loads((version.path / "schema.json").read_text())["features"]]
        labels = send_traffic(deployed.url, generate_fraud(rows=800, seed=9, drift=1.5), features, "late")  # one window
        first = DriftLoop(backend, "fraud").run_once()
        assert first.alarm is not None and first.decision == "cannot_evaluate", first.reason

        # the ground truth arrives after the first pass, through the CLI, joined by request id
        pd.DataFrame(labels, columns=["request_id", "label"]).to_csv(tmp_path / "labels.csv", index=False)
        added = fabric_cli("labels", "add", str(tmp_path / "labels.csv"), "--model", "fraud", "--stack", "dev")
        assert added.returncode == 0 and added.stdout == "added 800 labels for fraud in stack dev\n", added.stderr
        second = DriftLoop(backend, "fraud").run_once()
        assert second.windows == [] and second.alarm["at"] == first.alarm["at"]  # no new traffic: the open alarm
        assert second.comparison is not None and second.comparison["rows"] == 320  # 40% of 800 labelled rows
        assert second.decision == "kept" and "< drift.promote_margin=1.0" in second.reason, second.reason
        assert "latencyBudgetMs" not in second.reason and "p99" not in second.reason

        challenger = second.retrain["challenger"]
        decisions = [e for e in _events(challenger) if e["kind"] == "drift_decision"]
        assert [(e["decision"], e["reason"]) for e in decisions] == [("kept", second.reason)]
        waited = [e["decision"] for e in _events(version.address) if e["kind"] == "drift_decision"]
        assert waited == ["cannot_evaluate"]  # recorded once, when the alarm could not be decided
        assert backend.registry.get("fraud@champion").address == version.address
        assert httpx.get(f"{deployed.url}/ping").json()["model"] == version.address  # still serving
        third = DriftLoop(backend, "fraud").run_once()
        assert third.alarm is None and third.decision == "none"  # decided: the alarm is closed
    finally:
        backend._deployer().endpoints.stop("fraud")


def test_a_challenger_over_the_endpoint_latency_budget_is_kept_out(tmp_path: Path, home: Path) -> None:
    from fabric.backends import backend_for
    from fabric.data.synthetic import generate_fraud
    from fabric.demo import send_traffic
    from fabric.monitor.loop import DriftLoop
    from fabric.monitor.traffic import append_labels

    backend, version, deployed = _deployed_champion(tmp_path, promote_margin=0.0)
    try:
        features = [f["name"] for f in json.loads((version.path / "schema.json").read_text())["features"]]
        append_labels(home / "dev" / "labels" / "fraud",
                      send_traffic(deployed.url, generate_fraud(rows=800, seed=9, drift=1.5), features, "slow"))  # fmt: skip
        # the platform team tightened the endpoint's budget in the stack below any model's p99
        settings = backend.settings
        tight = settings.endpoints["fraud"].model_copy(update={"latency_budget_ms": 1e-6})
        strict = backend_for(settings.model_copy(update={"endpoints": {**settings.endpoints, "fraud": tight}}))
        report = DriftLoop(strict, "fraud").run_once()
        assert report.decision == "kept", report.reason
        assert report.comparison["latency_budget_from"] == "fabric:endpoints.fraud.latencyBudgetMs"
        assert f"p99 {report.comparison['challenger_p99_ms']} ms > fabric:endpoints.fraud.latencyBudgetMs=1e-06" in report.reason
        decision = [(e["decision"], e["reason"]) for e in _events(report.retrain["challenger"]) if e["kind"] == "drift_decision"]
        assert decision == [("kept", report.reason)]
        assert backend.registry.get("fraud@champion").address == version.address
        assert httpx.get(f"{deployed.url}/ping").json()["model"] == version.address

        # Evidently's report on a sample of the same window (the evidently extra is in the lock)
        shown = fabric_cli("monitor", "--stack", "dev", "--evidently-report", "--json")
        assert shown.returncode == 0, shown.stderr[-2000:]
        evidently = json.loads(shown.stdout)[0]["evidently"]
        assert Path(evidently["report"]) == home / "dev" / "monitor" / "fraud-evidently.html"
        assert Path(evidently["report"]).read_text().startswith("<!DOCTYPE html>") or "<html" in Path(evidently["report"]).read_text()[:500]
        assert (evidently["model"], evidently["current_rows"], evidently["reference_rows"]) == (version.address, 800, 4000)
        assert "amount" in evidently["drifted"], evidently
    finally:
        backend._deployer().endpoints.stop("fraud")


def test_a_spec_with_feature_tables_retrains_on_drift_and_the_monitor_raises_feature_skew(tmp_path: Path, home: Path) -> None:
    from fabric.backends import backend_for
    from fabric.data.cards import generate_card_fraud
    from fabric.demo import send_traffic
    from fabric.features.definitions import FeatureSet
    from fabric.features.online import open_online_store
    from fabric.features.store import features_home
    from fabric.monitor.loop import DriftLoop
    from fabric.monitor.traffic import append_labels
    from fabric.spec import load_pipeline, load_stack
    from tests.conftest import ROOT

    path = write_spec(tmp_path, data={"source": "builtin:fraud-cards", "rows": 3000},
                      features={"entity": "card_id", "module": str(ROOT / "pipelines/fraud_features.py"), "on_unknown": "default"},
                      search={"budget_s": None, "trials": 2, "families": ["lightgbm"]},
                      drift={"window_rows": 800, "persistence": 1, "promote_margin": 1.0})  # fmt: skip
    materialized = fabric_cli("features", "materialize", str(path), "--stack", "dev")
    assert materialized.returncode == 0, materialized.stderr
    spec = load_pipeline(path)
    backend = backend_for(load_stack("dev"))
    version = backend.run(spec).version
    feature_set = FeatureSet.from_dict(json.loads((version.path / "features.json").read_text()))
    deployed = backend.deploy(version.address, "all_at_once")
    try:
        sent = ["card_id", *(f["name"] for f in json.loads((version.path / "schema.json").read_text())["features"]
                             if f["name"] not in feature_set.names)]  # fmt: skip
        drifted = generate_card_fraud(rows=800, seed=5, drift=1.5)
        append_labels(home / "dev" / "labels" / "fraud", send_traffic(deployed.url, drifted, sent, "cards"))
        first = DriftLoop(backend, "fraud").run_once()
        # online and offline agree (same tables, same ttl/default rule): checked, no skew alarm
        assert first.skew is not None and (first.skew["checked"], first.skew["mismatched"], first.skew["alarm"]) == (800, 0, False)
        assert first.alarm is not None and first.retrain is not None, first.reason  # retrained through the feature tables
        challenger = backend.registry.get(first.retrain["challenger"])
        assert (challenger.path / "features.json").read_text() == (version.path / "features.json").read_text()  # serves by card id
        assert json.loads((challenger.path / "spec.json").read_text())["features"]["entity"] == "card_id"
        assert set(feature_set.names) <= {f["name"] for f in json.loads((challenger.path / "schema.json").read_text())["features"]}
        assert challenger.lineage.features["tables"] == version.lineage.features["tables"]
        assert first.decision == "kept"  # promote_margin 1.0

        # a streaming job writes card_activity values the offline tables never had: served != trained
        online = open_online_store(f"sqlite:///{features_home(home / 'dev') / 'online.db'}")
        table = next(t for t in feature_set.tables if t.name == "card_activity")
        cards = np.array(sorted(set(drifted["card_id"].astype(str))))
        stamped = np.full(len(cards), pd.Timestamp.now().value - 3_600_000_000_000)
        online.write(table, cards, stamped, np.full((len(cards), len(table.names)), 999.0), None)
        online.close()
        send_traffic(deployed.url, drifted.head(200), sent, "skewed")
        second = DriftLoop(backend, "fraud").run_once()
        assert (second.skew["checked"], second.skew["mismatched"], second.skew["alarm"]) == (200, 200, True)
        assert second.skew["per_feature"] == {n: (200 if n in table.names else 0) for n in feature_set.names}
        alarms = [e for e in _events(version.address) if e["kind"] == "feature_skew_alarm"]
        assert len(alarms) == 1 and alarms[0]["mismatched"] == 200 and Path(alarms[0]["report"]).is_file()
        shown = fabric_cli("monitor", "--stack", "dev")  # a third pass, nothing new: no skew check, no alarm
        assert shown.returncode == 0 and "SKEW" not in shown.stdout, shown.stderr
    finally:
        backend._deployer().endpoints.stop("fraud")


def test_evidently_report_without_the_package_is_one_line_naming_the_extra(tmp_path: Path, home: Path) -> None:
    import subprocess
    import sys

    code = ("import sys; sys.modules['evidently'] = None; sys.argv = ['fabric', 'monitor', '--endpoint', 'fraud', "
            "'--evidently-report']; from fabric.cli import main; main()")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr == ("error: evidently is not installed (import of evidently halted; None in sys.modules); "
                           "install it with: pip install 'mlfabric[evidently]'\n")  # fmt: skip
    assert not (home / "dev" / "monitor").exists()  # refused before any pass: nothing written
