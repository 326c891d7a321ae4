"""Deterministic names, shared with the Pulumi program (infra/), so a rerun finds what the last run
or `pulumi up` made instead of creating it twice."""

from __future__ import annotations


def bucket(stack: str) -> str:
    return f"fabric-{stack}-artifacts"


def package_group(stack: str, use_case: str) -> str:
    return f"fabric-{stack}-{use_case}"


def pipeline(stack: str, use_case: str) -> str:
    return f"fabric-{stack}-{use_case}"


def endpoint(stack: str, use_case: str) -> str:
    return f"fabric-{stack}-{use_case}"


def versioned(stack: str, use_case: str, version: int) -> str:
    """Model and endpoint config of one registered version (immutable: a new version, a new config)."""
    return f"fabric-{stack}-{use_case}-v{version}"


def model_prefix(use_case: str, version: int) -> str:
    return f"models/{use_case}/{version}"


def capture_prefix(use_case: str) -> str:
    return f"capture/{use_case}"


def drift_alarm(stack: str, use_case: str) -> str:
    return f"fabric-{stack}-{use_case}-drift"


def latency_alarm(stack: str, use_case: str) -> str:
    return f"fabric-{stack}-{use_case}-p99-latency"
