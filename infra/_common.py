"""What every component shares: the stack's tags and IAM policy documents as JSON outputs."""

from __future__ import annotations

from typing import Any

import pulumi


def policy_document(statements: list[dict[str, Any]]) -> pulumi.Output[str]:
    """An IAM policy document; resource ARNs may be outputs of other resources."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


def assume_role_policy(service: str) -> str:
    import json

    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    })  # fmt: skip
