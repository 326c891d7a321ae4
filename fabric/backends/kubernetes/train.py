"""The train Job's entrypoint: refit the best trial of the shared study (or, with --retrain, search
on fresh data first), register the model on the registry volume, copy it to the registry's bucket.

`python -m fabric.backends.kubernetes.train --spec SPEC --stack ENV [--retrain --search-budget-s S]
[--alias candidate] [--parent ADDRESS] [--bucket s3://...] [--storage URL]` prints one JSON line:
the registered version, its metrics and latency, and the objects written to the bucket.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from fabric.errors import FabricError, RegistryError
from fabric.spec import PipelineSpec

STUDY_URL_ENV = "FABRIC_STUDY_URL"


def train(
    spec: PipelineSpec,
    stack: str,
    storage: str,
    retrain: bool = False,
    search_budget_s: float | None = None,
    alias: str = "candidate",
    parent: str | None = None,
    bucket: str | None = None,
) -> dict[str, Any]:
    from fabric.backends.kubernetes.publish import publish
    from fabric.backends.kubernetes.study import redact, study_result
    from fabric.data.dataset import prepare
    from fabric.lifecycle import run_pipeline
    from fabric.registry import Registry, fabric_home

    home = fabric_home() / stack
    registry = Registry(home / "registry")
    if parent is not None:
        try:
            parent = registry.get(parent).address  # an alias moves; lineage keeps the version
        except RegistryError:
            parent = None  # the first model of this name has no parent
    dataset = prepare(spec)
    if retrain:
        searched = spec.model_copy(update={"search": spec.search.model_copy(update={"storage": storage})})
        result = run_pipeline(searched, stack, registry, home, budget_s=search_budget_s, dataset=dataset,
                              parent=parent, alias=alias)  # fmt: skip
    else:
        search = study_result(spec, dataset, storage)
        result = run_pipeline(spec, stack, registry, home, dataset=dataset, parent=parent, alias=alias, search=search)
    out = result.to_dict()
    out["search"]["storage"] = redact(storage)
    out["bucket"] = publish(result.version, bucket, stack) if bucket else []
    return out


def main(argv: list[str] | None = None) -> int:
    from fabric.spec import load_pipeline

    parser = argparse.ArgumentParser(prog="python -m fabric.backends.kubernetes.train")
    parser.add_argument("--spec", required=True)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--retrain", action="store_true", help="search on the current data first")
    parser.add_argument("--search-budget-s", type=float, default=None)
    parser.add_argument("--alias", default="candidate")
    parser.add_argument("--parent", default=None)
    parser.add_argument("--bucket", default=None, help="s3://bucket[/prefix] to copy the artifacts to")
    parser.add_argument("--storage", default=None, help=f"default: ${STUDY_URL_ENV}")
    args = parser.parse_args(argv)
    storage = args.storage or os.environ.get(STUDY_URL_ENV)
    if not storage:
        raise FabricError(f"--storage is not given and ${STUDY_URL_ENV} is empty; mount the study Secret's `url`")
    out = train(load_pipeline(args.spec), args.stack, storage, args.retrain, args.search_budget_s, args.alias,
                args.parent, args.bucket)  # fmt: skip
    print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    from fabric.errors import run_main

    run_main(main)
