"""The cluster files: they parse, they call the real entrypoint, and every flag they pass exists.

The shell scripts also run here against stand-ins for `ray`, `srun`, `scontrol` and `python` that
record their arguments, so the exact study command each script builds is parsed by the study's
own argument parser (and SLURM's requeue path is exercised: a requeued job resumes the study).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from study.run import build_parser

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "cluster"
SHELL_FILES = ("submit.sh", "slurm.sbatch", "mlflow-server.sh", "local-cluster.sh")
ENTRYPOINT = ("python", "-m", "study.run")


def _options() -> set[str]:
    return {option for action in build_parser()._actions for option in action.option_strings}


def study_commands(text: str) -> list[list[str]]:
    """Every `python -m study.run ...` command in a shell text, comments and continuations removed."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    commands = []
    for match in re.finditer(r"python(?:\s+-u)?\s+-m\s+study\.run\b([^\n;&|']*)", joined):
        commands.append(shlex.split(match.group(1).replace('"', "")))
    return commands


def _check_flags(tokens: list[str], where: str) -> None:
    options = _options()
    flags = [t.split("=", 1)[0] for t in tokens if t.startswith("--")]
    assert flags, f"{where}: the study command passes no flags"
    unknown = [f for f in flags if f not in options]
    assert not unknown, f"{where}: flags {unknown} do not exist in `python -m study.run` ({sorted(options)})"


def test_the_entrypoint_module_is_the_real_cli():
    import study.run

    assert callable(study.run.main)
    assert {"--space", "--storage-path", "--tracking-uri", "--output-dir", "--resume"} <= _options()


@pytest.mark.parametrize("name", SHELL_FILES)
def test_shell_scripts_parse(name):
    path = CLUSTER / name
    completed = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert path.read_text().startswith("#!"), f"{name} has no shebang"
    if name.endswith(".sh"):
        assert path.stat().st_mode & stat.S_IXUSR, f"{name} is not executable"


@pytest.mark.parametrize("name", ("submit.sh", "slurm.sbatch", "kuberay-rayjob.yaml"))
def test_files_call_the_study_with_existing_flags(name):
    text = (CLUSTER / name).read_text()
    if name.endswith(".yaml"):
        text = yaml.safe_load(text)["spec"]["entrypoint"]
    commands = study_commands(text)
    assert commands, f"{name} does not run `python -m study.run`"
    for tokens in commands:
        _check_flags(tokens, name)
        for required in ("--space", "--storage-path", "--tracking-uri", "--output-dir", "--data-dir"):
            assert required in tokens, f"{name}: the study command lacks {required}"


def test_kuberay_rayjob_manifest():
    manifest = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob"
    spec = manifest["spec"]
    [tokens] = study_commands(spec["entrypoint"])
    args = build_parser().parse_args([t for t in tokens if not t.startswith("$")])
    assert args.space == "full" and args.output_dir.startswith("/shared/")
    assert args.storage_path.startswith("/shared/") and args.tracking_uri.startswith("http")
    # a retry of the same entrypoint resumes the study whose record is on the shared volume
    assert f"{args.output_dir}/studies/{args.name}.json" in spec["entrypoint"] and "--resume" in spec["entrypoint"]
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] and "STUDY_CODE_VERSION" in runtime_env["env_vars"]
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    gpu_groups = [g for g in cluster["workerGroupSpecs"]
                  if any("nvidia.com/gpu" in c["resources"]["limits"] for c in g["template"]["spec"]["containers"])]
    assert gpu_groups, "no GPU worker group"
    for pod in [head["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]:
        mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert "/shared" in mounts, "every pod mounts the shared volume"


def test_cluster_launcher_config_is_valid_for_ray():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
    validate_config(prepare_config(config))  # Ray's own schema and checks, as `ray up` runs them
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    gpu_types = [t for t, c in types.items() if c["node_config"]["InstanceType"].startswith(("g", "p"))]
    assert gpu_types and config["head_node_type"] not in gpu_types
    assert config["file_mounts"]["~/curriculum-study"] == "."
    assert any("pip install" in c and "curriculum-study" in c for c in config["setup_commands"])
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert starts.count("RAY_AUTH_MODE=token") == 2 and "~/.ray/auth_token" in config["file_mounts"]
    assert "--dashboard-host=127.0.0.1" in starts


# ---------------------------------------------------------------------------------------------
# The scripts, run against recording stand-ins

# Each call is one file (concurrent calls never interleave), named to sort in call order.
RECORDER = """#!/usr/bin/env bash
python3 - "$0" "$@" <<'EOF'
import json, os, sys, time
os.makedirs(os.environ["FAKE_LOG"], exist_ok=True)
with open(os.path.join(os.environ["FAKE_LOG"], f"{time.time_ns()}-{os.getpid()}.json"), "w") as f:
    json.dump({"cmd": os.path.basename(sys.argv[1]), "argv": sys.argv[2:],
               "auth": os.environ.get("RAY_AUTH_MODE")}, f)
EOF
"""


def _fake_bin(tmp_path: Path, scripts: dict[str, str]) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(RECORDER + body)
        path.chmod(0o755)
    return bin_dir


def _calls(log: Path, cmd: str | None = None) -> list[dict]:
    paths = sorted(log.iterdir(), key=lambda p: int(p.name.split("-")[0])) if log.exists() else []
    calls = [json.loads(p.read_text()) for p in paths]
    return [c for c in calls if cmd is None or c["cmd"] == cmd]


def _env(tmp_path: Path, bin_dir: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "STUDY_", "SLURM_"))}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_LOG=str(tmp_path / "calls"), HOME=str(tmp_path / "home"))
    env.update(extra)
    return env


def _parse_study(argv: list[str]):
    assert argv[:3] == list(ENTRYPOINT) or argv[:4] == ["python", "-u", "-m", "study.run"], argv
    rest = argv[3:] if argv[1] == "-m" else argv[4:]
    _check_flags(rest, "the executed command")
    return build_parser().parse_args(rest)


def test_submit_sh_submits_the_study_as_a_ray_job(tmp_path):
    bin_dir = _fake_bin(tmp_path, {"ray": ""})
    env = _env(tmp_path, bin_dir, RAY_API_SERVER_ADDRESS="http://10.0.0.1:8265",
               MLFLOW_TRACKING_URI="http://10.0.0.1:5000", STUDY_SHARED="/nfs/study", STUDY_NAME="my-study",
               STUDY_CHECKPOINT_SECONDS="30")
    completed = subprocess.run(["bash", str(CLUSTER / "submit.sh"), "--datasets", "mnist", "--asha"],
                               env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    [call] = _calls(tmp_path / "calls", "ray")
    argv = call["argv"]
    assert argv[:2] == ["job", "submit"] and call["auth"] == "token"
    options = dict(zip(argv, argv[1:]))
    assert options["--address"] == "http://10.0.0.1:8265"
    assert options["--working-dir"] == str(REPO)
    assert options["--submission-id"].startswith("my-study-")
    runtime_env = json.loads(options["--runtime-env-json"])
    assert {".git", "runs/", "data/", "*.db"} <= set(runtime_env["excludes"])
    assert runtime_env["env_vars"]["STUDY_CHECKPOINT_SECONDS"] == "30"
    version = runtime_env["env_vars"]["STUDY_CODE_VERSION"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    assert version.startswith(head.stdout.strip()) if head.returncode == 0 else version == "unknown"
    args = _parse_study(argv[argv.index("--") + 1:])
    assert (args.space, args.name, args.output_dir, args.storage_path, args.tracking_uri) == (
        "full", "my-study", "/nfs/study/runs", "/nfs/study/ray", "http://10.0.0.1:5000")
    assert args.datasets == "mnist" and args.asha and not args.resume and args.data_dir == "/nfs/study/data"


def test_submit_sh_takes_object_store_storage_and_refuses_missing_settings(tmp_path):
    bin_dir = _fake_bin(tmp_path, {"ray": ""})
    env = _env(tmp_path, bin_dir, MLFLOW_TRACKING_URI="http://10.0.0.1:5000",
               STUDY_OUTPUT_DIR="/home/ray/runs", STUDY_STORAGE_PATH="s3://bucket/study/ray", STUDY_SPACE="smoke")
    completed = subprocess.run(["bash", str(CLUSTER / "submit.sh"), "--resume"], env=env,
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    argv = _calls(tmp_path / "calls", "ray")[0]["argv"]
    assert "STUDY_CHECKPOINT_SECONDS" not in json.loads(dict(zip(argv, argv[1:]))["--runtime-env-json"])["env_vars"]
    args = _parse_study(argv[argv.index("--") + 1:])
    assert args.storage_path == "s3://bucket/study/ray" and args.space == "smoke" and args.resume
    assert args.data_dir == "/home/ray/runs/data"
    assert dict(zip(argv, argv[1:]))["--address"] == "http://127.0.0.1:8265"

    env.pop("MLFLOW_TRACKING_URI")
    completed = subprocess.run(["bash", str(CLUSTER / "submit.sh")], env=env, capture_output=True, text=True)
    assert completed.returncode != 0 and "MLFLOW_TRACKING_URI" in completed.stderr
    env.update(MLFLOW_TRACKING_URI="http://x:5000")
    env.pop("STUDY_STORAGE_PATH")
    completed = subprocess.run(["bash", str(CLUSTER / "submit.sh")], env=env, capture_output=True, text=True)
    assert completed.returncode != 0 and "STUDY_SHARED" in completed.stderr
    assert len(_calls(tmp_path / "calls", "ray")) == 1  # nothing submitted without them


SLURM_FAKES = {
    # `srun ... hostname --ip-address` answers an IP; `srun ... ray start --block` blocks like Ray does.
    "srun": 'case " $* " in *" hostname "*) echo "10.0.0.1 fe80::1";; *" ray start "*) exec sleep 120;; esac\n',
    "scontrol": 'if [ "$1 $2" = "show hostnames" ]; then printf "%s\\n" ${FAKE_NODES:-node1 node2 node3}; fi\n',
    "ray": 'case "$1" in status) printf " 1 node_a\\n 1 node_b\\n 1 node_c\\n";; '
           'get-auth-token) mkdir -p "$HOME/.ray" && echo token > "$HOME/.ray/auth_token";; esac\n',
    # the study: finishes at once, or (FAKE_STUDY_WAIT) runs until interrupted like Tune does
    "python": 'if [ -n "$FAKE_STUDY_WAIT" ]; then trap \'kill $!; exit 130\' INT; sleep 60 & wait; fi\n',
}


def _sbatch(tmp_path: Path, env: dict, *args: str, signal_after_start: int | None = None):
    process = subprocess.Popen(["bash", str(CLUSTER / "slurm.sbatch"), *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        if signal_after_start is not None:
            deadline = time.time() + 30
            while not _calls(tmp_path / "calls", "python") and time.time() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
            process.send_signal(signal_after_start)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, output


def test_slurm_script_starts_ray_runs_the_study_and_resumes_when_requeued(tmp_path):
    bin_dir = _fake_bin(tmp_path, SLURM_FAKES)
    shared = tmp_path / "shared"
    env = _env(tmp_path, bin_dir, SLURM_JOB_ID="4242", SLURM_JOB_NODELIST="node[1-3]", SLURM_CPUS_PER_TASK="16",
               SLURM_GPUS_PER_TASK="4", SLURM_SUBMIT_DIR=str(REPO), STUDY_SHARED=str(shared),
               MLFLOW_TRACKING_URI="http://10.0.0.5:5000")
    status, output = _sbatch(tmp_path, env, "--datasets", "mnist")
    assert status == 0, output
    log = tmp_path / "calls"
    assert (tmp_path / "home/.ray/auth_token").exists()  # a token made where every node reads it
    starts = [c["argv"] for c in _calls(log, "srun") if "start" in c["argv"]]
    head = next(a for a in starts if "--head" in a)
    workers = next(a for a in starts if "--head" not in a)
    assert {"-w", "node1"} <= set(head) and "--port=6379" in head and "--num-gpus=4" in head
    assert "--temp-dir=/tmp/ray-4242-0" in head and "--block" in head and "--dashboard-host=127.0.0.1" in head
    assert "--nodes=2" in workers and "--exclude=node1" in workers and "--address=10.0.0.1:6379" in workers
    assert all(c["auth"] == "token" for c in _calls(log, "srun"))
    [study] = _calls(log, "python")
    args = _parse_study(["python", *study["argv"]])
    assert (args.name, args.address, args.output_dir, args.storage_path, args.data_dir, args.datasets) == (
        "full-slurm-4242", "10.0.0.1:6379", f"{shared}/runs", f"{shared}/ray", f"{shared}/data", "mnist")
    assert not args.resume

    # Requeued (preempted, restarted): the study's record exists, so the same job resumes it.
    (shared / "runs/studies").mkdir(parents=True)
    (shared / "runs/studies/full-slurm-4242.json").write_text("{}")
    shutil.rmtree(log)
    status, output = _sbatch(tmp_path, {**env, "SLURM_RESTART_COUNT": "1"})
    assert status == 0, output
    [study] = _calls(log, "python")
    args = _parse_study(["python", *study["argv"]])
    assert args.resume and args.name == "full-slurm-4242" and "resuming" in output
    assert any("--temp-dir=/tmp/ray-4242-1" in c["argv"] for c in _calls(log, "srun"))


def test_slurm_script_stops_the_study_and_requeues_before_the_time_limit(tmp_path):
    bin_dir = _fake_bin(tmp_path, SLURM_FAKES)
    env = _env(tmp_path, bin_dir, SLURM_JOB_ID="77", SLURM_JOB_NODELIST="node1", FAKE_NODES="node1",
               SLURM_SUBMIT_DIR=str(REPO),
               STUDY_SHARED=str(tmp_path / "shared"), MLFLOW_TRACKING_URI="http://10.0.0.5:5000",
               FAKE_STUDY_WAIT="1")
    started = time.time()
    status, output = _sbatch(tmp_path, env, signal_after_start=signal.SIGUSR1)
    assert time.time() - started < 30, "the signal did not stop the study"
    assert status == 130, output
    assert "requeueing job 77" in output
    assert ["requeue", "77"] in [c["argv"] for c in _calls(tmp_path / "calls", "scontrol")]
    starts = [c["argv"] for c in _calls(tmp_path / "calls", "srun") if "start" in c["argv"]]
    assert len(starts) == 1  # one node: a head, no worker step


def test_mlflow_server_recipe(tmp_path):
    bin_dir = _fake_bin(tmp_path, {"mlflow": ""})
    env = _env(tmp_path, bin_dir, MLFLOW_SERVER_DIR=str(tmp_path / "srv"))
    completed = subprocess.run(["bash", str(CLUSTER / "mlflow-server.sh")], env=env, capture_output=True,
                               text=True, timeout=30)
    assert completed.returncode == 0, completed.stderr
    argv = _calls(tmp_path / "calls", "mlflow")[0]["argv"]
    options = dict(zip(argv, argv[1:]))
    assert argv[0] == "server" and "--serve-artifacts" in argv
    assert options["--backend-store-uri"] == f"sqlite:///{tmp_path}/srv/mlflow.db"  # a database, never ./mlruns
    assert options["--artifacts-destination"] == f"{tmp_path}/srv/artifacts"
    assert (options["--host"], options["--port"], options["--workers"]) == ("127.0.0.1", "5000", "1")

    env.update(MLFLOW_BACKEND_STORE_URI="postgresql://u@db/mlflow", MLFLOW_HOST="10.0.0.5",
               MLFLOW_ALLOWED_HOSTS="head:5000", MLFLOW_ARTIFACTS_DESTINATION="s3://b/mlflow")
    shutil.rmtree(tmp_path / "calls")
    subprocess.run(["bash", str(CLUSTER / "mlflow-server.sh")], env=env, check=True, timeout=30)
    argv = _calls(tmp_path / "calls", "mlflow")[0]["argv"]
    options = dict(zip(argv, argv[1:]))
    assert options["--workers"] == "4" and options["--allowed-hosts"] == "head:5000"
    assert options["--artifacts-destination"] == "s3://b/mlflow" and options["--host"] == "10.0.0.5"


def test_cluster_readme_covers_every_file():
    readme = (CLUSTER / "README.md").read_text()
    for path in CLUSTER.iterdir():
        if path.name != "README.md":
            assert path.name in readme, f"cluster/README.md does not mention {path.name}"
