"""The lifecycle of one spec on the local machine: data -> search -> train -> quantize -> register.

Backends call this for the stages they run in-process; the CLI only wires a progress display to
the `Progress` hooks. Nothing is registered unless every stage before it succeeded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from fabric.checkpoint import Checkpoint
from fabric.data.dataset import Dataset, prepare
from fabric.latency import measure, predict
from fabric.monitor.profile import build_profile
from fabric.quantize import quantize
from fabric.registry import Lineage, ModelVersion, Registry, code_version
from fabric.search import SearchOptions, SearchResult, TrialSummary, run_search
from fabric.spec import PipelineSpec


class Progress(Protocol):
    def stage(self, name: str, detail: str = "") -> None: ...
    def trial(self, summary: TrialSummary, elapsed_s: float, budget_s: float | None) -> None: ...


class SilentProgress:
    def stage(self, name: str, detail: str = "") -> None:
        pass

    def trial(self, summary: TrialSummary, elapsed_s: float, budget_s: float | None) -> None:
        pass


@dataclass
class RunResult:
    version: ModelVersion
    search: SearchResult
    timings_s: dict[str, float] = field(default_factory=dict)
    report: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.version.address,
            "aliases": list(self.version.aliases),
            "family": self.version.lineage.family,
            "metrics": self.version.metrics.get("test", {}),
            "latency": self.version.latency,
            "search": self.search.to_dict(),
            "timings_s": {k: round(v, 2) for k, v in self.timings_s.items()},
            "artifacts": str(self.version.path),
            "report": str(self.report) if self.report else None,
        }


def default_storage(home: Path) -> str:
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{home / 'studies.db'}"


def _feature_store(spec: PipelineSpec, home: Path):  # noqa: ANN202 - FeatureStore | None
    if spec.features is None:
        return None
    from fabric.features.store import FeatureStore, features_home

    return FeatureStore(features_home(home))


def run_pipeline(
    spec: PipelineSpec,
    stack: str,
    registry: Registry,
    home: Path,
    progress: Progress | None = None,
    budget_s: float | None = None,
    dataset: Dataset | None = None,
    parent: str | None = None,
    search_options: SearchOptions = SearchOptions(),
    alias: str = "candidate",
    search: SearchResult | None = None,
) -> RunResult:
    """`search`: a finished search (e.g. the Kubernetes backend's shared study) to refit instead of searching."""
    from fabric import report as report_module
    from fabric.train import evaluate, model_card, refit, write_model_card

    progress = progress or SilentProgress()
    if parent is None:  # the version this one would replace; lineage keeps the number, not the alias
        champion = registry.find(f"{spec.name}@champion")
        parent = champion.address if champion else None
    timings: dict[str, float] = {}
    clock = time.monotonic()

    progress.stage("data", spec.data.source + (" + feature tables as of each row's time" if spec.features else ""))
    dataset = dataset or prepare(spec, feature_store=_feature_store(spec, home))
    timings["data"] = time.monotonic() - clock

    if search is None:
        budget = budget_s if budget_s is not None else spec.search.budget_s
        progress.stage("search", f"{budget} s budget" if budget else f"{spec.search.trials} trials")
        clock = time.monotonic()
        search = run_search(
            spec,
            dataset,
            storage=spec.search.storage or default_storage(home),
            budget_s=budget,
            options=search_options,
            on_trial=lambda s, elapsed: progress.trial(s, elapsed, budget),
        )
        timings["search"] = time.monotonic() - clock

    progress.stage("train", f"refit {search.best.family} (trial {search.best.number}) on train+validation")
    clock = time.monotonic()
    # the same spec, data and configuration resume the same checkpoint after an interruption
    key = hashlib.sha256(json.dumps([spec.spec_hash(), dataset.fingerprint, search.best.family, search.best.params],
                                    sort_keys=True, default=str).encode()).hexdigest()[:16]  # fmt: skip
    checkpoint = Checkpoint(home / "checkpoints" / key, every=spec.train.checkpoint_every)
    trained = refit(spec, dataset, search.best, checkpoint=checkpoint)
    timings["train"] = time.monotonic() - clock

    progress.stage("quantize", ", ".join(spec.quantize.precisions))
    clock = time.monotonic()
    quantized = quantize(spec, dataset, trained.onnx, trained.latency.p99_ms)
    served = quantized.chosen_result
    if quantized.chosen != "fp32":
        # the headline (registry metrics and latency, the card's top tables) describes the artifact that
        # is served; fp32's own numbers stay in the quantize table beside every other precision's
        served_onnx = served.onnx or b""
        served_scores = predict(served_onnx, dataset.test.X)
        trained = replace(
            trained,
            onnx=served_onnx,
            metrics=evaluate(spec, dataset, served_scores),
            latency=measure(served_onnx, dataset.test.X, runs=2000, warmup=100, batch_rows=256),
            test_scores=served_scores,
        )
    latency = trained.latency
    timings["quantize"] = time.monotonic() - clock

    progress.stage("register", spec.name)
    clock = time.monotonic()
    lineage = Lineage(
        dataset_fingerprint=dataset.fingerprint,
        spec_hash=spec.spec_hash(),
        code_version=code_version(),
        study=search.study_name,
        trial=search.best.number,
        parent=parent,
        stack=stack,
        family=trained.family,
        precision=quantized.chosen,
        params=trained.params,
        training_rows=len(dataset.train.y) + len(dataset.validation.y),
        source=dataset.source,
        features=dataset.feature_lineage or {},
    )
    card = model_card(
        spec,
        dataset,
        search,
        trained,
        {
            "higher_is_better": spec.higher_is_better,
            "served_precision": quantized.chosen,
            "precisions": quantized.to_dict()["precisions"],
            "served_latency": latency.to_dict(),
        },
    )
    with registry.stage() as staged:
        (staged / "model.onnx").write_bytes(trained.onnx)
        for accepted in quantized.accepted():
            (staged / f"model.{accepted.precision}.onnx").write_bytes(accepted.onnx or b"")
        (staged / "schema.json").write_text(json.dumps(dataset.schema.to_dict(), indent=2))
        build_profile(dataset.schema, dataset.test.frame, trained.test_scores).save(staged / "profile.json")
        # the version carries its own rollout, serving and drift policy to deploy and monitor
        (staged / "spec.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2))
        if dataset.feature_set is not None:  # what the server looks up per entity id
            (staged / "features.json").write_text(json.dumps(dataset.feature_set.to_dict(), indent=2))
        write_model_card(card, staged)
        (staged / "report.html").write_text(report_module.render(card, search))
        version = registry.register(
            spec.name,
            staged,
            lineage,
            metrics={**trained.metrics, "quantize": quantized.to_dict()},
            latency=latency.to_dict(),
            alias=alias,
        )
    timings["register"] = time.monotonic() - clock
    shutil.rmtree(checkpoint.folder, ignore_errors=True)  # registered: nothing left to resume
    return RunResult(version=version, search=search, timings_s=timings, report=version.path / "report.html")
