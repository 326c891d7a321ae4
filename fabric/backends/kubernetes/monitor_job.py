"""The monitor CronJob's entrypoint: run `fabric monitor`, and on an alarm start the retraining Job.

`python -m fabric.backends.kubernetes.monitor_job --spec /etc/fabric/spec.yaml --stack onprem`
runs `fabric monitor --stack STACK --endpoint NAME --detect-only --json` and reads its reports; an
alarm means drift persisted past the spec's threshold. With `drift.retrain: true` it then
applies a retrain Job (`<name>-retrain-<time>`), rendered in-process from the same spec and stack
as every other manifest, so the CronJob needs no template that could drift from the code.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from typing import Any

from fabric.errors import FabricError


def read_verdict(stdout: str) -> dict[str, Any]:
    """`fabric monitor --json` prints one report per endpoint; an alarm in any of them counts."""
    try:
        reports = json.loads(stdout)
    except json.JSONDecodeError:
        reports = None
    if not isinstance(reports, list) or not all(isinstance(r, dict) and "alarm" in r for r in reports):
        raise FabricError(
            f"fabric monitor --json printed no list of reports with `alarm` ({stdout.strip()[-200:]!r}); "
            "check the fabric version of the image"
        )
    return {"alarm": any(r["alarm"] is not None for r in reports), "reports": reports}


def retrain_job(spec: Any, settings: Any, now: float | None = None) -> dict[str, Any]:
    from fabric.backends.kubernetes.train_job import train_job

    run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return train_job(spec, settings, run_id, mode="retrain")


def main(argv: list[str] | None = None) -> int:
    from fabric.spec import load_pipeline, load_stack

    parser = argparse.ArgumentParser(prog="python -m fabric.backends.kubernetes.monitor_job")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--stack", required=True)
    args = parser.parse_args(argv)
    spec, settings = load_pipeline(args.spec), load_stack(args.stack)
    exe = shutil.which("fabric") or "fabric"
    command = [exe, "monitor", "--stack", args.stack, "--endpoint", spec.name, "--detect-only", "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        print(json.dumps({"alarm": None, "error": f"fabric monitor exited {done.returncode}"}), flush=True)
        return done.returncode
    verdict = read_verdict(done.stdout)
    result: dict[str, Any] = {"alarm": verdict["alarm"], "retrain_job": None}
    if verdict["alarm"] and spec.drift.retrain:
        from fabric.backends.kubernetes.cluster import Cluster

        job = retrain_job(spec, settings)
        Cluster.connect(settings).apply(job)
        result["retrain_job"] = job["metadata"]["name"]
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    from fabric.errors import run_main

    run_main(main)
