"""`--wait-for-workers`: the study waits for an autoscaling cluster's first worker (study/cluster_wait.py),
and a trial given a GPU that torch cannot use says so (study/trainable.py).

The waiting rule on its own, on a fake clock; then for real: a Ray head with 0 CPUs started here (as
`ray up` and the RayJob leave a cluster), the study launched against it and a worker node joining
20 s later; and, without the worker, the one-line failure once the time is up. Only what a test
started is stopped: the sessions it recorded and processes running from its own directory.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from helpers import REPO, free_port, processes, run_study
from study.cluster_wait import WorkersMissing, wait_for_workers
from study.run import build_parser
from study.trainable import gpu_warning


class GrowingCluster:
    """`ray.nodes()` of a cluster whose head has no CPUs and whose workers join at given times, on a
    fake clock that `sleep` advances."""

    def __init__(self, *joins: tuple[float, dict], dead: tuple[dict, ...] = ()):
        self.now, self.joins, self.dead, self.calls = 0.0, joins, dead, 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds

    def nodes(self) -> list[dict]:
        self.calls += 1
        head = {"Alive": True, "Resources": {"memory": 8e9, "node:__internal_head__": 1.0}}
        return ([head] + [{"Alive": False, "Resources": r} for r in self.dead]
                + [{"Alive": True, "Resources": r} for at, r in self.joins if at <= self.now])


def _wait(cluster: GrowingCluster, cpus=1.0, gpus="auto", seconds=900) -> list[str]:
    lines: list[str] = []
    wait_for_workers(cpus, gpus, seconds, cluster.nodes, say=lines.append, clock=cluster.clock, sleep=cluster.sleep)
    return lines


def test_a_node_already_there_needs_no_wait_and_no_word():
    cluster = GrowingCluster((0, {"CPU": 4.0, "GPU": 1.0}))
    assert _wait(cluster, gpus=1.0) == [] and cluster.now == 0


def test_waits_for_the_worker_saying_so_once_then_every_30_s():
    cluster = GrowingCluster((75, {"CPU": 4.0, "GPU": 1.0}))
    lines = _wait(cluster, cpus=2.0, gpus=0.25)
    assert lines[0] == ("waiting up to 900 s for a Ray node that can hold one trial (2 CPUs and 0.25 GPUs); "
                        "now the largest node has 0 CPUs and 0 GPUs (1 alive node)")
    progress = [line for line in lines if line.startswith("still waiting")]
    assert [re.match(r"still waiting \((\d+) of 900 s\)", line).group(1) for line in progress] == ["30", "60"]
    assert lines[-1] == "a node that can hold a trial joined after 76 s; the largest node has 4 CPUs and 1 GPUs (2 alive nodes)"
    assert len(lines) == 4 and 75 <= cluster.now < 75 + 2  # polled every 2 s, started as soon as it joined


def test_gives_up_in_one_line_naming_what_a_trial_needs_and_what_the_largest_node_has():
    # A CPU node joins, but the trials asked for a GPU explicitly, and no node has both.
    cluster = GrowingCluster((5, {"CPU": 8.0}), (6, {"GPU": 1.0}), dead=({"CPU": 8.0, "GPU": 1.0},))
    with pytest.raises(WorkersMissing) as error:
        _wait(cluster, cpus=2.0, gpus=1.0, seconds=60)
    message = str(error.value)
    assert "\n" not in message and cluster.now == 60  # no later than the time given
    assert message.startswith("--wait-for-workers: no node of the cluster could hold one trial after 60 s: "
                              "a trial needs 2 CPUs and 1 GPU on one node, but the largest node has 8 CPUs and 1 GPUs "
                              "(3 alive nodes)")  # the dead node does not count
    assert "--wait-for-workers SECONDS" in message


def test_auto_gpus_take_any_node_with_the_cpus():
    cluster = GrowingCluster((10, {"CPU": 1.0}))
    assert _wait(cluster, gpus="auto")[-1].startswith("a node that can hold a trial joined after 10 s")


def test_zero_seconds_does_not_wait_or_look():
    """0 = off: the study's own resource check (after this) says what is missing."""
    cluster = GrowingCluster((10, {"CPU": 1.0}))
    assert _wait(cluster, seconds=0) == [] and cluster.calls == 0 and cluster.now == 0


def test_the_flag_refuses_anything_but_whole_seconds(tmp_path, capsys):
    completed = run_study("--output-dir", str(tmp_path / "out"), "--wait-for-workers", "-1", timeout=120)
    assert completed.returncode == 2
    [line] = completed.stderr.splitlines()
    assert line == ("error: argument --wait-for-workers: '-1' is not allowed; give whole seconds >= 0 "
                    "(0 = do not wait) (see python -m study.run --help)")
    assert not (tmp_path / "out").exists()
    for value in ("1.5", "soon", "", "nan"):  # the same parser, in this process
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([f"--wait-for-workers={value}"])
        assert exit_.value.code == 2 and "whole seconds >= 0" in capsys.readouterr().err
    assert build_parser().parse_args(["--wait-for-workers", "0"]).wait_for_workers == 0
    assert build_parser().parse_args([]).wait_for_workers is None  # the default depends on --address


def test_a_trial_given_a_gpu_torch_cannot_use_says_so_in_one_line():
    line = gpu_warning([0], "auto", cuda_available=False)
    assert line.startswith("warning: Ray gave this trial GPU 0 but torch ") and "\n" not in line
    assert "trains on the CPU" in line and "TORCH_CUDA" in line
    assert gpu_warning([], "auto", cuda_available=False) is None  # no GPU asked for
    assert gpu_warning([0], "auto", cuda_available=True) is None
    assert gpu_warning([0], "cpu", cuda_available=False) is None  # CPU asked for; "cuda" fails in train()


# ---------------------------------------------------------------------------------------------
# For real: a 0-CPU head, a worker that joins later

# The smallest real study: one search trial of the baseline, one epoch, no re-runs (cluster/README.md's
# first-run check uses the same flags).
TINY = ("--space", "smoke", "--methods", "baseline", "--num-samples", "1", "--seed-repeats", "0", "--epochs", "1")


def _sessions_and_strays(state_dir: Path, sessions: set[int]) -> list[int]:
    """Live processes this test started: in a session it recorded, or running from its directory."""
    return [pid for pid, session, state, cmdline in processes()
            if pid != os.getpid() and state != "Z" and (session in sessions or f"{state_dir}/" in cmdline)]


class RayNodes:
    """Ray nodes started here with `ray start`, each in a session of its own, with token auth as
    `ray start --head` turns it on (RAY_AUTH_MODE=token, this cluster's own token file)."""

    def __init__(self, state_dir: Path):
        self.state_dir, self.port, self.sessions = state_dir, free_port(), set()
        token = state_dir / "auth_token"
        token.write_text(secrets.token_hex(32))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "STUDY_"))}
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), PYTHONUNBUFFERED="1")

    def start(self, name: str, *args: str) -> None:
        node = subprocess.Popen(
            ["ray", "start", *args, "--node-ip-address=127.0.0.1", f"--temp-dir={self.state_dir / name}",
             f"--dashboard-agent-listen-port={free_port()}", "--object-store-memory=100000000",
             "--disable-usage-stats"],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.sessions.add(node.pid)
        output, _ = node.communicate(timeout=300)
        assert node.returncode == 0, output[-3000:]

    def stop(self) -> list[int]:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in _sessions_and_strays(self.state_dir, self.sessions):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + 15
            while _sessions_and_strays(self.state_dir, self.sessions) and time.time() < deadline:
                time.sleep(0.5)
        return _sessions_and_strays(self.state_dir, self.sessions)


@pytest.fixture
def zero_cpu_head():
    # A short path: Ray's unix sockets live under the nodes' temp dirs (108-byte limit).
    state_dir = Path(tempfile.mkdtemp(prefix="cw-", dir="/tmp"))
    nodes = RayNodes(state_dir)
    try:
        started = time.time()
        nodes.start("head", "--head", f"--port={nodes.port}", "--num-cpus=0", "--num-gpus=0",
                    "--include-dashboard=false", f"--ray-client-server-port={free_port()}")
        print(f"0-CPU head up in {time.time() - started:.0f}s")
        yield nodes
    finally:
        left = nodes.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        assert not left, f"processes left running: {left}"


def _study(nodes: RayNodes, out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "study.run", "--address", f"127.0.0.1:{nodes.port}",
                             "--output-dir", str(out), *TINY, *args], cwd=REPO, env=nodes.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


class Lines:
    """A process's stdout, read as it comes, each line with the time it arrived."""

    def __init__(self, stream):
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend((time.time(), l) for l in stream), daemon=True)
        self.thread.start()

    def first(self, prefix: str, timeout: float) -> float:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for at, line in list(self.lines):
                if line.startswith(prefix):
                    return at
            time.sleep(0.2)
        raise AssertionError(f"no line starting {prefix!r} in {timeout:.0f} s: {self.text()[-3000:]}")

    def text(self) -> str:
        return "".join(line for _, line in self.lines)


@pytest.mark.slow
def test_the_study_waits_for_a_worker_joining_later_and_fails_in_one_line_without_one(zero_cpu_head):
    nodes = zero_cpu_head
    # No worker: one line after the time given, nothing written.
    started = time.time()
    lonely = _study(nodes, nodes.state_dir / "out-lonely", "--wait-for-workers", "10")
    stdout, stderr = lonely.communicate(timeout=300)
    took = time.time() - started
    assert lonely.returncode == 2, stdout[-3000:] + stderr[-3000:]
    [error] = stderr.splitlines()
    assert error.startswith("error: --wait-for-workers: no node of the cluster could hold one trial after 10 s: "
                            "a trial needs 1 CPU on one node, but the largest node has 0 CPUs and 0 GPUs "
                            "(1 alive node)"), error
    assert "waiting up to 10 s for a Ray node that can hold one trial (1 CPU); now the largest node" in stdout
    assert took >= 10 and not (nodes.state_dir / "out-lonely").exists()
    print(f"without a worker: exit 2 after {took:.0f}s")

    # A worker joins 20 s after the study started: the study waits for it, then runs.
    out = nodes.state_dir / "out"
    launched = time.time()
    study = _study(nodes, out, "--name", "waited", "--gpus-per-trial", "1", "--wait-for-workers", "300")
    stdout = Lines(study.stdout)
    try:
        waiting_at = stdout.first("waiting up to 300 s", timeout=240)
        time.sleep(max(0.0, launched + 20 - time.time()))
        joining_at = time.time()
        # 1 GPU: Ray's resource, not a device; on a machine without CUDA the trial trains on the CPU.
        nodes.start("worker", f"--address=127.0.0.1:{nodes.port}", "--num-cpus=2", "--num-gpus=1")
        study.wait(timeout=600)
    finally:
        if study.poll() is None:
            study.kill()
            study.wait()
    stdout.thread.join(timeout=10)
    text, stderr = stdout.text(), study.stderr.read()
    print(f"study ended {time.time() - launched:.0f}s after launch; worker started at {joining_at - launched:.0f}s")
    assert study.returncode == 0, text[-4000:] + stderr[-4000:]
    waits = [line for line in text.splitlines() if line.startswith("waiting up to")]
    assert waits == ["waiting up to 300 s for a Ray node that can hold one trial (1 CPU and 1 GPU); "
                     "now the largest node has 0 CPUs and 0 GPUs (1 alive node)"]
    joined = re.search(r"^a node that can hold a trial joined after (\d+) s; the largest node has 2 CPUs and 1 GPUs "
                       r"\(2 alive nodes\)$", text, re.M)
    assert joined and int(joined.group(1)) >= joining_at - waiting_at - 1, text[-3000:]
    assert len(re.findall(r"^still waiting", text, re.M)) <= int(joined.group(1)) // 30 + 1
    assert text.index("a node that can hold a trial joined") < text.index("study waited: space smoke")
    assert "study waited finished" in text

    # The trial got Ray's GPU; torch here has no CUDA device, so the trial said so in its log.
    import torch

    logs = "".join(p.read_text(errors="replace") for p in (nodes.state_dir / "worker").rglob("worker-*.err"))
    warned = "warning: Ray gave this trial GPU 0 but torch" in logs
    assert warned == (not torch.cuda.is_available()), logs[-3000:]
