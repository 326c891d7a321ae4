"""`fabric policy check`: run the stack's Pulumi program under mocks, gather registry evidence for
the pinned models, evaluate every rule, and decide by the stack's enforcement (advisory in dev:
report only; mandatory: a violation fails the check)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric.errors import FabricError
from fabric.policy.rules import RULES, PolicyInput, Violation, evaluate
from fabric.registry import ModelVersion, open_registry
from fabric.spec import StackSettings


@dataclass
class PolicyReport:
    stack: str
    enforcement: str
    violations: list[Violation] = field(default_factory=list)
    resources: int = 0

    @property
    def failed(self) -> bool:
        return self.enforcement == "mandatory" and any(v.severity == "mandatory" for v in self.violations)

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "enforcement": self.enforcement, "failed": self.failed, "resources": self.resources,
                "rules": [r.id for r in RULES], "violations": [v.to_dict() for v in self.violations]}  # fmt: skip

    def markdown(self) -> str:
        verdict = "❌ fails" if self.failed else ("⚠️ passes with findings" if self.violations else "✅ passes")
        lines = [f"### Policy check: stack `{self.stack}` {verdict}", "",
                 f"{len(RULES)} rules over {self.resources} planned resources; enforcement **{self.enforcement}**.", ""]  # fmt: skip
        if self.violations:
            lines += ["| rule | subject | finding |", "|---|---|---|"]
            lines += [f"| {v.rule} | `{v.subject}` | {v.message.replace('|', '/')} |" for v in self.violations]
        return "\n".join(lines) + "\n"


def pinned_versions(stack: str, settings: StackSettings) -> dict[str, ModelVersion | None]:
    registry = open_registry(stack)
    out: dict[str, ModelVersion | None] = {}
    for name, endpoint in settings.endpoints.items():
        if endpoint.model is None:
            continue
        try:
            out[name] = registry.get(endpoint.model)
        except FabricError:
            out[name] = None
    return out


def policy_input(stack: str, root: Path | None = None, settings: StackSettings | None = None) -> PolicyInput:
    from fabric.plan import plan_stack

    plan = plan_stack(stack, root)
    settings = settings or plan.settings
    return PolicyInput(stack, settings, list(plan.resources), pinned_versions(stack, settings), project_specs(root))


def project_specs(root: Path | None = None) -> list[Any]:
    """Every pipelines/*.yaml of the project that parses (a broken one is `fabric run`'s to report)."""
    from fabric.spec import load_pipeline, project_root

    specs = []
    for path in sorted(((root or project_root()) / "pipelines").glob("*.yaml")):
        try:
            specs.append(load_pipeline(path))
        except FabricError:
            continue
    return specs


def run_check(stack: str, root: Path | None = None) -> PolicyReport:
    data = policy_input(stack, root)
    return PolicyReport(stack, data.settings.policy.enforcement, evaluate(data), len(data.resources))
