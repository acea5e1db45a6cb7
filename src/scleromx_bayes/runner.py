"""Chunks of simulations on any executor: what operating characteristics and
simulation-based calibration share.

Each task is one chunk of simulations whose numbers depend on the task alone (its
seeds travel with it), so the result does not depend on the executor or the number
of workers. With a store, every finished chunk is written at once (a checksummed
file per key) and a rerun reuses it: an interrupted run resumes.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Sequence

import xarray as xr

from .progress import ProgressBar
from .sensitivity.store import Store

__all__ = ["run_chunks"]

# what a chunk returns: per-simulation results, and the reasons of those that failed
Chunk = tuple[xr.Dataset, list[str]]


def run_chunks(
    tasks: Sequence,
    work: Callable[[object], Chunk],
    *,
    sizes: Sequence[int],
    keys: Sequence[str] | None = None,
    store: Store | None = None,
    executor: cf.Executor | None = None,
    progress: bool = False,
    failed: Callable[[xr.Dataset], int] = lambda ds: 0,
) -> list[Chunk]:
    """``work(task)`` for every task, in order of ``tasks``; stored chunks reused.

    ``work`` must be a picklable top-level function when ``executor`` runs in other
    processes. ``sizes`` counts each task's simulations for the progress bar,
    ``failed`` the simulations of a finished chunk that were not ok.
    """
    results: dict[int, Chunk] = {}
    if store is not None:
        for i, key in enumerate(keys):
            loaded = store.load_dataset(key)
            if loaded is not None:
                results[i] = (loaded[0], list(loaded[1]["reasons"]))
    done = sum(sizes[i] for i in results)
    bar = ProgressBar(sum(sizes), done=done, enabled=progress, label="simulations")

    def finish(i: int, result: Chunk) -> None:
        results[i] = result
        if store is not None:
            store.save_dataset(keys[i], result[0], {"reasons": result[1]})
        bar.update(failed=failed(result[0]), done=sizes[i])

    todo = [i for i in range(len(tasks)) if i not in results]
    try:
        if executor is None:
            for i in todo:
                bar.running(1)
                finish(i, work(tasks[i]))
        else:
            futures = {executor.submit(work, tasks[i]): i for i in todo}
            bar.running(len(futures))
            try:
                for fut in cf.as_completed(futures):
                    finish(futures[fut], fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        bar.close()
    return [results[i] for i in range(len(tasks))]
