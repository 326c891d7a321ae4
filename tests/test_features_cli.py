from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fabric.features.definitions import load_feature_set
from fabric.features.online import OnlineFeatures, open_online_store
from fabric.spec import load_pipeline
from tests.conftest import ROOT, fabric_cli, write_spec

AT = "2026-02-10T12:00:00Z"


def _user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for fragment in fragments:
        assert fragment in last, last


@pytest.fixture()
def spec(tmp_path: Path, home: Path) -> Path:
    shutil.copy(ROOT / "pipelines/fraud_features.py", tmp_path / "fraud_features.py")
    return write_spec(
        tmp_path,
        name="cards",
        data={"source": "builtin:fraud-cards", "rows": 3000},
        # two trials, however long a loaded CI machine takes to start the first one
        search={"budget_s": 60, "trials": 2},
        features={"entity": "card_id", "module": "fraud_features.py", "skew": {"max_mismatch_rate": 0.0}},
    )


def test_apply_materialize_get_and_their_exit_codes(spec: Path, home: Path) -> None:
    applied = fabric_cli("features", "apply", str(spec), "--json")
    assert applied.returncode == 0, applied.stderr
    assert [(a["table"], a["status"]) for a in json.loads(applied.stdout)] == [("card_activity", "created"), ("card_history", "created")]

    done = fabric_cli("features", "materialize", str(spec), "--end", AT, "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["online"] == f"sqlite:///{home / 'dev' / 'features' / 'online.db'}"
    assert [(t["table"], t["computed"], t["end"]) for t in payload["tables"]] == [
        ("card_activity", True, "2026-02-10T12:00:00Z"), ("card_history", True, "2026-02-10T12:00:00Z")
    ]  # fmt: skip
    assert payload["tables"][0]["offline_rows"] == 3000 and 0 < payload["tables"][0]["online_rows"] <= 120

    found = fabric_cli("features", "get", str(spec), "card-001", "--at", AT, "--json")
    assert found.returncode == 0, found.stderr
    row = json.loads(found.stdout)["rows"][0]
    assert row["known"] and set(row["values"]) == {"spend_24h", "txn_count_24h", "txn_count_7d", "txn_count_30d", "avg_amount_30d"}
    unknown = fabric_cli("features", "get", str(spec), "card-001", "no-such-card", "--at", AT)
    assert unknown.returncode == 1  # 404-style: the spec's policy is reject
    assert "card_id=no-such-card  unknown: rejected (404)" in unknown.stdout

    # the module changes a ttl but keeps version 1: refused, and nothing is recorded
    module = spec.parent / "fraud_features.py"
    module.write_text(module.read_text().replace('ttl="7d"', 'ttl="8d"'))
    _user_error(
        fabric_cli("features", "materialize", str(spec)),
        "feature table card_activity version 1 changed since it was applied", "(ttl differ;", "set version: 2",
    )  # fmt: skip
    _user_error(fabric_cli("features", "get", str(spec), "card-001", "--at", "last tuesday"), "--at='last tuesday' is not a time")
    (spec.parent / "plain").mkdir()
    plain = write_spec(spec.parent / "plain")
    _user_error(fabric_cli("features", "apply", str(plain)), "has no `features:` section")


def test_skew_reports_and_alarms(spec: Path, home: Path, tmp_path: Path) -> None:
    assert fabric_cli("features", "materialize", str(spec), "--end", AT).returncode == 0
    features = load_feature_set(load_pipeline(spec))
    online = OnlineFeatures(open_online_store(f"sqlite:///{home / 'dev' / 'features' / 'online.db'}"), features)
    records = []
    for card in [f"card-{i:03d}" for i in range(40)]:
        detail = online.lookup_detail([card], AT)
        records.append({"feature_lookup": online.capture(card, detail.at, detail.rows[0])})
    capture = tmp_path / "capture.jsonl"
    capture.write_text("".join(json.dumps(r) + "\n" for r in records))
    clean = fabric_cli("features", "skew", str(spec), "--capture", str(capture), "--json")
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert (report["checked"], report["mismatched"], report["alarm"]) == (40, 0, False)
    assert Path(report["report"]).is_file() and Path(report["report"]).parent == home / "dev" / "features" / "skew"

    known = next(r for r in records if r["feature_lookup"]["values"]["txn_count_7d"])
    known["feature_lookup"]["values"]["txn_count_7d"] += 1  # the server served something else
    capture.write_text("".join(json.dumps(r) + "\n" for r in records))
    alarm = fabric_cli("features", "skew", str(spec), "--capture", str(capture))
    assert alarm.returncode == 1
    assert alarm.stdout.startswith("ALARM: 1 of 40 served requests differ from the offline store")
    assert "txn_count_7d             1 mismatched" in alarm.stdout
    _user_error(fabric_cli("features", "skew", str(spec), "--capture", str(tmp_path / "nope.jsonl")), "nope.jsonl: no such file")


def test_run_trains_on_the_point_in_time_training_set_and_ships_the_lookup_contract(spec: Path, home: Path) -> None:
    result = fabric_cli("run", str(spec), "--json")
    assert result.returncode == 0, result.stderr
    artifacts = Path(json.loads(result.stdout)["artifacts"])
    shown = json.loads(fabric_cli("models", "show", "cards:1", "--json").stdout)
    lineage = shown["lineage"]["features"]
    assert lineage["training_set_fingerprint"] == shown["lineage"]["dataset_fingerprint"]
    assert set(lineage["tables"]) == {"card_activity", "card_history"} and lineage["rows"] == 3000
    schema = json.loads((artifacts / "schema.json").read_text())
    names = [f["name"] for f in schema["features"]]
    assert "card_id" not in names and {"spend_24h", "avg_amount_30d"} <= set(names)
    # the server's side: the model's features.json and the stack's online store
    assert fabric_cli("features", "materialize", str(spec), "--end", AT).returncode == 0
    online = OnlineFeatures.from_model(artifacts, open_online_store(f"sqlite:///{home / 'dev' / 'features' / 'online.db'}"))
    rows, missing = online.lookup(["card-001"], AT)
    assert missing == [] and rows.shape == (1, 5) and not np.isnan(rows[0, :4]).any()


def test_the_model_server_completes_entity_ids_from_the_online_store(spec: Path, home: Path) -> None:
    import httpx

    from fabric.backends import backend_for
    from fabric.spec import load_stack

    assert fabric_cli("run", str(spec)).returncode == 0
    assert fabric_cli("features", "materialize", str(spec)).returncode == 0
    backend = backend_for(load_stack("dev"))
    version = backend.registry.get("cards:1")
    schema = json.loads((version.path / "schema.json").read_text())
    table_features = {"spend_24h", "txn_count_24h", "txn_count_7d", "txn_count_30d", "avg_amount_30d"}
    request = {f["name"]: (f["categories"][0] if f["kind"] == "categorical" else 10.0)
               for f in schema["features"] if f["name"] not in table_features}  # fmt: skip
    deployed = backend.deploy("cards:1", "all_at_once")
    try:
        known = httpx.post(f"{deployed.url}/invocations", json={"records": [{**request, "entity_id": "card-001"}]})
        assert known.status_code == 200, known.text
        assert 0.0 <= known.json()["predictions"][0] <= 1.0
        unknown = httpx.post(f"{deployed.url}/invocations", json={"records": [{**request, "entity_id": "no-such-card"}]})
        assert unknown.status_code == 404 and "no-such-card" in unknown.json()["error"]
        without = httpx.post(f"{deployed.url}/invocations", json={"records": [request]})  # table features not supplied
        assert without.status_code == 422 and "misses feature" in without.json()["error"]
        httpx.post(f"{deployed.url}/admin/flush")
        lines = [json.loads(x) for f in backend._deployer().endpoints.capture_dir("cards").glob("*.jsonl")
                 for x in f.read_text().splitlines()]  # fmt: skip
        assert lines and "feature_lookup" in lines[0]
    finally:
        backend._deployer().endpoints.stop("cards")
