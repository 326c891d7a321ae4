from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from fabric.registry import Registry
from tests.conftest import ROOT, fabric_cli, write_spec

HEAVY = ["torch", "onnxruntime", "optuna", "lightgbm", "xgboost", "boto3", "kubernetes", "pulumi", "sklearn", "pandas", "evidently"]


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['fabric', '--help']\n"
        "try:\n    from fabric.cli import main; main()\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "Commands:" in out.stdout and "run" in out.stdout
    start = time.monotonic()
    result = fabric_cli("--help")
    assert result.returncode == 0
    assert time.monotonic() - start < 1.0


def test_run_registers_a_model_with_lineage(tmp_path: Path, home: Path) -> None:
    # a model, not a budget (test_search cuts trials at the deadline): on a cold CI machine the first
    # `fabric run`'s imports alone took most of a 4 s budget and no trial finished
    spec = write_spec(tmp_path, search={"budget_s": 60, "trials": 3, "families": ["lightgbm", "xgboost"]})
    result = fabric_cli("run", str(spec), "--stack", "dev", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["model"] == "fraud:1" and payload["aliases"] == ["candidate"]
    assert 0.5 < payload["metrics"]["roc_auc"] <= 1.0
    assert payload["latency"]["p99_ms"] <= 5.0
    assert 0 < payload["search"]["wall_s"] <= 60 * 1.1
    artifacts = Path(payload["artifacts"])
    assert {"model.onnx", "schema.json", "model_card.md", "model_card.json", "report.html"} <= {p.name for p in artifacts.iterdir()}
    report = (artifacts / "report.html").read_text()
    assert report.count("data:image/png;base64,") >= 2  # history + importance (+ Pareto)
    shown = json.loads(fabric_cli("models", "show", "fraud@candidate", "--json").stdout)
    lineage = shown["lineage"]
    assert lineage["dataset_fingerprint"].startswith("sha256:") and lineage["study"] and lineage["trial"] is not None
    assert lineage["code_version"] and lineage["spec_hash"]
    listed = json.loads(fabric_cli("models", "list", "--json").stdout)
    assert [v["address"] for v in listed] == ["fraud:1"]
    assert lineage["parent"] is None  # nothing to replace yet

    assert fabric_cli("models", "alias", "fraud:1", "champion").returncode == 0
    again = fabric_cli("run", str(write_spec(tmp_path, search={"budget_s": 60, "trials": 2, "families": ["lightgbm"]})), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["model"] == "fraud:2"
    second = json.loads(fabric_cli("models", "show", "fraud:2", "--json").stdout)["lineage"]
    assert second["parent"] == "fraud:1"  # the champion it would replace, by number (the alias moves)


def _assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # progress lines may come before it on stderr
    assert last.startswith("error: ")
    for fragment in fragments:
        assert fragment in last


def test_bad_input_exits_2_and_leaves_the_registry_unchanged(tmp_path: Path, home: Path) -> None:
    cases = [
        ({"data": {"target": "is_frad"}}, ["data.target='is_frad'", "did you mean 'is_fraud'"]),
        ({"search": {"budget_s": -5}}, ["search.budget_s=-5"]),
        ({"search": {"families": ["catboost"]}}, ["search.families[0]='catboost'"]),
    ]
    for i, (override, fragments) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        spec = write_spec(tmp_path / str(i), **override)
        _assert_user_error(fabric_cli("run", str(spec), "--stack", "dev"), *fragments)
    good = write_spec(tmp_path)
    _assert_user_error(fabric_cli("run", str(good), "--stack", "qa"), "--stack qa", "use one of ['dev', 'onprem', 'prod', 'staging']")
    _assert_user_error(fabric_cli("run", str(good), "--budget-s", "0"), "--budget-s=0.0 must be > 0")
    _assert_user_error(fabric_cli("run", str(tmp_path / "missing.yaml")), "missing.yaml: no such file")
    (tmp_path / "empty.csv").write_text("")
    empty = write_spec(tmp_path, data={"source": "empty.csv", "rows": None})
    _assert_user_error(fabric_cli("run", str(empty)), "the file is empty")
    registry = home / "dev" / "registry"
    assert not registry.exists() or Registry(registry).list() == []


def test_every_command_refuses_an_unknown_stack_before_touching_state(tmp_path: Path, home: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nr1,1\n")
    spec = str(write_spec(tmp_path))
    commands = [
        ["run", spec], ["models", "list"], ["deploy", "fraud:1"], ["endpoints", "list"], ["endpoints", "status", "fraud"],
        ["endpoints", "stop", "fraud"], ["rollback", "fraud"], ["monitor", "--detect-only"], ["cost"],
        ["labels", "add", str(labels), "--model", "fraud"], ["policy", "check"], ["infra", "plan"],
        ["features", "apply", spec],
    ]  # fmt: skip
    stack_file = ROOT / "stacks" / "Pulumi.qa.yaml"
    for args in commands:
        result = fabric_cli(*args, "--stack", "qa")
        assert (result.returncode, result.stdout) == (2, ""), (args, result.stdout, result.stderr)
        assert result.stderr == f"error: --stack qa: no {stack_file}; use one of ['dev', 'onprem', 'prod', 'staging']\n", args
    for option, args in [("--from", ["--from", "qa", "--to", "prod"]), ("--to", ["--from", "staging", "--to", "qa"])]:
        result = fabric_cli("promote", "fraud:1", *args)
        assert result.returncode == 2 and result.stderr == (
            f"error: {option} qa: no {stack_file}; use one of ['dev', 'onprem', 'prod', 'staging']\n"
        ), result.stderr
    assert not home.exists() or sorted(p.name for p in home.iterdir()) == []  # no empty registry, ledger or labels
