"""Waiting for a cluster's first worker: `wait_for_workers`, called by `study.run` right after
`ray.init` and before the resources are checked.

An autoscaling cluster can be ready before its workers are: `ray up` returns when the head is up,
and the heads here have 0 CPUs, while the spot GPU worker still boots, pulls the image and starts
Ray (KubeRay submits a RayJob once all its pods are ready, but a worker preempted just then is
replaced by a node that must do the same). A study started then would see only the head and stop
with "the largest node of the cluster has 0 CPUs". With an address given, the study instead
polls the cluster until one alive node can hold one trial (its CPUs, and its GPUs when they are
asked for explicitly; `auto` GPUs take whatever the cluster has), and gives up, in one line, when
the time is up.

The clock, the sleep and the node listing are passed in, so the rule has tests of its own without
a cluster; `ray.nodes` is what the study passes.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

# Long enough for a cloud GPU node to boot, pull a multi-GB image and join (`--wait-for-workers`
# raises it); short enough that a cluster that will never have such a node fails within the hour.
DEFAULT_WAIT_SECONDS = 900
POLL_SECONDS = 2.0
PROGRESS_SECONDS = 30.0


class WorkersMissing(RuntimeError):
    """No node of the cluster could hold one trial when the wait was over: one line, exit status 2."""


def wait_seconds(text: str) -> int:
    """The `--wait-for-workers` value: whole seconds, 0 or more (argparse turns the error into one line)."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; give whole seconds >= 0 (0 = do not wait)")
    return int(text)


def _say(line: str) -> None:
    print(line, flush=True)


def _largest(nodes: list[dict]) -> tuple[float, float, int]:
    """(most CPUs, most GPUs, alive nodes) over the alive nodes of a `ray.nodes()` listing."""
    alive = [node.get("Resources", {}) for node in nodes if node.get("Alive")]
    return (max((r.get("CPU", 0.0) for r in alive), default=0.0),
            max((r.get("GPU", 0.0) for r in alive), default=0.0), len(alive))


def can_hold(nodes: list[dict], cpus: float, gpus: float) -> bool:
    """Is there one alive node with at least `cpus` CPUs and `gpus` GPUs? (A trial runs on one node.)"""
    return any(node.get("Alive") and node.get("Resources", {}).get("CPU", 0.0) >= cpus
               and node.get("Resources", {}).get("GPU", 0.0) >= gpus for node in nodes)


def _need(cpus: float, gpus: float) -> str:
    return f"{cpus:g} CPU{'s' * (cpus != 1)}" + (f" and {gpus:g} GPU{'s' * (gpus != 1)}" if gpus else "")


def _have(nodes: list[dict]) -> str:
    most_cpus, most_gpus, alive = _largest(nodes)
    return f"the largest node has {most_cpus:g} CPUs and {most_gpus:g} GPUs ({alive} alive node{'s' * (alive != 1)})"


def wait_for_workers(cpus: float, gpus: float | str, seconds: float, nodes: Callable[[], list[dict]], *,
                     say: Callable[[str], None] = _say, poll_seconds: float = POLL_SECONDS,
                     progress_seconds: float = PROGRESS_SECONDS, clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once `nodes()` lists an alive node that can hold one trial (`cpus` CPUs; `gpus` GPUs
    unless "auto"), polling every `poll_seconds` for at most `seconds`. 0 waits not at all: the
    study's own resource check then says what is missing.

    Says nothing if such a node is there at once; otherwise one line with what it waits for, a
    progress line every `progress_seconds`, and one when the node has come. Raises WorkersMissing,
    naming what a trial needs and what the largest node has, when `seconds` have passed.
    """
    if seconds <= 0:
        return
    gpus = 0.0 if gpus == "auto" else float(gpus)
    listing = nodes()
    if can_hold(listing, cpus, gpus):
        return
    started = clock()
    say(f"waiting up to {seconds:g} s for a Ray node that can hold one trial ({_need(cpus, gpus)}); "
        f"now {_have(listing)}")
    next_progress = started + progress_seconds
    while clock() - started < seconds:
        sleep(min(poll_seconds, max(0.0, started + seconds - clock())))
        listing = nodes()
        if can_hold(listing, cpus, gpus):
            say(f"a node that can hold a trial joined after {clock() - started:.0f} s; {_have(listing)}")
            return
        if clock() >= next_progress:
            say(f"still waiting ({clock() - started:.0f} of {seconds:g} s) for a node with {_need(cpus, gpus)}; "
                f"{_have(listing)}")
            next_progress += progress_seconds
    raise WorkersMissing(
        f"--wait-for-workers: no node of the cluster could hold one trial after {seconds:g} s: a trial needs "
        f"{_need(cpus, gpus)} on one node, but {_have(listing)}. Check that workers are starting "
        f"(`ray status`, the autoscaler's log), or wait longer with --wait-for-workers SECONDS")
