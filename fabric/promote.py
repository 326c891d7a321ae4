"""Environment promotion: an approved model moves from one stack's registry to the next with its
lineage, and the target stack file pins it (a one-line diff that a pull request reviews and that
`pulumi up` then deploys).

Order of effects, so that a refusal or a failure changes nothing:
1. evidence: the target's rules that concern a pinned model (FAB002 latency, FAB003 lineage, FAB004
   approvals, FAB009 no pickle) are evaluated with the candidate pinned; any violation refuses;
2. the new stack file text is built and validated through StackSettings, in memory;
3. the artifacts are copied and registered in the target registry (one transaction), the bytes
   checked by hash;
4. the stack file is replaced atomically (temp file + rename). An interruption between 3 and 4
   leaves an extra, unpinned version in the target registry: nothing serves it until a pin does.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from fabric.errors import FabricError
from fabric.policy.rules import PolicyInput, evaluate
from fabric.registry import ModelVersion, actor, now, open_registry
from fabric.spec import StackSettings, load_stack, stack_file

EVIDENCE_RULES = ["FAB002", "FAB003", "FAB004", "FAB009"]


class PromotionRefused(FabricError):
    pass


@dataclass
class PromotionResult:
    endpoint: str
    source: str
    target: str
    previous: str | None
    stack_file: str
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def pin_in_stack_text(text: str, endpoint: str, model: str | None) -> str:
    """Set `model:` of `fabric:endpoints.<endpoint>` in the stack file's text, touching one line."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"^\s*fabric:endpoints:\s*$", line)), None)
    if start is None:
        raise FabricError(f"no fabric:endpoints section to pin {endpoint} in; add the endpoint first")
    indent = len(lines[start]) - len(lines[start].lstrip())
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        flow = re.match(rf"^(\s*{re.escape(endpoint)}:\s*\{{)(.*)(\}}\s*(#.*)?\n?)$", line)
        if flow:
            body = re.sub(r",?\s*model:\s*(\"[^\"]*\"|'[^']*'|[^,}]+)", "", flow.group(2)).rstrip()
            if model is not None:
                body = f'{body}, model: "{model}"'
            lines[i] = flow.group(1) + body + flow.group(3)
            return "".join(lines)
    raise FabricError(f"fabric:endpoints.{endpoint} is not a one-line mapping ({{instanceType: ..., ...}}); pin it by hand")


def _validated(text: str, env: str, path: Path) -> StackSettings:
    return StackSettings.from_config(env, (yaml.safe_load(text) or {}).get("config") or {}, str(path))


def promote(address: str, source: str, target: str, endpoint: str | None = None, root: Path | None = None) -> PromotionResult:
    src_registry, dst_registry = open_registry(source), open_registry(target)
    version = src_registry.get(address)
    settings = load_stack(target, root)
    endpoint = endpoint or version.name
    if endpoint not in settings.endpoints:
        raise FabricError(f"stacks/Pulumi.{target}.yaml has no fabric:endpoints.{endpoint}; add it before promoting")
    if settings.promote_from and settings.promote_from != source:
        raise PromotionRefused(f"stack {target} promotes from {settings.promote_from} (fabric:promoteFrom), not {source}")
    origin = f"{source}/{version.address}"
    candidate = replace(version, lineage=replace(version.lineage, promoted_from=origin))
    budget = settings.endpoints[endpoint]
    pinned = settings.model_copy(update={"endpoints": {**settings.endpoints, endpoint: budget.model_copy(update={"model": version.address})}})
    violations = evaluate(PolicyInput(target, pinned, [], {endpoint: candidate}), only=EVIDENCE_RULES)
    if violations:
        detail = "; ".join(f"{v.rule}: {v.subject} {v.message}" for v in violations)
        raise PromotionRefused(f"promotion of {origin} to {target} refused by policy: {detail}")

    path = stack_file(target, root)
    before = path.read_text()
    previous = settings.endpoints[endpoint].model
    after = pin_in_stack_text(before, endpoint, version.address)
    _validated(after, target, path)  # the file `pulumi up` reads must stay valid
    digests = _digest(version.path)
    evidence = {"p99_ms": version.latency.get("p99_ms"), "latency_budget_ms": budget.latency_budget_ms,
                "approvals": list(version.lineage.approvals), "rules": EVIDENCE_RULES, "sha256": digests}  # fmt: skip
    with dst_registry.stage() as staged:
        for name in digests:
            shutil.copy2(version.path / name, staged / name)
        copied = dst_registry.register(
            version.name, staged, replace(version.lineage, parent=origin, promoted_from=origin, stack=target),
            version.metrics, version.latency, alias="champion",
        )  # fmt: skip
    if _digest(copied.path) != digests:
        raise FabricError(f"{copied.address} in {target}: artifact bytes differ from {origin}; promotion aborted")
    if copied.address != version.address:
        # the pin names the target's own version number
        after = pin_in_stack_text(before, endpoint, copied.address)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(after)
    os.replace(tmp, path)
    record = {"from": origin, "to": f"{target}/{copied.address}", "endpoint": endpoint, "by": actor(), "at": now(),
              "previous": previous, "evidence": evidence}  # fmt: skip
    dst_registry.add_event(copied.address, "promoted", record)
    src_registry.add_event(version.address, "promoted_to", record)
    return PromotionResult(endpoint, origin, f"{target}/{copied.address}", previous, str(path), evidence)


def rollback(target: str, endpoint: str, root: Path | None = None) -> PromotionResult:
    """Restore the pin that the last promotion into `target` replaced."""
    registry = open_registry(target)
    settings = load_stack(target, root)
    current = settings.endpoints.get(endpoint)
    if current is None or current.model is None:
        raise FabricError(f"stacks/Pulumi.{target}.yaml pins no model for {endpoint}; nothing to roll back")
    version: ModelVersion = registry.get(current.model)
    promotions = [e for e in registry.events(version.name, version.version) if e["kind"] == "promoted"]
    if not promotions:
        raise FabricError(f"{target}/{current.model} was not promoted by fabric; pin the previous version by hand")
    previous = promotions[-1].get("previous")
    path = stack_file(target, root)
    after = pin_in_stack_text(path.read_text(), endpoint, previous)
    _validated(after, target, path)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(after)
    os.replace(tmp, path)
    record = {"endpoint": endpoint, "from": current.model, "to": previous, "by": actor(), "at": now()}
    registry.add_event(version.address, "promotion_rolled_back", record)
    if previous:
        registry.set_alias(previous, "champion", reason=f"rollback of {current.model}")
    return PromotionResult(endpoint, f"{target}/{current.model}", f"{target}/{previous}", current.model, str(path), {})
