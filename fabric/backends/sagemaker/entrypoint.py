"""The training container's entrypoint for the pipeline's steps:
`python -m fabric.backends.sagemaker.entrypoint <search|train|quantize|evaluate|register>`.

SageMaker passes the spec and stack as hyperparameters (/opt/ml/input/config/hyperparameters.json)
and syncs /opt/ml/checkpoints with the step's CheckpointConfig, so a reclaimed spot instance resumes
from the last checkpoint. The lifecycle runs once, in the search step, with the same code as the
local backend; later steps read its outputs from /opt/ml/model (one run, one set of artifacts).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HYPERPARAMETERS = Path("/opt/ml/input/config/hyperparameters.json")
MODEL_DIR = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
CHECKPOINTS = Path("/opt/ml/checkpoints")


def main(argv: list[str] | None = None) -> int:
    from fabric.lifecycle import run_pipeline
    from fabric.registry import Registry
    from fabric.spec import PipelineSpec

    stage = (argv or sys.argv[1:] or ["search"])[0]
    params = json.loads(HYPERPARAMETERS.read_text())
    spec = PipelineSpec.model_validate_json(params["spec"])
    if stage == "search":
        os.environ.setdefault("FABRIC_HOME", str(CHECKPOINTS))  # studies and checkpoints survive a reclaim
        result = run_pipeline(spec, params["stack"], Registry(MODEL_DIR / "registry"), CHECKPOINTS)
        (MODEL_DIR / "evaluation.json").write_text(json.dumps({
            "test": result.version.metrics.get("test", {}), "latency": result.version.latency,
            "threshold": {spec.metric: float(params.get("threshold", 0.0))}}))  # fmt: skip
    print(json.dumps({"stage": stage, "model_dir": str(MODEL_DIR)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
