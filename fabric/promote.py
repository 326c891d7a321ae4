"""Environment promotion: an approved model moves from one stack's registry to the next with its
lineage, and the target stack file pins it (a one-line diff that a pull request reviews and that
`pulumi up` then deploys).

Order of effects, so that a refusal or a failure changes nothing (registry, stack file, evidence):
1. evidence: the target's rules that concern a pinned model (FAB002 latency, FAB003 lineage, FAB004
   approvals, FAB009 no pickle) are evaluated with the candidate pinned; any violation refuses;
2. the new stack file text is built and validated through StackSettings, in memory;
3. the source's bytes are checked against the digests recorded when it was registered, copied to a
   staging folder and checked again, then registered in the target registry *without* an alias;
   a sagemaker target also gets them in its bucket and an Approved package in its model package
   group, with the lineage (fabric.backends.sagemaker.registry.publish_promoted);
4. the evidence file (stacks/evidence/<target>/<name>-<version>.json, what `fabric policy check`
   reads where the registry is absent, e.g. in CI) and then the stack file are replaced atomically
   (temp file + rename); the pin is the commit point;
5. the copy becomes the target's champion and the promotion is recorded as events.
Any failure or interruption (Ctrl-C) after 3 withdraws the copy, restores both files and, on
SageMaker, rejects the package and deletes its objects (SageMaker keeps the Rejected package as the
record of the attempt). Only a hard kill between 3 and 4 can leave a trace: an extra version that
nothing pins or aliases (and its package, which a retry of the same number reuses and re-uploads).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from fabric.errors import FabricError
from fabric.policy import evidence
from fabric.policy.rules import PolicyInput, evaluate
from fabric.registry import ModelVersion, actor, now, open_registry
from fabric.spec import StackSettings, load_stack, project_root, stack_file

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


def _source_digests(version: ModelVersion) -> dict[str, str]:
    """sha256 of the source's artifacts, refused where the bytes are not those it was registered with."""
    found = evidence.digests(version.path) if version.path.is_dir() else {}
    for name, meta in sorted(version.artifacts.items()):
        recorded = meta.get("sha256")
        actual = found.get(name)
        if actual is None:
            raise PromotionRefused(f"{version.address}: artifact {name} is missing from {version.path}; promotion refused")
        size = (version.path / name).stat().st_size
        if (recorded is not None and actual != recorded) or size != meta.get("bytes", size):
            raise PromotionRefused(
                f"{version.address}: artifact {name} in {version.path} is not the file registered (sha256 {actual[:12]}, "
                f"registered {str(recorded)[:12]}, {size} bytes vs {meta.get('bytes')}); promotion refused: restore it "
                "or register a new version"
            )
    return {name: found[name] for name in sorted(version.artifacts)}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _restore(path: Path, text: str | None) -> None:
    """Put a file back as it was (absent when `text` is None), writing only where it changed."""
    if text is None:
        path.unlink(missing_ok=True)
    elif not path.exists() or path.read_text() != text:
        _write_atomic(path, text)


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

    root = root or project_root()
    path = stack_file(target, root)
    before = path.read_text()
    previous = settings.endpoints[endpoint].model
    _validated(pin_in_stack_text(before, endpoint, version.address), target, path)  # the file `pulumi up` reads stays valid
    digests = _source_digests(version)
    remote = _remote(settings)  # before the copy: a missing boto3 must not leave one behind
    with dst_registry.stage() as staged:
        for name in digests:
            shutil.copy2(version.path / name, staged / name)
        # no alias yet: until the pin is written, nothing may serve or point at the copy
        copied = dst_registry.register(
            version.name, staged, replace(version.lineage, parent=origin, promoted_from=origin, stack=target),
            version.metrics, version.latency, alias=None,
        )  # fmt: skip
    proof = evidence.evidence_path(root, target, copied.address)
    proof_before = proof.read_text() if proof.exists() else None
    record = {"from": origin, "to": f"{target}/{copied.address}", "endpoint": endpoint, "by": actor(), "at": now(),
              "previous": previous}  # fmt: skip
    checked = {"p99_ms": version.latency.get("p99_ms"), "latency_budget_ms": budget.latency_budget_ms,
               "approvals": list(version.lineage.approvals), "rules": EVIDENCE_RULES, "sha256": digests}  # fmt: skip
    published = False
    try:
        # the registry hashed the copy's bytes as it registered them: no need to read them again
        if {name: meta.get("sha256") for name, meta in copied.artifacts.items()} != digests:
            raise PromotionRefused(f"{copied.address} in {target}: artifact bytes differ from {origin}; promotion refused")
        if remote is not None:
            remote._check_bucket()  # a missing bucket is a plain refusal, nothing to undo
            published = True  # from the first upload on: it may land before an error
            checked["model_package"] = _publish(remote, copied, version)
        # the pin names the target's own version number
        after = pin_in_stack_text(before, endpoint, copied.address)
        _validated(after, target, path)
        _write_atomic(proof, evidence.render(evidence.record(target, copied, digests, {**record, "checked": checked})))
        _write_atomic(path, after)
        dst_registry.set_alias(copied.address, "champion", reason=f"promoted from {origin}")
    except BaseException as error:
        try:
            _restore(path, before)
            _restore(proof, proof_before)
            if published:
                _unpublish(remote, target, copied, origin, error)
        finally:
            dst_registry.withdraw(copied.address)
        raise
    record = {**record, "evidence": {**checked, "file": evidence.relative(root, proof)}}
    dst_registry.add_event(copied.address, "promoted", record)
    src_registry.add_event(version.address, "promoted_to", record)
    return PromotionResult(endpoint, origin, f"{target}/{copied.address}", previous, str(path), record["evidence"])


def _remote(settings: StackSettings) -> Any:
    """The target's managed registry, where promotion must publish too: SageMaker's, else none
    (kubernetes serves from the registry volume, local from the local registry)."""
    if settings.backend != "sagemaker":
        return None
    from fabric.backends import backend_for

    return backend_for(settings)


def _publish(backend: Any, copied: ModelVersion, source: ModelVersion) -> str:
    """Upload the copy to the target's bucket and register it, Approved, in the target's model
    package group with its lineage (naming the approvals FAB004 checked)."""
    from fabric.backends.sagemaker.registry import publish_promoted

    approvers = ", ".join(a.get("by", "?") for a in source.lineage.approvals) or "none required"
    by = f"{approvers}; promoted from {copied.lineage.promoted_from} by {actor()}"
    return publish_promoted(backend.clients, backend.settings.env, copied, backend.image(), by)


def _unpublish(backend: Any, target: str, copied: ModelVersion, origin: str, error: BaseException) -> None:
    """Undo `_publish`; where that fails too, the first error still wins and says what is left."""
    from fabric.backends.sagemaker.registry import withdraw_promoted

    try:
        withdraw_promoted(backend.clients, target, copied, f"promotion of {origin} aborted: {type(error).__name__}: {error}")
    except FabricError as cleanup:
        leftover = f"undoing it on SageMaker failed too ({cleanup}); reject the package of {target}/{copied.address} by hand"
        if isinstance(error, FabricError):
            raise type(error)(f"{error}; {leftover}") from None
        error.add_note(leftover)


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
