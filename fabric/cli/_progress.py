"""A rich progress display for the lifecycle's `Progress` hooks (stderr, so --json stays clean)."""

from __future__ import annotations

from types import TracebackType

from fabric.search import TrialSummary


class RichProgress:
    def __init__(self, enabled: bool = True) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.enabled = enabled
        self.console = Console(stderr=True, log_path=False)
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not enabled,
            transient=False,
        )
        self.search_task = None
        self.counts = {"complete": 0, "pruned": 0}
        self.best: float | None = None

    def __enter__(self) -> RichProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.__exit__(kind, exc, tb)

    def stage(self, name: str, detail: str = "") -> None:
        if self.search_task is not None:
            self.bar.update(self.search_task, completed=self.bar.tasks[self.search_task].total)
        if name == "search":
            self.search_task = self.bar.add_task("search", total=100, detail=detail)
        else:
            self.search_task = None
            if self.enabled:
                self.console.log(f"[bold]{name}[/bold] {detail}")

    def trial(self, summary: TrialSummary, elapsed_s: float, budget_s: float | None) -> None:
        if self.search_task is None:
            return
        key = "complete" if summary.state == "complete" else "pruned"
        self.counts[key] = self.counts.get(key, 0) + 1
        if summary.value is not None:
            self.best = summary.value if self.best is None else self.best
        detail = f"{self.counts['complete']} complete, {self.counts['pruned']} pruned; last {summary.family} {summary.state}"
        done = 100 * min(1.0, elapsed_s / budget_s) if budget_s else self.bar.tasks[self.search_task].completed + 1
        self.bar.update(self.search_task, completed=done, detail=detail)
