"""`fabric policy check`: run the stack's Pulumi program under mocks, gather evidence for the pinned
models (the registry under $FABRIC_HOME first, then the evidence files `fabric promote` commits under
stacks/evidence/, so a CI runner with an empty home reaches the same verdict), evaluate every rule,
and decide by the stack's enforcement (advisory in dev: report only; mandatory: a violation fails)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric.errors import FabricError
from fabric.policy.evidence import PinnedEvidence, gather
from fabric.policy.rules import RULES, PolicyInput, Violation, evaluate
from fabric.registry import open_registry
from fabric.spec import StackSettings, project_root


@dataclass
class PolicyReport:
    stack: str
    enforcement: str
    violations: list[Violation] = field(default_factory=list)
    resources: int = 0
    evidence: dict[str, str] = field(default_factory=dict)  # endpoint -> where its pinned model's facts came from

    @property
    def failed(self) -> bool:
        return self.enforcement == "mandatory" and any(v.severity == "mandatory" for v in self.violations)

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "enforcement": self.enforcement, "failed": self.failed, "resources": self.resources,
                "rules": [r.id for r in RULES], "evidence": self.evidence,
                "violations": [v.to_dict() for v in self.violations]}  # fmt: skip

    def markdown(self) -> str:
        verdict = "❌ fails" if self.failed else ("⚠️ passes with findings" if self.violations else "✅ passes")
        lines = [f"### Policy check: stack `{self.stack}` {verdict}", "",
                 f"{len(RULES)} rules over {self.resources} planned resources; enforcement **{self.enforcement}**.", ""]  # fmt: skip
        if self.evidence:
            lines += ["Evidence of pinned models: " + ", ".join(f"`{k}` from {v}" for k, v in sorted(self.evidence.items())), ""]
        if self.violations:
            lines += ["| rule | subject | finding |", "|---|---|---|"]
            lines += [f"| {v.rule} | `{v.subject}` | {v.message.replace('|', '/')} |" for v in self.violations]
        return "\n".join(lines) + "\n"


def pinned_evidence(stack: str, settings: StackSettings, root: Path | None = None) -> PinnedEvidence:
    """Each endpoint's pinned version: from the registry, else from its committed evidence file."""
    endpoints = {name: e.model for name, e in settings.endpoints.items()}
    return gather(stack, endpoints, open_registry(stack), root or project_root())


def policy_input(stack: str, root: Path | None = None, settings: StackSettings | None = None) -> PolicyInput:
    from fabric.plan import plan_stack

    plan = plan_stack(stack, root)
    settings = settings or plan.settings
    found = pinned_evidence(stack, settings, root)
    return PolicyInput(stack, settings, list(plan.resources), found.pinned, project_specs(root), found.sources, found.problems)


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
    return PolicyReport(stack, data.settings.policy.enforcement, evaluate(data), len(data.resources), dict(data.sources))
