"""Distributed search for real: worker processes (the Indexed Job's entrypoint) share one study in a
real PostgreSQL server; the train Job's entrypoint then refits the study's best trial, registers
it, and copies its artifacts to the registry's bucket (a real S3 API: moto in server mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric.spec import load_pipeline
from tests.conftest import ROOT, write_spec
from tests.postgres import postgres_server

WORKERS = 3
BUDGET_S = 60.0  # a ceiling: the run ends once the workers' share of TRIALS is done
TRIALS = 6  # ceil(6 / 3) = 2 each; a 10 s budget alone left a loaded 2-core machine with no complete trial


@pytest.fixture()
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
            monkeypatch.setenv(key, value)
        boto3.client("s3").create_bucket(Bucket="fabric-registry-test")
        yield "s3://fabric-registry-test/models"
    finally:
        server.stop()


def _start_worker(spec: Path, url: str, index: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "fabric.backends.kubernetes.worker", "--spec", str(spec),
               "--workers", str(WORKERS), "--storage", url]  # fmt: skip
    # the index comes from the variable the Indexed Job sets, as in the cluster
    env = {**os.environ, "JOB_COMPLETION_INDEX": str(index), "FABRIC_RUN_ID": "run-1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def test_workers_share_one_postgresql_study_and_the_train_job_refits_its_best(
    tmp_path: Path, home: Path, bucket: str
) -> None:
    import boto3
    import optuna

    from fabric.backends.kubernetes.train import train

    path = write_spec(tmp_path, data={"rows": 3000}, search={"budget_s": BUDGET_S, "trials": TRIALS, "families": ["lightgbm"]})
    spec = load_pipeline(path)
    with postgres_server() as url:
        workers = [_start_worker(path, url, i) for i in range(WORKERS)]
        outputs = [w.communicate(timeout=120) for w in workers]
        for worker, (_, stderr) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, stderr
        reports = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]
        study = optuna.load_study(study_name=reports[0]["study"], storage=url)
        numbers = [n for r in reports for n in r["trials"]]
        assert {r["study"] for r in reports} == {study.study_name}  # one study, named as `local` names it
        # shared: several workers contributed (on a loaded machine a late worker may find the deadline near)
        assert sum(bool(r["trials"]) for r in reports) >= 2, reports
        assert len(numbers) == len(set(numbers)) == len(study.trials)  # shared: no number twice, none lost
        assert len(numbers) <= TRIALS and all(len(r["trials"]) <= 2 for r in reports)  # the trials shared out
        deadlines = [r["deadline"] for r in reports]
        assert max(deadlines) - min(deadlines) < 1.0, deadlines  # one deadline for the run, kept in the study
        for report in reports:  # ... which every worker honours like a local search: within 10% of the budget
            assert report["budget_s"] <= BUDGET_S and report["finished_at"] <= report["deadline"] + 0.1 * BUDGET_S, report
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["p99_ms"] <= 5.0]
        best = max(complete, key=lambda t: t.value)

        out = train(spec, "onprem", url, bucket=bucket)

    assert out["model"] == "fraud:1" and out["aliases"] == ["candidate"]
    assert out["search"]["best"]["number"] == best.number  # the best of all workers' trials
    assert "fabric@" in out["search"]["storage"] and "***" not in url  # the URL is printed without a password
    from fabric.registry import open_registry

    version = open_registry("onprem").get("fraud:1")
    assert version.lineage.study == study.study_name and version.lineage.trial == best.number
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="fabric-registry-test")["Contents"]}
    assert {"models/onprem/fraud/1/model.onnx", "models/onprem/fraud/1/model_card.json"} <= keys
    assert out["bucket"] == sorted(f"s3://fabric-registry-test/{k}" for k in keys)
    head = boto3.client("s3").head_object(Bucket="fabric-registry-test", Key="models/onprem/fraud/1/model.onnx")
    import hashlib

    assert head["Metadata"]["sha256"] == hashlib.sha256(version.artifact("model.onnx").read_bytes()).hexdigest()


def test_a_worker_that_cannot_reach_the_study_says_so_in_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_spec(tmp_path, data={"rows": 3000})
    url = f"postgresql+psycopg2://fabric:secret@127.0.0.1:{port}/postgres"
    done = subprocess.run([sys.executable, "-m", "fabric.backends.kubernetes.worker", "--spec", str(path), "--workers", "2",
                           "--index", "0"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "FABRIC_STUDY_URL": url})  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: study storage postgresql+psycopg2://fabric:***@127.0.0.1:{port}/postgres: ")
    assert "secret" not in done.stderr  # the password never reaches a log
