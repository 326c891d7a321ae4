"""Run the Pulumi program of a stack under Pulumi's mocks (no CLI, no cloud, no credentials) and
record every resource it declares: what `pulumi preview` would show, as data for people and for the
pull-request policy check.

The mocks are installed before the program runs (the program is executed with runpy afterwards),
never in preview mode (outputs stay unknown there and checks on them would pass vacuously). Each
mock id is `<logical name>-id`, so a resource referring to another (a bucket's encryption
configuration naming its bucket) carries that id in its inputs.
"""

from __future__ import annotations

import json
import logging
import runpy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fabric.spec import StackSettings, load_stack, project_root


@dataclass(frozen=True)
class PlannedResource:
    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    parent: str | None = None  # logical name of the parent component, None at the stack's top level


@dataclass
class Plan:
    stack: str
    settings: StackSettings
    resources: list[PlannedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what `pulumi.log.warn` said during the run

    def of_type(self, type_token: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_token]

    def by_id(self) -> dict[str, PlannedResource]:
        return {r.id: r for r in self.resources}

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "resources": [asdict(r) for r in self.resources], "outputs": self.outputs,
                "warnings": self.warnings}


def _outputs_for(type_token: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """What a provider would add to the inputs, where the program reads it."""
    arn = f"arn:aws:mock:::{name}"
    extra: dict[str, Any] = {"arn": arn}
    if type_token == "aws:ecr/repository:Repository":
        extra["repositoryUrl"] = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{inputs.get('name', name)}"
    if type_token == "aws:s3/bucket:Bucket":
        extra["bucket"] = inputs.get("bucket", name)
    if type_token == "aws:eks/cluster:Cluster":
        extra.update(endpoint=f"https://{name}.eks.mock", certificateAuthority={"data": "bW9jaw=="})
    if type_token == "aws:rds/instance:Instance":
        extra["address"] = f"{name}.rds.mock"
        if inputs.get("manageMasterUserPassword"):
            extra["masterUserSecrets"] = [{"secretArn": f"arn:aws:secretsmanager:mock:::secret:{name}-master"}]
    if type_token == "pulumi:pulumi:StackReference":
        extra["outputs"] = {"artifact_bucket": f"{inputs.get('name', name)}-artifacts"}
    return {**extra, **inputs}


def plan_stack(env: str, root: Path | None = None) -> Plan:
    """Validate the stack's settings, then run infra/__main__.py under mocks and record it."""
    import pulumi
    from pulumi.runtime import mocks, settings as runtime_settings
    from pulumi.runtime.stack import wait_for_rpcs
    from pulumi.runtime.sync_await import _sync_await

    root = root or project_root()
    stack_settings = load_stack(env, root)  # bad config stops here, before any resource
    plan = Plan(env, stack_settings)
    names_by_urn: dict[str, str] = {}

    class Recorder(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
            return f"{args.name}-id", _outputs_for(args.typ, args.name, args.inputs)

        def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
            # a plain dict: the mock monitor iterates the second item of a tuple (None would crash it)
            if args.token == "aws:secretsmanager/getSecretVersion:getSecretVersion":
                # what RDS keeps for a managed master password; the value is a placeholder
                value = {"username": "fabric", "password": "mock/pass word"}
                return {"secretId": args.args.get("secretId"), "secretString": json.dumps(value)}
            return {}

    class Monitor(mocks.MockMonitor):
        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - the gRPC method name
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                names_by_urn[response.urn] = request.name
                parent = names_by_urn.get(request.parent) if request.parent else None
                inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
                plan.resources.append(PlannedResource(request.type, request.name, f"{request.name}-id",
                                                      _plain(inputs), parent))  # fmt: skip
            return response

        def ReadResource(self, request: Any) -> Any:  # noqa: N802 - reads (StackReference) are planned too
            response = super().ReadResource(request)
            inputs = pulumi.runtime.rpc.deserialize_properties(request.properties)
            plan.resources.append(PlannedResource(request.type, request.name, request.id, _plain(inputs), None))
            return response

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            plan.warnings.append(record.getMessage())

    logger = logging.getLogger(f"fabric.plan.{env}")
    logger.handlers[:] = [Collect()]
    logger.propagate = False  # program warnings belong to the plan, not to stdout
    recorder = Recorder()
    runtime_settings.set_root_resource(None)  # type: ignore[arg-type] - a fresh root stack per plan
    mocks.set_mocks(recorder, project="fabric", stack=env, preview=False, monitor=Monitor(recorder), organization="organization",
                    logger=logger)
    program = runpy.run_path(str(root / "infra" / "__main__.py"), run_name="__pulumi__")
    outputs = program["outputs"]
    plan.outputs = _plain(_sync_await(pulumi.Output.from_input(outputs).future()) or {})
    _sync_await(wait_for_rpcs())
    return plan


_SECRET_SIG, _SECRET_MARK = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"  # rpc._special_sig_key, _special_secret_sig


def _plain(value: Any) -> Any:
    """Inputs as JSON-able data (drop Pulumi's secret/unknown wrappers)."""
    if isinstance(value, dict):
        if value.get(_SECRET_SIG) == _SECRET_MARK:
            # a Pulumi secret: under mocks its value is a placeholder (see Recorder.call), shown as data
            return _plain(value.get("value"))
        return {str(k): _plain(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
