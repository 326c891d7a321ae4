"""The registry on SageMaker: one model package group per use case, one model package per version
with its metrics and lineage as metadata properties and a lineage file in S3, approval
PendingManualApproval -> Approved; the `champion` alias is the latest Approved package.

The lineage file in S3 is the source of truth: metadata properties are limited in size, and a
status-only `update_model_package` may drop them (it does on the emulator), so approval re-sends them.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import asdict
from typing import Any

from fabric.backends.sagemaker import names
from fabric.backends.sagemaker.aws import Clients, aws_errors
from fabric.errors import FabricError
from fabric.registry import Lineage, ModelVersion, Registry


def import_run(clients: Clients, artifacts: str, registry: Registry, name: str) -> Any:
    """The version a pipeline's job produced (its model.tar.gz at `artifacts`, with fabric-run.json),
    registered in the local mirror as `fabric run` registers a local run: a RunResult."""
    from fabric.backends.sagemaker.entrypoint import RUN_RECORD
    from fabric.lifecycle import RunResult
    from fabric.search import SearchResult, TrialSummary

    bucket, _, key = artifacts.removeprefix("s3://").partition("/")
    with aws_errors(f"download {artifacts}"):
        body = clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    champion = registry.find(f"{name}@champion")
    with registry.stage() as staged:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
            tar.extractall(staged, filter="data")
        record_path = staged / RUN_RECORD
        if not record_path.is_file():
            raise FabricError(f"{artifacts} has no {RUN_RECORD}; the Search step ran an older image: rebuild and push it")
        record = json.loads(record_path.read_text())
        record_path.unlink()
        # the version this one would replace, as a local run records it
        lineage = Lineage.from_dict({**record["lineage"], "parent": champion.address if champion else None})
        version = registry.register(name, staged, lineage, record["metrics"], record["latency"])
    raw = record["search"]
    search = SearchResult(**{**raw, "best": TrialSummary(**raw["best"]), "pareto": [TrialSummary(**t) for t in raw["pareto"]],
                             "trials": [TrialSummary(**t) for t in raw["trials"]]})  # fmt: skip
    return RunResult(version=version, search=search, timings_s=record.get("timings_s", {}), report=version.path / "report.html")


def _metadata(version: ModelVersion) -> dict[str, str]:
    lineage = version.lineage
    values = {"fabric_address": version.address, "dataset_fingerprint": lineage.dataset_fingerprint,
              "spec_hash": lineage.spec_hash, "code_version": lineage.code_version, "study": str(lineage.study),
              "trial": str(lineage.trial), "parent": str(lineage.parent), "family": lineage.family,
              "precision": lineage.precision, "p99_ms": str(version.latency.get("p99_ms"))}  # fmt: skip
    return {k: v[:256] for k, v in values.items()}


def upload_version(clients: Clients, stack: str, version: ModelVersion) -> str:
    """model.tar.gz (what a SageMaker container unpacks to /opt/ml/model) and lineage.json."""
    bucket, prefix = names.bucket(stack), names.model_prefix(version.name, version.version)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(version.path.iterdir()):
            tar.add(path, arcname=path.name)
    with aws_errors(f"upload {version.address} to s3://{bucket}/{prefix}"):
        clients.s3.put_object(Bucket=bucket, Key=f"{prefix}/model.tar.gz", Body=buffer.getvalue())
        clients.s3.put_object(Bucket=bucket, Key=f"{prefix}/lineage.json",
                              Body=json.dumps({"address": version.address, "lineage": asdict(version.lineage),
                                               "metrics": version.metrics, "latency": version.latency}, default=str))  # fmt: skip
    return f"s3://{bucket}/{prefix}/model.tar.gz"


def ensure_group(clients: Clients, stack: str, use_case: str) -> str:
    group = names.package_group(stack, use_case)
    with aws_errors(f"model package group {group}"):
        existing = clients.sagemaker.list_model_package_groups(NameContains=group)["ModelPackageGroupSummaryList"]
        if not any(g["ModelPackageGroupName"] == group for g in existing):
            clients.sagemaker.create_model_package_group(ModelPackageGroupName=group,
                                                         ModelPackageGroupDescription=f"{use_case} models of {stack}")  # fmt: skip
    return group


def _packages(clients: Clients, group: str) -> list[dict[str, Any]]:
    with aws_errors(f"list packages of {group}"):
        pages = clients.sagemaker.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group)
        arns = [s["ModelPackageArn"] for page in pages for s in page["ModelPackageSummaryList"]]
        return [clients.sagemaker.describe_model_package(ModelPackageName=arn) for arn in arns]


def _of_address(packages: list[dict[str, Any]], address: str) -> dict[str, Any] | None:
    """The package of `address`; one that is not Rejected first (an aborted promotion leaves a Rejected one)."""
    found = None
    for described in packages:
        if described.get("CustomerMetadataProperties", {}).get("fabric_address") == address:
            if described.get("ModelApprovalStatus") != "Rejected":
                return described
            found = described
    return found


def find_package(clients: Clients, group: str, address: str) -> dict[str, Any] | None:
    return _of_address(_packages(clients, group), address)


def _data_url(package: dict[str, Any]) -> str | None:
    containers = package.get("InferenceSpecification", {}).get("Containers") or [{}]
    return containers[0].get("ModelDataUrl")


def register_package(clients: Clients, stack: str, version: ModelVersion, image: str, pipeline_artifacts: str | None = None) -> str:
    """The version's package, with its lineage as metadata properties and in S3. Idempotent: the
    package of an address is created once. `pipeline_artifacts`: the model.tar.gz a pipeline's
    RegisterModel step registered; that package (no fabric address yet) is adopted, not duplicated.
    Either way the model is uploaded under models/<name>/<version>/, which endpoints serve."""
    group = ensure_group(clients, stack, version.name)
    packages = _packages(clients, group)
    existing = _of_address(packages, version.address)
    if existing:
        return existing["ModelPackageArn"]
    data = upload_version(clients, stack, version)
    adopted = next((p for p in packages if pipeline_artifacts and _data_url(p) == pipeline_artifacts
                    and "fabric_address" not in p.get("CustomerMetadataProperties", {})), None)  # fmt: skip
    if adopted is not None:
        with aws_errors(f"record {version.address}'s lineage on {adopted['ModelPackageArn']}"):
            clients.sagemaker.update_model_package(
                ModelPackageArn=adopted["ModelPackageArn"], CustomerMetadataProperties=_metadata(version),
                ModelApprovalStatus=adopted.get("ModelApprovalStatus", "PendingManualApproval"),  # kept as it is
            )  # fmt: skip
        return adopted["ModelPackageArn"]
    return _create_package(clients, group, version, image, data)


def approve(clients: Clients, arn: str, version: ModelVersion, by: str) -> dict[str, Any]:
    with aws_errors(f"approve {arn}"):
        clients.sagemaker.update_model_package(
            ModelPackageArn=arn, ModelApprovalStatus="Approved", ApprovalDescription=f"approved by {by}",
            CustomerMetadataProperties=_metadata(version),  # re-sent: a status-only update may drop them
        )  # fmt: skip
        return clients.sagemaker.describe_model_package(ModelPackageName=arn)


def publish_promoted(clients: Clients, stack: str, version: ModelVersion, image: str, approved_by: str) -> str:
    """A promoted version in the target stack's group: artifacts and lineage uploaded to the target's
    bucket (overwritten, so a retry after an aborted attempt never serves stale bytes), a package
    that is not Rejected reused or created, then Approved (promotion checked the approvals)."""
    group = ensure_group(clients, stack, version.name)
    data = upload_version(clients, stack, version)
    existing = find_package(clients, group, version.address)
    live = existing is not None and existing.get("ModelApprovalStatus") != "Rejected"
    arn = existing["ModelPackageArn"] if live else _create_package(clients, group, version, image, data)  # type: ignore[index]
    approve(clients, arn, version, approved_by)
    return arn


def _create_package(clients: Clients, group: str, version: ModelVersion, image: str, data: str) -> str:
    with aws_errors(f"register {version.address} in {group}"):
        return clients.sagemaker.create_model_package(
            ModelPackageGroupName=group,
            ModelPackageDescription=f"{version.address} ({version.lineage.family}, {version.lineage.precision})",
            InferenceSpecification={"Containers": [{"Image": image, "ModelDataUrl": data}],
                                    "SupportedContentTypes": ["application/json", "text/csv"],
                                    "SupportedResponseMIMETypes": ["application/json"]},
            ModelApprovalStatus="PendingManualApproval",
            CustomerMetadataProperties=_metadata(version),
        )["ModelPackageArn"]  # fmt: skip


def withdraw_promoted(clients: Clients, stack: str, version: ModelVersion, reason: str) -> None:
    """Undo `publish_promoted` of a promotion that did not complete, however far it got: a package of
    the address that is not Rejected becomes Rejected (never deployable; SageMaker keeps it as the
    record of the aborted attempt) and the uploaded objects go."""
    bucket, prefix = names.bucket(stack), names.model_prefix(version.name, version.version)
    group = names.package_group(stack, version.name)
    with aws_errors(f"withdraw {version.address} from {group} and s3://{bucket}/{prefix}"):
        groups = clients.sagemaker.list_model_package_groups(NameContains=group)["ModelPackageGroupSummaryList"]
        package = find_package(clients, group, version.address) if any(g["ModelPackageGroupName"] == group for g in groups) else None
        if package is not None and package.get("ModelApprovalStatus") != "Rejected":
            clients.sagemaker.update_model_package(
                ModelPackageArn=package["ModelPackageArn"], ModelApprovalStatus="Rejected", ApprovalDescription=reason[:1024],
                CustomerMetadataProperties=_metadata(version),  # re-sent: a status-only update may drop them
            )  # fmt: skip
        for key in ("model.tar.gz", "lineage.json"):
            clients.s3.delete_object(Bucket=bucket, Key=f"{prefix}/{key}")
