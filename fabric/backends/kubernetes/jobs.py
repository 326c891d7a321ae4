"""What a Job's status says, read the way `kubectl wait` does (conditions first, counts second)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Phase = Literal["pending", "running", "complete", "failed"]


@dataclass(frozen=True)
class JobState:
    phase: Phase
    succeeded: int
    failed: int
    active: int
    completions: int
    reason: str = ""

    @property
    def done(self) -> bool:
        return self.phase in ("complete", "failed")

    def describe(self) -> str:
        text = f"{self.phase}: {self.succeeded}/{self.completions} succeeded, {self.active} running, {self.failed} failed"
        return f"{text} ({self.reason})" if self.reason else text


def job_state(job: dict[str, Any]) -> JobState:
    """`job` as the API returns it (a dict: `ApiClient().sanitize_for_serialization` of a V1Job, or JSON)."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    counts = {k: int(status.get(k) or 0) for k in ("succeeded", "failed", "active")}
    completions = int(spec.get("completions") or 1)
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    for kind, phase in (("Failed", "failed"), ("FailureTarget", "failed"), ("Complete", "complete"), ("SuccessCriteriaMet", "complete")):
        if kind in conditions:
            condition = conditions[kind]
            reason = ": ".join(x for x in (condition.get("reason"), condition.get("message")) if x)
            return JobState(phase, completions=completions, reason=reason, **counts)  # type: ignore[arg-type]
    phase: Phase = "running" if counts["active"] or counts["succeeded"] or counts["failed"] else "pending"
    return JobState(phase, completions=completions, **counts)
