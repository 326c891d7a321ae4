"""The model server and local deployments, against real server processes on loopback ports."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest

from fabric.backends.local_deploy import LocalDeployer
from fabric.registry import ModelVersion, Registry
from fabric.serving.endpoints import Endpoints
from fabric.serving.model import LoadedModel
from fabric.spec import RolloutSpec, StackSettings, load_pipeline, load_stack
from tests.conftest import ROOT, fabric_cli, write_spec


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, ModelVersion, ModelVersion]]:
    """One tiny trained model registered twice (fraud:1 and fraud:2) in a module-wide FABRIC_HOME."""
    from fabric.lifecycle import run_pipeline

    folder = tmp_path_factory.mktemp("serving")
    home = folder / "home"
    spec = load_pipeline(write_spec(folder, search={"budget_s": None, "trials": 2, "families": ["lightgbm"]}, serving={"capture_rate": 1.0}))
    registry = Registry(home / "dev" / "registry")
    first = run_pipeline(spec, "dev", registry, home / "dev").version
    with registry.stage() as staged:
        for f in first.path.iterdir():
            shutil.copy(f, staged / f.name)
        second = registry.register("fraud", staged, replace(first.lineage, parent=first.address), first.metrics, first.latency)
    yield home, first, second


def _register_variant(registry: Registry, base: ModelVersion, onnx_bytes: bytes, serving: dict | None = None) -> ModelVersion:
    """A new version of `base` with another graph (and, optionally, another `serving:` policy in spec.json)."""
    with registry.stage() as staged:
        for f in base.path.iterdir():
            shutil.copy(f, staged / f.name)
        (staged / "model.onnx").write_bytes(onnx_bytes)
        if serving is not None:
            spec = json.loads((staged / "spec.json").read_text())
            (staged / "spec.json").write_text(json.dumps({**spec, "serving": {**spec.get("serving", {}), **serving}}))
        return registry.register(base.name, staged, replace(base.lineage, parent=base.address), base.metrics, base.latency, alias=None)


def _scaled_leaves(onnx_bytes: bytes, factor: float) -> bytes:
    """The same trees with every leaf value scaled: a challenger whose weights differ."""
    graph = onnx.load_from_string(onnx_bytes)
    (tree,) = [n for n in graph.graph.node if n.op_type.startswith("TreeEnsemble")]
    for attribute in tree.attribute:
        if attribute.name in ("class_weights", "target_weights"):
            attribute.floats[:] = [v * factor for v in attribute.floats]
    return graph.SerializeToString()


def _single_row_only(onnx_bytes: bytes) -> bytes:
    """A broken graph: a Reshape to one row in front of the model, so it loads (the server's load
    check scores one row) and fails with a runtime error on every request of two rows or more."""
    graph = onnx.load_from_string(onnx_bytes)
    width = graph.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    for node in graph.graph.node:
        node.input[:] = ["input_one_row" if name == "input" else name for name in node.input]
    graph.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, width], dtype=np.int64), "one_row"))
    graph.graph.node.insert(0, onnx.helper.make_node("Reshape", ["input", "one_row"], ["input_one_row"]))
    onnx.checker.check_model(graph)
    return graph.SerializeToString()


@pytest.fixture(scope="module")
def variants(trained: tuple[Path, ModelVersion, ModelVersion]) -> tuple[ModelVersion, ModelVersion]:
    """fraud:3, the same trees with leaf values halved and serving.capture_rate 0 in its spec;
    fraud:4, a graph that fails at run time on multi-row requests."""
    home, v1, _ = trained
    registry = Registry(home / "dev" / "registry")
    fp32 = (v1.path / "model.onnx").read_bytes()
    return (_register_variant(registry, v1, _scaled_leaves(fp32, 0.5), serving={"capture_rate": 0.0}),
            _register_variant(registry, v1, _single_row_only(fp32)))  # fmt: skip


@pytest.fixture()
def deployer(trained: tuple[Path, ModelVersion, ModelVersion], monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalDeployer]:
    home = trained[0]
    monkeypatch.setenv("FABRIC_HOME", str(home))
    endpoints = Endpoints(home / "dev", "dev")
    yield LocalDeployer(load_stack("dev"), Registry(home / "dev" / "registry"), endpoints)
    for name in endpoints.names():
        endpoints.stop(name)


def _record(version: ModelVersion) -> dict:
    schema = json.loads((version.path / "schema.json").read_text())
    record = {}
    for f in schema["features"]:
        record[f["name"]] = f["categories"][0] if f["kind"] == "categorical" else 1.5
    return record


def test_the_contract_ping_invocations_metrics_and_capture(deployer: LocalDeployer, trained) -> None:
    _, v1, _ = trained
    result = deployer.deploy(v1.address, "all_at_once")
    assert result.outcome == "live"
    url = result.url
    assert httpx.get(f"{url}/ping").json() == {"status": "healthy", "model": v1.address}
    record = _record(v1)
    one = httpx.post(f"{url}/invocations", json={"records": [record, record]}, headers={"X-Request-Id": "req-1"})
    assert one.status_code == 200 and one.headers["x-request-id"] == "req-1"
    body = one.json()
    assert body["model"] == v1.address and len(body["predictions"]) == 2 and 0 <= body["predictions"][0] <= 1
    rows = httpx.post(f"{url}/invocations", json={"rows": [list(record.values())]}).json()
    assert rows["predictions"] == body["predictions"][:1]
    csv_body = ",".join(record) + "\n" + ",".join(str(v) for v in record.values()) + "\n"
    as_csv = httpx.post(f"{url}/invocations", content=csv_body, headers={"content-type": "text/csv"}).json()
    assert as_csv["predictions"] == pytest.approx(body["predictions"][:1], abs=1e-6)

    metrics = httpx.get(f"{url}/metrics").text
    assert f'fabric_requests_total{{version="{v1.address}",slot="champion"}} 3' in metrics
    assert f'fabric_request_duration_ms_count{{version="{v1.address}",slot="champion"}} 3' in metrics
    deadline = time.monotonic() + 5
    capture = deployer.endpoints.capture_dir("fraud")
    lines: list[dict] = []
    while time.monotonic() < deadline and len(lines) < 4:  # the server flushes every second
        lines = [json.loads(x) for f in capture.glob("*.jsonl") for x in f.read_text().splitlines()]
        time.sleep(0.2)
    assert len(lines) == 4
    assert {x["request_id"] for x in lines[:2]} == {"req-1:0", "req-1:1"}
    assert lines[0]["features"] == record and lines[0]["model"] == v1.address and lines[0]["slot"] == "champion"
    stamp = datetime.fromisoformat(lines[0]["ts"])  # isoformat, UTC, milliseconds
    assert stamp.utcoffset() == timedelta(0) and len(lines[0]["ts"]) == len("2026-01-01T00:00:00.000+00:00")
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    generated = httpx.post(f"{url}/invocations", json={"records": [record]}).json()["request_id"]
    again = httpx.post(f"{url}/invocations", json={"records": [record]}).json()["request_id"]
    assert len(generated) == 32 and int(generated, 16) >= 0 and generated != again


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"a,b\n1,2\n", "text/plain", 415, "Content-Type text/plain is not supported"),
        (json.dumps({"records": []}).encode(), "application/json", 400, "no rows"),
        ("MISSING", "application/json", 422, "misses feature 'amount'"),
        ("EXTRA", "application/json", 422, "unknown feature 'colour'"),
        ("WRONG_TYPE", "application/json", 422, "records[0].amount='ten' must be a number"),
        ("NAN", "application/json", 422, "records[0].amount is not a finite number"),
        ("HUGE_INT", "application/json", 422, "records[0].amount is an integer beyond float32's range"),
        ("OVER_FLOAT32", "application/json", 422, "records[0].amount=1e+39 is beyond float32's range"),
        (b"[" * 50_000 + b"]" * 50_000, "application/json", 400, "nested too deeply"),
        ("NULL", "application/json", 422, "records[0].amount is null"),
        (b"x" * 2_000_000, "application/json", 413, "serving.max_body_bytes=1048576"),
        (json.dumps({"rows": [[1, 2]]}).encode(), "application/json", 400, "rows[0] has 2 values"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(deployer: LocalDeployer, trained, body, content_type, status, fragment) -> None:
    _, v1, _ = trained
    url = deployer.deploy(v1.address, "all_at_once").url
    record = _record(v1)
    cases = {
        "MISSING": {k: v for k, v in record.items() if k != "amount"},
        "EXTRA": {**record, "colour": "red"},
        "WRONG_TYPE": {**record, "amount": "ten"},
        "NAN": {**record, "amount": float("nan")},
        "HUGE_INT": {**record, "amount": 10**400},
        "OVER_FLOAT32": {**record, "amount": 1e39},
        "NULL": {**record, "amount": None},
    }
    if isinstance(body, str):
        body = json.dumps({"records": [cases[body]]}).encode()
    response = httpx.post(f"{url}/invocations", content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert httpx.get(f"{url}/ping").status_code == 200  # still alive


def _load(url: str, record: dict, stop: threading.Event, outcomes: list[int], versions: set[str], rows: int = 1) -> None:
    with httpx.Client() as client:
        while not stop.is_set():
            try:
                response = client.post(f"{url}/invocations", json={"records": [record] * rows}, timeout=10)
                outcomes.append(response.status_code)
                if response.status_code == 200:
                    versions.add(response.json()["model"])
            except httpx.HTTPError:
                outcomes.append(-1)


def test_hot_swaps_under_load_lose_no_request(deployer: LocalDeployer, trained) -> None:
    _, v1, v2 = trained
    url = deployer.deploy(v1.address, "all_at_once").url
    stop, outcomes, versions = threading.Event(), [], set()
    workers = [threading.Thread(target=_load, args=(url, _record(v1), stop, outcomes, versions)) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        for i in range(10):
            deployer.deploy((v2 if i % 2 == 0 else v1).address, "all_at_once")
            time.sleep(0.05)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert len(outcomes) > 100
    assert set(outcomes) == {200}, {code: outcomes.count(code) for code in set(outcomes)}
    assert versions == {v1.address, v2.address}


def test_canary_rolls_back_on_p99_and_promotes_within_limits(deployer: LocalDeployer, trained) -> None:
    _, v1, v2 = trained
    url = deployer.deploy(v1.address, "all_at_once").url
    stop, outcomes, versions = threading.Event(), [], set()
    worker = threading.Thread(target=_load, args=(url, _record(v1), stop, outcomes, versions))
    worker.start()
    try:
        strict = RolloutSpec(strategy="canary", steps=[20, 100], max_p99_ms=0.000001, step_requests=30)
        bad = deployer.deploy(v2.address, "canary", rollout=strict, step_timeout_s=30)
        assert bad.outcome == "rolled_back"
        assert "canary p99" in bad.reason and "rollout.max_p99_ms" in bad.reason
        assert httpx.get(f"{url}/admin/state").json()["slots"]["canary"] is None
        assert deployer.registry.get("fraud@champion").address == v1.address

        fine = RolloutSpec(strategy="canary", steps=[20, 50, 100], max_p99_ms=1000, step_requests=30)
        good = deployer.deploy(v2.address, "canary", rollout=fine, step_timeout_s=30)
        assert good.outcome == "live", good.reason
        assert [s["percent"] for s in good.steps] == [20, 50, 100]
        assert httpx.get(f"{url}/ping").json()["model"] == v2.address
        assert deployer.registry.get("fraud@champion").address == v2.address
    finally:
        stop.set()
        worker.join()
    assert set(outcomes) == {200}


def test_shadow_compares_and_blue_green_switches_back_on_rollback(deployer: LocalDeployer, trained) -> None:
    _, v1, v2 = trained
    url = deployer.deploy(v1.address, "all_at_once").url
    assert deployer.deploy(v2.address, "shadow").outcome == "shadowing"
    for _ in range(20):
        assert httpx.post(f"{url}/invocations", json={"records": [_record(v1)]}).json()["model"] == v1.address
    shadow = httpx.get(f"{url}/admin/state").json()["shadow"]
    assert shadow["compared_rows"] == 20 and shadow["max_abs_diff"] == 0.0  # same weights in both versions

    switched = deployer.deploy(v2.address, "blue_green")
    assert switched.outcome == "live" and httpx.get(f"{url}/ping").json()["model"] == v2.address
    back = deployer.rollback("fraud")
    assert back.version == v1.address and httpx.get(f"{url}/ping").json()["model"] == v1.address
    assert deployer.registry.get("fraud@champion").address == v1.address


def test_cli_deploy_status_rollback_and_errors(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    home, v1, v2 = trained
    env = {"FABRIC_HOME": str(home)}
    try:
        first = fabric_cli("deploy", v1.address, "--stack", "dev", "--strategy", "all_at_once", "--json", env=env)
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["outcome"] == "live"
        second = fabric_cli("deploy", v2.address, "--stack", "dev", "--strategy", "blue_green", env=env)
        assert second.returncode == 0 and f"fraud: {v2.address} live via blue_green" in second.stdout
        listed = json.loads(fabric_cli("endpoints", "list", "--stack", "dev", "--json", env=env).stdout)
        assert [(e["endpoint"], e["champion"], e["healthy"]) for e in listed] == [("fraud", v2.address, True)]
        status = fabric_cli("endpoints", "status", "fraud", "--stack", "dev", env=env)
        assert status.returncode == 0 and "healthy, champion " + v2.address in status.stdout
        back = fabric_cli("rollback", "fraud", "--stack", "dev", env=env)
        assert back.returncode == 0 and f"{v1.address} live again (was {v2.address})" in back.stdout
        missing = fabric_cli("deploy", "fraud:99", "--stack", "dev", env=env)
        assert missing.returncode == 2 and missing.stderr.startswith("error: ")
        unknown = fabric_cli("endpoints", "status", "nope", "--stack", "dev", env=env)
        assert unknown.returncode == 2 and "endpoint 'nope' does not exist" in unknown.stderr
    finally:
        fabric_cli("endpoints", "stop", "fraud", "--stack", "dev", env=env)


def test_canary_rolls_back_on_its_error_rate(deployer: LocalDeployer, trained, variants) -> None:
    _, v1, _ = trained
    broken = variants[1]
    url = deployer.deploy(v1.address, "all_at_once").url
    stop, outcomes, versions = threading.Event(), [], set()
    worker = threading.Thread(target=_load, args=(url, _record(v1), stop, outcomes, versions, 2))
    worker.start()
    try:
        # p99 is not what trips it: the limit is generous, the canary's 5xx answers are
        rollout = RolloutSpec(strategy="canary", steps=[20, 100], max_error_rate=0.01, max_p99_ms=1000, step_requests=30)
        result = deployer.deploy(broken.address, "canary", rollout=rollout, step_timeout_s=30)
    finally:
        stop.set()
        worker.join()
    assert result.outcome == "rolled_back", result
    assert result.reason.startswith("canary error rate 1.000 > rollout.max_error_rate=0.01"), result.reason
    assert [(s["percent"], s["ok"]) for s in result.steps] == [(20, False)]
    assert httpx.get(f"{url}/admin/state").json()["slots"]["canary"] is None
    assert deployer.registry.get("fraud@champion").address == v1.address
    assert "rolled_back" in [e["kind"] for e in deployer.registry.events(broken.name, broken.version)]
    assert versions == {v1.address} and set(outcomes) == {200, 500}  # only the canary's share failed
    after = [httpx.post(f"{url}/invocations", json={"records": [_record(v1)] * 2}) for _ in range(20)]
    assert {(r.status_code, r.json()["model"]) for r in after} == {(200, v1.address)}


def test_shadow_with_other_weights_records_diff_and_latency_and_answers_from_the_champion(
    deployer: LocalDeployer, trained, variants
) -> None:
    home, v1, _ = trained
    challenger = variants[0]
    url = deployer.deploy(v1.address, "all_at_once").url
    records = [_record(v1), {**_record(v1), "amount": 250.0}]
    alone = [httpx.post(f"{url}/invocations", json={"records": [r]}).json()["predictions"][0] for r in records]
    assert deployer.deploy(challenger.address, "shadow").outcome == "shadowing"
    for i in range(30):
        answer = httpx.post(f"{url}/invocations", json={"records": [records[i % 2]]}).json()
        assert answer["model"] == v1.address and answer["predictions"] == [alone[i % 2]]

    # the diff the server recorded is the one between the two models' own scores
    shadow_model = LoadedModel.load(challenger.path, challenger.address)
    X, _, _ = shadow_model.decode(json.dumps({"records": records}).encode(), "application/json")
    diffs = np.abs(np.array(alone) - shadow_model.predict(X))
    assert diffs.min() > 1e-3
    state = httpx.get(f"{url}/admin/state").json()
    assert state["shadow"]["compared_rows"] == 30
    assert state["shadow"]["max_abs_diff"] == pytest.approx(diffs.max(), abs=1e-6)
    assert state["shadow"]["mean_abs_diff"] == pytest.approx(diffs.mean(), abs=1e-6)
    series = state["series"][f"shadow/{challenger.address}"]
    assert series["requests"] == 30 and series["errors"] == 0 and series["p99_ms"] > 0
    assert state["series"][f"champion/{v1.address}"]["requests"] == 32

    status = fabric_cli("endpoints", "status", "fraud", "--stack", "dev", env={"FABRIC_HOME": str(home)})
    assert status.returncode == 0, status.stderr
    assert f"shadow: 30 rows compared, mean |diff| {diffs.mean():.5f}, max |diff| {diffs.max():.5f}" in status.stdout
    assert f"shadow/{challenger.address}" in status.stdout and f"slots: champion={v1.address}, shadow={challenger.address}" in status.stdout
    as_json = json.loads(fabric_cli("endpoints", "status", "fraud", "--stack", "dev", "--json", env={"FABRIC_HOME": str(home)}).stdout)
    assert as_json["server"]["shadow"]["compared_rows"] == 30
    assert as_json["server"]["series"][f"shadow/{challenger.address}"]["requests"] == 30


def _dev_settings(**fraud_endpoint: object) -> StackSettings:
    """The dev stack with the fraud endpoint's settings replaced (keys as written in the stack file)."""
    import yaml

    path = ROOT / "stacks" / "Pulumi.dev.yaml"
    config = yaml.safe_load(path.read_text())["config"]
    config["fabric:endpoints"] = {"fraud": fraud_endpoint}
    return StackSettings.from_config("dev", config, str(path))


@pytest.mark.parametrize(
    ("stack_rate", "served_rate", "captured"),
    [(None, 0.0, 0), (1.0, 1.0, 10)],
    ids=["unset-in-stack-spec-wins", "set-in-stack-stack-wins"],
)
def test_capture_rate_the_stack_sets_wins_else_the_specs(deployer: LocalDeployer, trained, variants, stack_rate, served_rate, captured) -> None:
    _, v1, _ = trained
    challenger = variants[0]  # its spec says serving.capture_rate: 0
    endpoint = {"instanceType": "c6i.large", "minInstances": 1, "maxInstances": 2, "latencyBudgetMs": 5}
    if stack_rate is not None:
        endpoint["dataCaptureRate"] = stack_rate
    local = LocalDeployer(_dev_settings(**endpoint), deployer.registry, deployer.endpoints)
    for name in deployer.endpoints.names():  # the rate is the server's start-up setting
        deployer.endpoints.stop(name)
    shutil.rmtree(deployer.endpoints.capture_dir("fraud"), ignore_errors=True)
    result = local.deploy(challenger.address, "all_at_once")
    for _ in range(10):
        assert httpx.post(f"{result.url}/invocations", json={"records": [_record(v1)]}).status_code == 200
    httpx.post(f"{result.url}/admin/flush", json={})
    state = httpx.get(f"{result.url}/admin/state").json()
    assert state["capture_rate"] == served_rate and state["captured"] == captured


def _asgi_invocations(server, bodies: list[bytes]) -> list[tuple[int, dict]]:
    """Send `bodies` to the ASGI app at once, as one event loop turn of concurrent connections would."""
    import asyncio

    async def one(body: bytes) -> tuple[int, dict]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/invocations", "method": "POST", "client": ("127.0.0.1", 1),
                 "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}  # fmt: skip
        await server(scope, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])

    async def all_at_once() -> list[tuple[int, dict]]:
        return await asyncio.gather(*(one(body) for body in bodies))

    return asyncio.run(all_at_once())


def _varied_record(version: ModelVersion, i: int) -> dict:
    """The i-th of a spread of records: every numeric feature scaled, categories taken in turn."""
    schema = json.loads((version.path / "schema.json").read_text())
    return {f["name"]: (f["categories"][i % len(f["categories"])] if f["kind"] == "categorical" else 0.5 + 37.0 * i * (1 + j % 3))
            for j, f in enumerate(schema["features"])}  # fmt: skip


def test_concurrent_requests_share_one_model_call_and_each_gets_its_own_rows(trained) -> None:
    from fabric.serving.app import ModelServer

    _, v1, _ = trained
    server = ModelServer()
    server.slots["champion"] = LoadedModel.load(v1.path, v1.address)
    rows = [_varied_record(v1, i) for i in range(10)]
    requests = [[row] for row in rows[:8]] + [rows[8:]]
    answers = _asgi_invocations(server, [json.dumps({"records": r}).encode() for r in requests])

    alone = LoadedModel.load(v1.path, v1.address)  # the same model scoring each request by itself
    expected = [alone.predict(alone.decode(json.dumps({"records": r}).encode(), "application/json")[0]) for r in requests]
    assert len({round(float(e[0]), 6) for e in expected}) >= 4  # rows that score differently: a mix-up would show
    assert [status for status, _ in answers] == [200] * len(requests)
    for (_, body), want in zip(answers, expected, strict=True):
        assert body["predictions"] == pytest.approx(want.tolist(), abs=1e-6)
    state = server.state()["batching"]["champion"]
    assert state == {"joint": True, "requests": len(requests), "model_calls": 1}
    metrics = server.metrics.render(server._model_calls())
    assert f'fabric_model_calls_total{{version="{v1.address}",slot="champion"}} 1' in metrics
    assert f'fabric_requests_total{{version="{v1.address}",slot="champion"}} {len(requests)}' in metrics


def test_a_graph_that_cannot_score_rows_together_gets_a_call_per_request(trained, variants) -> None:
    """fraud:4 fails on any call of two rows or more: its load probe finds that, so single-row
    requests keep working and only the two-row request answers 500."""
    from fabric.serving.app import ModelServer

    _, v1, _ = trained
    broken = variants[1]
    server = ModelServer()
    server.slots["champion"] = LoadedModel.load(broken.path, broken.address)
    single = json.dumps({"records": [_record(v1)]}).encode()
    double = json.dumps({"records": [_record(v1)] * 2}).encode()
    answers = _asgi_invocations(server, [single, single, double, single])
    assert [status for status, _ in answers] == [200, 200, 500, 200]
    assert "failed" in answers[2][1]["error"]
    assert answers[0][1]["predictions"] == answers[3][1]["predictions"]
    assert server.state()["series"][f"champion/{broken.address}"]["errors"] == 1
    assert server.state()["batching"]["champion"] == {"joint": False, "requests": 4, "model_calls": 4}


def test_a_failed_joint_call_is_scored_request_by_request() -> None:
    """A joint call that raises (here: a row of 13s, which the predict function refuses) is retried
    one request at a time: the request holding the bad row gets the error, the others their scores."""
    import asyncio

    from fabric.serving.batching import MicroBatcher

    def predict(X: np.ndarray) -> np.ndarray:
        if (X == 13).all(axis=1).any():
            raise ValueError("row of 13s")
        return X.sum(axis=1)

    batcher = MicroBatcher(predict)

    async def three_requests() -> list:
        inputs = [np.ones((1, 2), np.float32), np.full((1, 2), 13, np.float32), np.array([[2, 3], [4, 5]], np.float32)]
        return await asyncio.gather(*(batcher.score(X) for X in inputs), return_exceptions=True)

    good, bad, pair = asyncio.run(three_requests())
    assert good.tolist() == [2.0] and pair.tolist() == [5.0, 9.0]
    assert isinstance(bad, ValueError)
    assert (batcher.requests, batcher.calls) == (3, 3)  # the failed joint call is not counted


def _tiny_mlp(width: int = 6) -> bytes:
    """A two-layer float32 MLP graph [N, width] -> [N, 1]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
               for name, shape in (("w1", (width, 32)), ("w2", (32, 1)))]  # fmt: skip
    nodes = [helper.make_node("MatMul", ["input", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["logit"]), helper.make_node("Sigmoid", ["logit"], ["score"])]  # fmt: skip
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])], weights)  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_a_dynamically_quantized_graph_is_not_batched() -> None:
    """INT8 dynamic quantization picks one activation scale per call: batched, a row's score would
    depend on its neighbours. The probe keeps such a graph on one call per request."""
    from fabric.latency import session
    from fabric.quantize import quantize_int8
    from fabric.serving.batching import scores_rows_alone

    probe = np.random.default_rng(0).normal(0, 3, size=(8, 6)).astype(np.float32)
    fp32, int8 = session(_tiny_mlp()), session(quantize_int8(_tiny_mlp()))
    assert any(n.op_type == "DynamicQuantizeLinear" for n in onnx.load_from_string(quantize_int8(_tiny_mlp())).graph.node)

    def predictor(sess):  # noqa: ANN001, ANN202
        return lambda X: sess.run(None, {"input": X})[0].reshape(-1)

    together = predictor(int8)(probe)
    alone = np.concatenate([predictor(int8)(probe[i : i + 1]) for i in range(8)])
    assert np.abs(together - alone).max() > 1e-4  # what batching would do to its answers
    assert scores_rows_alone(predictor(fp32), probe) is True
    assert scores_rows_alone(predictor(int8), probe) is False
