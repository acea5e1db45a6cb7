"""A progress bar for long runs (scenarios of a grid, simulations of an OC study):
done, running and failed, on the console through rich; silent when disabled."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

__all__ = ["ProgressBar"]


class ProgressBar:
    """Counts ``done`` units of ``total`` (scenarios, simulations), the tasks in
    flight and the units that failed.

    Examples
    --------
    >>> bar = ProgressBar(10, done=0, enabled=False, label="simulations")
    >>> bar.running(1); bar.update(failed=0, done=5); bar.done
    5
    """

    def __init__(self, total: int, done: int, enabled: bool, label: str = "scenarios"):
        self.enabled, self.done, self.failed, self.in_flight = enabled, done, 0, 0
        if enabled:
            self.bar = Progress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
            )
            self.task = self.bar.add_task("run", total=total, completed=done, status="")
            self.bar.start()

    def running(self, tasks: int) -> None:
        self.in_flight += tasks
        self._show()

    def update(self, failed: int = 0, done: int = 1) -> None:
        """One task finished: ``done`` units, ``failed`` of them not ok."""
        self.done += done
        self.in_flight = max(0, self.in_flight - 1)
        self.failed += int(failed)
        if self.enabled:
            self.bar.advance(self.task, done)
        self._show()

    def _show(self) -> None:
        if self.enabled:
            self.bar.update(self.task, status=f"running {self.in_flight}, failed {self.failed}")

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()
