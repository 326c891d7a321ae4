"""`fabric infra plan --stack ENV`: what `pulumi up` would declare, without the Pulumi CLI or a cloud."""

from __future__ import annotations

import click

from fabric.cli._common import echo_json, json_option, stack_option

KEY_INPUTS = {
    "aws:eks/nodeGroup:NodeGroup": ("instanceTypes", "capacityType", "scalingConfig", "taints"),
    "aws:s3/bucket:Bucket": ("bucket",),
    "aws:ecr/repository:Repository": ("name", "imageTagMutability", "imageScanningConfiguration"),
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": ("name", "productionVariants"),
    "aws:sagemaker/model:Model": ("name", "primaryContainer"),
    "aws:appautoscaling/target:Target": ("minCapacity", "maxCapacity"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("metricName", "threshold"),
    "aws:rds/instance:Instance": ("engine", "instanceClass", "storageEncrypted", "publiclyAccessible"),
    "kubernetes:apps/v1:Deployment": ("metadata",),
}


@click.group("infra")
def infra() -> None:
    """The Pulumi program in infra/ (one stack per environment in stacks/)."""


@infra.command("plan")
@stack_option
@json_option
def plan(stack: str, as_json: bool) -> None:
    """Run the Pulumi program of STACK under Pulumi's mocks (no Pulumi CLI, no credentials) and
    list every resource it would declare, with its key properties. This is the input of
    `fabric policy check`; `pulumi preview --stack STACK` shows the same against the real cloud.

    \b
    Examples:
      fabric infra plan --stack prod
      fabric infra plan --stack dev --json | jq '.resources | length'
    """
    from fabric.plan import plan_stack

    result = plan_stack(stack)
    if as_json:
        echo_json(result.to_dict())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"stack {stack}: {len(result.resources)} resources")
    for column in ("type", "name", "parent", "key properties"):
        table.add_column(column, overflow="fold")
    for r in result.resources:
        keys = KEY_INPUTS.get(r.type, ())
        props = ", ".join(f"{k}={r.inputs[k]}" for k in keys if k in r.inputs)
        table.add_row(r.type, r.name, r.parent or "", props)
    Console(width=200).print(table)
    click.echo("outputs: " + ", ".join(f"{k}={v}" for k, v in result.outputs.items()))
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
