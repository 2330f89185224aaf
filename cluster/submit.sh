#!/usr/bin/env bash
# Submit the study to a running Ray cluster with Ray Jobs (`ray job submit`).
#
#   RAY_API_SERVER_ADDRESS=http://127.0.0.1:8265 \
#   MLFLOW_TRACKING_URI=http://127.0.0.1:5000 \
#   STUDY_SHARED=/shared/curriculum-study \
#   cluster/submit.sh [more `python -m study.run` flags, e.g. --datasets mnist --asha]
#
# The repository is uploaded as the job's working dir (code only: runs/, data/, .git, databases and
# virtual environments such as .venv/ excluded; Ray refuses uploads over its size limit), so the
# cluster needs the dependencies (the project image, cluster/Dockerfile, or `pip install .` on every
# node) but not this checkout. The driver runs on the head node: Ray Jobs places an entrypoint there
# only while it asks for no resources, and the head is where the study's records, the Optuna
# storage and the MLflow URI (e.g. 127.0.0.1:5000) are; so entrypoint resources are refused below.
# Trials run anywhere in the cluster and write only to --storage-path, which every node must reach at
# the same path (NFS) or as an object store URI (s3://, gs://).
#
# Runs under macOS's /bin/bash 3.2 too: no bash-4 features, and no "${array[@]}" of a possibly empty
# array (before bash 4.4, `set -u` calls an empty array unbound).
#
# Environment:
#   RAY_API_SERVER_ADDRESS  the head's dashboard/job server (default http://127.0.0.1:8265, e.g.
#                           through `ray dashboard cluster.yaml` or an SSH tunnel)
#   MLFLOW_TRACKING_URI     the tracking server as the head node sees it (required; cluster/mlflow-server.sh).
#                           Its credentials are not sent from here (they would show in the job's
#                           runtime env): the driver reads them on the head node, from the environment
#                           `ray start` ran with (MLFLOW_TRACKING_USERNAME/_PASSWORD) or ~/.mlflow/credentials
#   STUDY_SHARED            a directory mounted at the same path on every node (default for the two below)
#   STUDY_OUTPUT_DIR        the driver's study records and Optuna DB (default $STUDY_SHARED/runs);
#                           must outlive the head node for --resume: shared disk, not the head's /tmp
#   STUDY_STORAGE_PATH      Ray Tune results and checkpoints (default $STUDY_SHARED/ray; or s3://bucket/prefix)
#   STUDY_DATA_DIR          torchvision datasets, read by the driver only (default $STUDY_SHARED/data;
#                           add --download to fetch missing ones on the head node)
#   STUDY_SPACE             search space (default full)
#   STUDY_NAME              study name = MLflow experiment (default <space>-<time>); resubmit with the
#                           same name and --resume to continue it after a preemption
#   STUDY_CHECKPOINT_SECONDS  passed to the trials: at most this much work is lost to a preemption (10)
#   STUDY_SUBMIT_ARGS       extra `ray job submit` options, e.g. "--no-wait" (not --entrypoint-num-cpus and
#                           the like: they would move the driver off the head, see above)
#   RAY_AUTH_MODE           token (default): the cluster's token from RAY_AUTH_TOKEN,
#                           RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; "disabled" for an open cluster
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
address=${RAY_API_SERVER_ADDRESS:-http://127.0.0.1:8265}
tracking=${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to the tracking server (see cluster/mlflow-server.sh)}
if [[ "$tracking" =~ ^[a-z]+://[^/]*@ ]]; then  # it would be printed, and stored with the job and the study
  echo "error: MLFLOW_TRACKING_URI must not hold credentials; on the head node put them in" \
       "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or ~/.mlflow/credentials" >&2
  exit 2
fi
if [[ -n "${MLFLOW_TRACKING_PASSWORD:-}" ]]; then
  echo "note: MLFLOW_TRACKING_PASSWORD is not sent with the job; the driver on the head node needs it" \
       "in its own environment or ~/.mlflow/credentials" >&2
fi
if [[ -z "${STUDY_OUTPUT_DIR:-}" || -z "${STUDY_STORAGE_PATH:-}" ]]; then
  : "${STUDY_SHARED:?set STUDY_SHARED (a directory every node mounts) or both STUDY_OUTPUT_DIR and STUDY_STORAGE_PATH}"
fi
output=${STUDY_OUTPUT_DIR:-$STUDY_SHARED/runs}
storage=${STUDY_STORAGE_PATH:-$STUDY_SHARED/ray}
data=${STUDY_DATA_DIR:-${STUDY_SHARED:-$output}/data}
space=${STUDY_SPACE:-full}
stamp=$(date +%Y%m%d-%H%M%S)
name=${STUDY_NAME:-$space-$stamp}
submission=$name
[[ "$name" == *"$stamp" ]] || submission+=-$stamp  # one submission id per submission, resumes included
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}

# The uploaded working dir has no .git: pass the code version for the runs' code_version tag.
version=$(git -C "$repo" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ "$version" != unknown && -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  version+=-dirty
fi
env_vars="\"STUDY_CODE_VERSION\": \"$version\", \"PYTHONUNBUFFERED\": \"1\""
if [[ -n "${STUDY_CHECKPOINT_SECONDS:-}" ]]; then
  env_vars+=", \"STUDY_CHECKPOINT_SECONDS\": \"$STUDY_CHECKPOINT_SECONDS\""
fi
# (a plain string, not a here-document inside $(...), which bash 3.2 can misparse)
runtime_env='{"excludes": [".git", "runs/", "data/", "mlruns/", "mlartifacts/", "mlflow-server/", "*.db",
              "__pycache__/", ".pytest_cache/", ".benchmarks/", "*.egg-info/", "build/", "out/",
              ".venv/", "venv/", ".tox/", ".nox/", ".mypy_cache/", ".ruff_cache/", "node_modules/"],
 "env_vars": {'"$env_vars"'}}'

submit_args=()
read -r -a submit_args <<< "${STUDY_SUBMIT_ARGS:-}"
# Any entrypoint resource (or label selector) makes Ray Jobs schedule the driver like any other actor,
# on a worker when the head has no CPUs (aws-gpu.yaml, the RayJob): away from the study's records.
for arg in ${submit_args[@]+"${submit_args[@]}"} "$@"; do
  case "$arg" in
    --entrypoint-num-cpus* | --entrypoint-num-gpus* | --entrypoint-memory* | --entrypoint-resources* | \
    --entrypoint-label-selector*)
      echo "error: ${arg%%=*} would move the study's driver off the head node (Ray Jobs keeps an entrypoint" \
           "on the head only while it asks for no resources), away from the Optuna storage, study records and" \
           "MLflow URI it uses there; leave it out" >&2
      exit 2 ;;
  esac
done
set -x
ray job submit --address "$address" --submission-id "$submission" \
  --working-dir "$repo" --runtime-env-json "$runtime_env" ${submit_args[@]+"${submit_args[@]}"} -- \
  python -m study.run --space "$space" --name "$name" --output-dir "$output" \
    --storage-path "$storage" --tracking-uri "$tracking" --data-dir "$data" "$@"
