"""The cluster path for real: a two-node Ray cluster on this machine, a real MLflow tracking server,
the smoke study submitted with `ray job submit` (cluster/submit.sh), exactly as cluster/README.md
tells a user to do it. Only what the test started is stopped (by the sessions it recorded)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import free_port, processes

REPO = Path(__file__).resolve().parent.parent
LOCAL_CLUSTER = REPO / "cluster" / "local-cluster.sh"
SUBMIT = REPO / "cluster" / "submit.sh"
STUDY = "cluster-smoke"
# A restricted smoke study: every trial needs 1 CPU and each node has 1, so two trials run at once,
# one per node. Trials are made long enough (epochs) that both nodes' trial actors are up before a
# trial ends: with short trials, Tune's actor reuse could run them all on the first actor ready.
# A worker's first trial actor takes ~13 s to start (it imports torch), so each trial must outlast that.
STUDY_ARGS = ("--num-samples", "2", "--seed-repeats", "1", "--methods", "baseline,sharpening",
              "--epochs", "120", "--cpus-per-trial", "1")
# 2 trials per method; then each method's repeat, sharpening's matched baseline and its crossed run
# (sharpening at the baseline's shared values).
SEARCH_TRIALS, REPEAT_TRIALS, CONTROL_TRIALS = 4, 2, 2



def _ours(state_dir: Path, sessions: set[int]) -> list[tuple[int, str]]:
    """Live processes this test started: in a session it recorded, or running from its directory."""
    me = os.getpid()
    return [(pid, cmd) for pid, sid, state, cmd in processes()
            if pid != me and state != "Z" and (sid in sessions or f"{state_dir}/" in cmd)]


@pytest.fixture
def local_cluster():
    # A short path: Ray's unix sockets live under the nodes' temp dirs (108-byte limit).
    state_dir = Path(tempfile.mkdtemp(prefix="cs-", dir="/tmp"))
    token = state_dir / "auth_token"
    token.write_text(secrets.token_hex(32))  # this cluster's own token, not ~/.ray/auth_token
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "STUDY_"))}
    env.update(RAY_AUTH_TOKEN_PATH=str(token), LOCAL_RAY_PORT=str(free_port()),
               LOCAL_DASHBOARD_PORT=str(free_port()), LOCAL_MLFLOW_PORT=str(free_port()), PYTHONUNBUFFERED="1")
    sessions: set[int] = set()
    try:
        started = time.time()
        up = subprocess.run(["bash", str(LOCAL_CLUSTER), "up", str(state_dir)], env=env, capture_output=True,
                            text=True, timeout=400)
        sessions = {int(p.read_text()) for p in state_dir.glob("*.sid")}
        logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(state_dir.glob("*.log")))
        assert up.returncode == 0, up.stdout + up.stderr + logs
        assert len(sessions) == 3, sessions  # head, worker, MLflow server
        for line in (state_dir / "env").read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
        print(f"local cluster up in {time.time() - started:.0f}s")
        yield state_dir, env
    finally:
        started = time.time()
        sessions |= {int(p.read_text()) for p in state_dir.glob("*.sid")}
        down = subprocess.run(["bash", str(LOCAL_CLUSTER), "down", str(state_dir)], env=env, capture_output=True,
                              text=True, timeout=180)
        print(f"local cluster down in {time.time() - started:.0f}s")
        deadline = time.time() + 20
        while _ours(state_dir, sessions) and time.time() < deadline:
            time.sleep(0.5)
        leftovers = _ours(state_dir, sessions)
        for pid, _ in leftovers:  # only if `down` failed: still only our own processes
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(state_dir, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not leftovers, f"`local-cluster.sh down` left processes running: {leftovers}"


def _nodes(env: dict) -> dict[str, str]:
    """local-head / local-worker → node id, from the Ray state API through the dashboard."""
    listed = subprocess.run(["ray", "list", "nodes", "--address", env["RAY_API_SERVER_ADDRESS"], "--format", "json"],
                            env=env, capture_output=True, text=True, timeout=120, check=True)
    alive = [node for node in json.loads(listed.stdout) if node["state"] == "ALIVE"]
    return {"local-head" if node["is_head_node"] else "local-worker": node["node_id"] for node in alive}


def _diagnostics(state_dir: Path, env: dict, nodes: dict, ran_on: set) -> str:
    """Where the trial actors ran and what the worker node logged, for a failed node check."""
    names = {node_id: name for name, node_id in nodes.items()}
    lines = [f"trials ran on {[names.get(n, n) for n in ran_on]}; nodes {nodes}"]
    actors = subprocess.run(["ray", "list", "actors", "--address", env["RAY_API_SERVER_ADDRESS"], "--detail",
                             "--format", "json"], env=env, capture_output=True, text=True, timeout=120)
    try:
        for actor in json.loads(actors.stdout):
            lines.append(f"actor {actor['class_name']} {actor['state']} on {names.get(actor['node_id'])} "
                         f"pid {actor.get('pid')}: {str(actor.get('death_cause'))[:300]}")
    except ValueError:
        lines.append(actors.stderr[-2000:])
    logs = state_dir / "worker" / "session_latest" / "logs"
    for pattern in ("raylet.out", "runtime_env_setup-*.log", "worker-*.err", "python-core-worker-*.log"):
        for path in sorted(logs.glob(pattern))[-3:]:
            lines.append(f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}")
    return "\n".join(lines)


@pytest.mark.slow
def test_study_as_a_ray_job_on_a_two_node_cluster_logs_to_the_tracking_server(local_cluster):
    state_dir, env = local_cluster
    nodes = _nodes(env)
    assert set(nodes) == {"local-head", "local-worker"} and len(set(nodes.values())) == 2, nodes
    assert (state_dir / "head").is_dir() and (state_dir / "worker").is_dir()  # each node its own temp dir

    started = time.time()
    # STUDY_CHECKPOINT_SECONDS=0: every epoch checkpoints, so every trial writes to the shared storage.
    # The storage path is a URI, so Ray Tune goes through pyarrow's filesystems as for s3:// or gs://.
    storage = (state_dir / "shared" / "ray").as_uri()
    job_env = {**env, "STUDY_SPACE": "smoke", "STUDY_NAME": STUDY, "STUDY_CHECKPOINT_SECONDS": "0",
               "STUDY_STORAGE_PATH": storage}
    submitted = subprocess.run(["bash", str(SUBMIT), *STUDY_ARGS], env=job_env, capture_output=True, text=True,
                               timeout=900, cwd=state_dir)
    print(f"ray job submit: {time.time() - started:.0f}s")
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0, output[-6000:]
    assert "succeeded" in output and f"study {STUDY} finished" in output, output[-3000:]

    # The tracking server holds the parent run and every child run, all finished.
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    [parent] = [r for r in runs if r.data.tags.get("role") == "parent"]
    children = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert parent.info.status == "FINISHED"
    assert len([r for r in children if r.data.tags["phase"] == "search"]) == SEARCH_TRIALS
    assert len([r for r in children if r.data.tags["phase"] == "repeat"]) == REPEAT_TRIALS
    assert len([r for r in children if r.data.tags["phase"] == "control"]) == CONTROL_TRIALS
    assert len({r.data.tags["trial_id"] for r in children}) == len(children)
    for run in children:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id and run.info.status == "FINISHED"
        assert tags["outcome"] in ("completed", "diverged") and "val_acc" in run.data.metrics
    # The code version travels with the job (its working dir has no .git).
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert parent.data.tags["code_version"].startswith(head.stdout.strip())
        assert all(r.data.tags["code_version"] == parent.data.tags["code_version"] for r in children)
    # Artifacts went through the server into its artifact store.
    assert {"space", "kernels", "study.json"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert any((state_dir / "mlflow" / "artifacts").rglob("study.json"))

    # Trials ran on both nodes: each run's node_id is the Ray node its trial reported from.
    ran_on = {r.data.tags["node_id"] for r in children}
    assert ran_on == {nodes["local-head"], nodes["local-worker"]}, _diagnostics(state_dir, env, nodes, ran_on)

    # Checkpoints are on the shared storage path, uploaded by the trials themselves from both nodes.
    ray_results = state_dir / "shared" / "ray" / STUDY
    assert sorted(p.name for p in ray_results.iterdir()) == ["digits"]  # one Tune run: search, then re-runs
    node_of_trial = {r.data.tags["trial_id"]: r.data.tags["node_id"] for r in children}
    checkpointed = {c.parent.parent.name for c in ray_results.rglob("checkpoint_*/state.pt")}
    assert checkpointed == set(node_of_trial)
    assert {node_of_trial[t] for t in checkpointed} == {nodes["local-head"], nodes["local-worker"]}
    record = json.loads((state_dir / "shared" / "runs" / "studies" / f"{STUDY}.json").read_text())
    assert record["finished"] and record["tracking_uri"] == env["MLFLOW_TRACKING_URI"]
    assert record["storage_path"] == storage
