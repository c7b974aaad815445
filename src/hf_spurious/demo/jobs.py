"""The demo's jobs and how they run: side by side in worker processes, or one after another.

The jobs are independent once the retrieval world is prepared: ``classification`` (its own world and tiny
CLIP), ``clip``, ``vsepp`` and (``--blip``) ``blip``: the retrieval A/B protocol of :mod:`.arms` with the tiny
CLIP, VSE++ and BLIP. Each seeds every step itself, so its numbers depend only on the config and on the torch
threads it runs with (``threads // workers``), never on the order or on which process runs it. Small models use two cores better
as two one-thread processes than as one two-thread process (measured on the demo's CLIP training step:
0.50 s per step in each of two processes side by side, 0.33-0.38 s per step alone with two threads).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .config import DemoConfig, StepTimer
from .report import Visuals

JOBS = ("classification", "clip", "vsepp", "blip")


@dataclass
class JobOutput:
    """What one job hands back: its part of ``results.json``, calibration checks, pictures and step times."""

    name: str
    part: dict[str, Any]
    calibration: list[dict[str, Any]] = field(default_factory=list)
    visuals: Visuals = field(default_factory=Visuals)
    timings: list[dict[str, Any]] = field(default_factory=list)


def threads_per_job(config: DemoConfig) -> int:
    """Torch threads of each job: the demo's threads shared by the workers (at least one)."""
    return max(1, config.threads // max(1, config.workers))


def run_job(name: str, config: DemoConfig, out: Path, echo: bool, data: Any = None) -> JobOutput:
    """Run one job in this process with :func:`threads_per_job` torch threads."""
    from . import blip, classification, retrieval, vsepp  # lazy: the worker imports what its job needs

    torch.set_num_threads(threads_per_job(config))
    timer = StepTimer(echo=echo)
    output = JobOutput(name, {})
    if name == "classification":
        output.part = classification.run_classification(
            config, out, timer, output.calibration, output.visuals
        )
    elif name == "clip":
        output.part = retrieval.run_clip(config, out, timer, data, output.visuals)
    elif name == "vsepp":
        output.part = vsepp.run_vsepp(config, out, timer, data)
    elif name == "blip":
        output.part = blip.run_blip(config, out, timer, data)
    else:
        raise ValueError(f"unknown demo job {name!r}; choose one of {', '.join(JOBS)}")
    output.timings = [{**record, "job": name} for record in timer.records]
    return output


class InProcess(Executor):
    """An executor that runs each job at once, in this process (``workers=1``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # handed to the caller by future.result(), as a pool would
            future.set_exception(error)
        return future


def _init_worker(setup: Callable[[], None] | None) -> None:
    """A fresh worker process: Ctrl-C left to the main process (it stops the workers), no progress bars
    (they would interleave), then the caller's ``setup``."""
    import os
    import signal
    import threading

    import datasets
    import tqdm

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["TQDM_DISABLE"] = "1"  # tqdm's default for bars that do not set ``disable`` themselves
    # tqdm's default lock is a multiprocessing semaphore; a worker stopped mid-job would leave it registered
    # and Python would warn of a leaked semaphore at exit. The worker writes no bars: a thread lock will do.
    tqdm.tqdm.set_lock(threading.RLock())
    datasets.disable_progress_bars()
    if setup is not None:
        setup()


@contextmanager
def job_pool(config: DemoConfig, setup: Callable[[], None] | None = None) -> Iterator[Executor]:
    """Worker processes (spawned: no state inherited) when ``config.workers > 1``, else :class:`InProcess`.

    ``setup`` runs first in every worker (a module-level function: the CLI passes its warning filters). When
    the caller fails or is interrupted, queued jobs are cancelled and running workers stopped at once (a job
    can take minutes; nothing it wrote is lost, as every output is written atomically).
    """
    if config.workers <= 1:
        yield InProcess()
        return
    context = multiprocessing.get_context("spawn")
    others = set(multiprocessing.active_children())  # children not ours: never stopped here
    pool = ProcessPoolExecutor(
        max_workers=config.workers, mp_context=context, initializer=_init_worker, initargs=(setup,)
    )
    try:
        yield pool
    except BaseException:
        # Stop our workers; the pool sees them end, fails the jobs still queued and reaps the processes.
        # Only the pool's own thread waits for them (two threads waiting on one process can miss its exit).
        for worker in set(multiprocessing.active_children()) - others:
            worker.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def worker_config(config: DemoConfig) -> DemoConfig:
    """The config a job runs with: no training progress bars when jobs run side by side (they would interleave)."""
    return replace(config, progress_bars=False) if config.workers > 1 else config
