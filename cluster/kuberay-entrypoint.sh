#!/usr/bin/env bash
# The entrypoint of cluster/kuberay-rayjob.yaml, run by Ray Jobs on the head pod (from the project
# image, /home/ray/curriculum-study/cluster/). It starts study $STUDY_NAME, or continues it when an
# earlier attempt of the same RayJob (a backoffLimit retry, after a lost head or preempted nodes)
# left it unfinished. A finished study is never resumed or overwritten: the job fails and says so,
# since applying the manifest again under an old name is almost always a forgotten rename.
#
# Environment: STUDY_NAME (required), STUDY_SPACE (full), MLFLOW_TRACKING_URI (required; with
# MLFLOW_TRACKING_USERNAME/_PASSWORD from the Secret curriculum-study-mlflow), STUDY_SHARED (/shared).
# Arguments: more `python -m study.run` flags, e.g. --download --datasets mnist.
set -euo pipefail

name=${STUDY_NAME:?set STUDY_NAME in the RayJob runtimeEnvYAML}
tracking=${MLFLOW_TRACKING_URI:?MLFLOW_TRACKING_URI is not set: create the Secret curriculum-study-mlflow (cluster/README.md)}
shared=${STUDY_SHARED:-/shared}
output=$shared/runs
record=$output/studies/$name.json

resume=()
if [[ -f "$record" ]]; then
  if grep -q '"finished": *"' "$record"; then
    echo "error: study $name in $output has already finished; to start another study give the RayJob" \
         "(and STUDY_NAME) a new name. Its results: MLflow experiment $name at $tracking" >&2
    exit 3
  fi
  echo "study $name in $output is unfinished (an earlier attempt of this RayJob): resuming it"
  resume=(--resume)
fi
exec python -m study.run --space "${STUDY_SPACE:-full}" --name "$name" --output-dir "$output" \
  --storage-path "$shared/ray" --tracking-uri "$tracking" --data-dir "$shared/data" ${resume[@]+"${resume[@]}"} "$@"
