"""GPU cost control: training resumes from checkpoints after a kill, the cost ledger, spot pools."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, fabric_cli, write_spec

SCRIPT = ROOT / "tests" / "resumable_fit.py"


def _fit(family: str, folder: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), family, str(folder), str(out)], stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("family", ["lightgbm", "xgboost", "mlp"])
def test_a_killed_training_resumes_from_its_checkpoint_and_ends_with_the_same_model(family: str, tmp_path: Path) -> None:
    whole = _fit(family, tmp_path / "whole", tmp_path / "whole.npy")
    interrupted = _fit(family, tmp_path / "resumed", tmp_path / "resumed.npy")
    progress = tmp_path / "resumed" / "progress.json"
    deadline = time.monotonic() + 120
    while not progress.exists():  # wait for the first checkpoint, then pull the plug like a spot reclaim
        assert interrupted.poll() is None, "the fit ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    saved = json.loads(progress.read_text())
    assert interrupted.returncode == -signal.SIGKILL and not (tmp_path / "resumed.npy").exists()
    resumed = _fit(family, tmp_path / "resumed", tmp_path / "resumed.npy")
    out, _ = resumed.communicate(timeout=300)
    whole.communicate(timeout=300)
    done = saved.get("rounds", saved.get("epochs"))
    assert json.loads(out.strip().splitlines()[-1])["resumed_from"] >= done > 0  # finished work is not redone
    np.testing.assert_array_equal(np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "whole.npy"))


def test_runs_are_priced_on_the_stack_and_spot_savings_shown(tmp_path: Path, home: Path) -> None:
    spec = write_spec(tmp_path, search={"budget_s": 60, "trials": 2, "families": ["lightgbm"]})
    assert fabric_cli("run", str(spec), "--stack", "dev").returncode == 0
    rows = json.loads(fabric_cli("cost", "--stack", "dev", "--json").stdout)
    assert len(rows) == 1 and rows[0]["version"] == "fraud:1" and rows[0]["runs"] == 1
    assert rows[0]["instance_type"] == "m6i.large" and rows[0]["capacity_type"] == "ON_DEMAND"  # dev's CPU pool
    assert rows[0]["usd"] > 0 and rows[0]["spot_savings_usd"] == 0
    (tmp_path / "gpu").mkdir()
    # priced on the GPU pool because the spec asks for one (the policy check flags that for trees)
    gpu = write_spec(tmp_path / "gpu", search={"budget_s": 60, "trials": 2, "families": ["lightgbm"]}, train={"accelerator": "gpu"})
    assert fabric_cli("run", str(gpu), "--stack", "dev").returncode == 0
    by_stack = json.loads(fabric_cli("cost", "--stack", "dev", "--by", "run", "--json").stdout)
    spot = [r for r in by_stack if r["instance_type"] == "g5.xlarge"]
    assert len(spot) == 1 and spot[0]["capacity_type"] == "SPOT"
    assert 0 < spot[0]["usd"] < spot[0]["usd_on_demand"] and spot[0]["spot_savings_usd"] > 0
    table = fabric_cli("cost", "--stack", "dev")
    assert table.returncode == 0 and "g5.xlarge SPOT" in table.stdout


def test_checkpoints_are_removed_once_the_version_is_registered(tmp_path: Path, home: Path) -> None:
    spec = write_spec(tmp_path, search={"budget_s": 60, "trials": 2, "families": ["lightgbm"]})
    assert fabric_cli("run", str(spec), "--stack", "dev").returncode == 0
    assert list((home / "dev" / "checkpoints").glob("*")) == []


def test_training_pools_use_spot_and_serving_on_demand() -> None:
    from fabric.plan import plan_stack

    plan = plan_stack("onprem", ROOT)
    groups = plan.of_type("aws:eks/nodeGroup:NodeGroup")
    assert len(groups) == 3
    capacity = {g.inputs["nodeGroupName"]: g.inputs["capacityType"] for g in groups}
    assert capacity == {"train-gpu": "SPOT", "system-cpu": "ON_DEMAND", "serving-cpu": "ON_DEMAND"}
    assert all(g.inputs["scalingConfig"]["minSize"] == 0 for g in groups if g.inputs["nodeGroupName"] == "train-gpu")


def test_runs_are_priced_on_the_capacity_the_stack_trains_on(tmp_path: Path) -> None:
    from fabric.backends.sagemaker.pipeline import definition
    from fabric.cost import estimate
    from fabric.spec import load_pipeline, load_stack

    cpu = load_pipeline(write_spec(tmp_path))
    staging = load_stack("staging", ROOT)
    job = {s["Name"]: s["Arguments"] for s in definition(cpu, staging, "img", "role")["Steps"]}["Train"]
    priced = estimate(staging, cpu, 3600)
    # the ledger prices what the pipeline's job asks for: a CPU instance on managed spot
    assert (priced["instance_type"], priced["capacity_type"]) == (job["ResourceConfig"]["InstanceType"], "SPOT") == ("ml.m5.xlarge", "SPOT")
    assert job["EnableManagedSpotTraining"] is True
    assert priced["usd"] < priced["usd_on_demand"]
    on_demand = staging.model_copy(update={"spot_training": False})
    assert estimate(on_demand, cpu, 3600)["capacity_type"] == "ON_DEMAND"
    gpu = cpu.model_copy(update={"train": cpu.train.model_copy(update={"accelerator": "gpu"})})
    assert estimate(staging, gpu, 3600)["instance_type"] == "ml.g5.xlarge"
