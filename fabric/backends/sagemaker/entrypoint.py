"""The pipeline steps' entrypoint, in the serving image:
`python -m fabric.backends.sagemaker.entrypoint <search|train|quantize|evaluate>`.

- search: the lifecycle's search and refit with the same code as the local backend; its Optuna
  study and training checkpoints live in /opt/ml/checkpoints, which SageMaker syncs with the step's
  CheckpointConfig, so a reclaimed spot instance resumes. Writes the version's files (model.onnx,
  schema.json, card, lineage inputs) to /opt/ml/model.
- train, quantize: take the previous step's artifacts (`previous` channel, a model.tar.gz) and pass
  the version on; refit and quantization already happened inside search in this version. The
  version's lineage, metrics and search summary travel with it as fabric-run.json, from which
  `fabric run` registers the version (local mirror, package metadata, lineage.json in S3).
- evaluate (a Processing job): reads the model, writes evaluation.json ({test: metrics, latency})
  for the pipeline's Condition.
Paths are overridable with SM_* variables so tests run the stages in temporary folders.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any


RUN_RECORD = "fabric-run.json"  # travels in model.tar.gz; not a model artifact (removed when registered)


def run_record(result: Any) -> dict[str, Any]:
    """A RunResult as JSON: the version's lineage, metrics and latency, the search summary, timings."""
    from dataclasses import asdict

    version = result.version
    return {"address": version.address, "lineage": asdict(version.lineage), "metrics": version.metrics,
            "latency": version.latency, "search": asdict(result.search), "timings_s": result.timings_s}  # fmt: skip


def _path(env: str, default: str) -> Path:
    return Path(os.environ.get(env, default))


def _version_folder(root: Path) -> Path:
    """The model folder: model.onnx, schema.json, card... at its top, as the serving container wants."""
    if not (root / "model.onnx").is_file():
        raise SystemExit(f"error: no model.onnx in {root}; the previous step produced no model")
    return root


def _unpack(folder: Path, into: Path) -> None:
    for archive in folder.glob("*.tar.gz"):
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")


def main(argv: list[str] | None = None) -> int:
    stage = (argv if argv is not None else sys.argv[1:] or ["search"])[0]
    model_dir = _path("SM_MODEL_DIR", "/opt/ml/model")
    if stage == "search":
        from fabric.lifecycle import run_pipeline
        from fabric.registry import Registry
        from fabric.spec import PipelineSpec

        params = json.loads(_path("SM_HYPERPARAMETERS", "/opt/ml/input/config/hyperparameters.json").read_text())
        spec = PipelineSpec.model_validate_json(params["spec"])
        checkpoints = _path("SM_CHECKPOINT_DIR", "/opt/ml/checkpoints")
        result = run_pipeline(spec, params["stack"], Registry(checkpoints / "registry"), checkpoints)
        model_dir.mkdir(parents=True, exist_ok=True)
        for artifact in result.version.path.iterdir():  # SageMaker tars /opt/ml/model as model.tar.gz
            shutil.copy2(artifact, model_dir / artifact.name)
        # what `fabric run` needs to register this version with its lineage once the pipeline succeeds
        (model_dir / RUN_RECORD).write_text(json.dumps(run_record(result), default=str))
        print(json.dumps({"stage": stage, "model": result.version.address}))
    elif stage in ("train", "quantize"):
        previous = _path("SM_CHANNEL_PREVIOUS", "/opt/ml/input/data/previous")
        _unpack(previous, model_dir)
        print(json.dumps({"stage": stage, "model": str(_version_folder(model_dir))}))
    elif stage == "evaluate":
        source = _path("SM_PROCESSING_MODEL", "/opt/ml/processing/model")
        out = _path("SM_PROCESSING_EVALUATION", "/opt/ml/processing/evaluation")
        work = out / ".model"
        _unpack(source, work)
        folder = _version_folder(work)
        card = json.loads((folder / "model_card.json").read_text())
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps({"test": card["metrics"]["test"], "latency": card["served_latency"]}))
        shutil.rmtree(work)
        print(json.dumps({"stage": stage, "evaluation": str(out / "evaluation.json")}))
    else:
        raise SystemExit(f"error: stage {stage!r} is unknown; use search, train, quantize or evaluate")
    return 0


if __name__ == "__main__":
    sys.exit(main())
