#!/usr/bin/env bash
# Linux only: it uses setsid, `ps --sid`, /proc and GNU timeout, and refuses to run elsewhere (on
# macOS, try the cluster path on a Linux machine or VM; cluster/submit.sh itself runs on a Mac).
#
# A real two-node Ray cluster and an MLflow tracking server on this machine, to run the cluster
# path (cluster/submit.sh) end to end before using a real cluster. `down` stops exactly what `up`
# started (the sessions it recorded), never other Ray processes on the machine: `ray stop` would.
#
#   cluster/local-cluster.sh up [DIR]     head + worker node (each its own --temp-dir), MLflow server
#   source DIR/env                        RAY_API_SERVER_ADDRESS, MLFLOW_TRACKING_URI, STUDY_SHARED, ...
#   STUDY_SPACE=smoke cluster/submit.sh   the study as a Ray job, its trials on both nodes
#   cluster/local-cluster.sh down [DIR]
#
# DIR (default /tmp/curriculum-cluster) holds the nodes' temp dirs, the MLflow server's SQLite
# store and artifacts, the "shared" storage and the logs; keep it short (Ray's socket paths live
# under it). `down` keeps it: the next `up` serves the same MLflow runs and studies can --resume.
# The dashboard and MLflow bind 127.0.0.1. Token authentication is on: the token comes from
# RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (generated there if missing).
#
# Environment: LOCAL_RAY_PORT (6379), LOCAL_DASHBOARD_PORT (8265), LOCAL_MLFLOW_PORT (5000),
# LOCAL_CPUS_PER_NODE (1: two concurrent trials, one per node), LOCAL_GPUS_PER_NODE (0),
# LOCAL_OBJECT_STORE_BYTES (300000000 per node).
set -euo pipefail
if [[ "$(uname -s)" != Linux ]]; then
  echo "error: local-cluster.sh needs Linux (setsid, ps --sid, /proc, GNU timeout), not $(uname -s)" >&2
  exit 2
fi

cmd=${1:-}
dir=${2:-${LOCAL_CLUSTER_DIR:-/tmp/curriculum-cluster}}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

free_port() { python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

own_sid() { ps -o sid= -p $$ | tr -d ' '; }

session_alive() {  # SID: does a process (zombies aside) of the session remain?
  # shellcheck disable=SC2009  # pgrep -s would count the session's zombies as alive
  ps -o stat= --sid "$1" 2>/dev/null | grep -qv '^Z'
}

stop_sessions() {  # FILE...: terminate every process of the sessions recorded in the FILEs
  local file sid sids=() any
  for file in "$@"; do
    [[ -f "$file" ]] || continue
    sid=$(cat "$file")
    if [[ "$sid" =~ ^[0-9]+$ && "$sid" -gt 1 && "$sid" != "$(own_sid)" ]]; then
      sids+=("$sid")
    fi
  done
  for signal in TERM KILL; do
    for sid in ${sids[@]+"${sids[@]}"}; do
      pkill "-$signal" -s "$sid" 2>/dev/null || true
    done
    for _ in $(seq 20); do  # 10 s to stop gracefully (gcs_server and raylet take a few)
      any=
      for sid in ${sids[@]+"${sids[@]}"}; do
        session_alive "$sid" && any=1
      done
      [[ -z "$any" ]] && break
      sleep 0.5
    done
  done
  rm -f "$@"
}

stop_leftovers() {  # job drivers run in their own session; Ray kills them when the head goes, check
  local pid args
  sleep 1
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [[ "$pid" == "$$" || "$pid" == "$PPID" || "$pid" == "$BASHPID" ]] && continue
    args=$(tr '\0' ' ' < "$proc/cmdline" 2>/dev/null) || continue
    if [[ "$args" == *"$dir/"* && "$args" == *python* ]]; then
      echo "stopping leftover $pid: ${args:0:120}" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

down() {
  [[ -d "$dir" ]] && dir=$(cd "$dir" && pwd)
  stop_sessions "$dir/mlflow.sid" "$dir/worker.sid" "$dir/head.sid"
  stop_leftovers
  rm -f "$dir/env"
  echo "local cluster in $dir stopped" >&2
}

wait_for() {  # SECONDS DESCRIPTION COMMAND...: retry COMMAND once a second
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq "$seconds"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "error: $what not ready after ${seconds}s (logs in $dir)" >&2
  return 1
}

two_nodes_alive() {
  timeout 30 ray list nodes --address "$dashboard" --format json 2>/dev/null |
    python -c 'import json, sys; sys.exit(sum(n["state"] == "ALIVE" for n in json.load(sys.stdin)) != 2)'
}

up() {
  for name in head worker mlflow; do
    if [[ -f "$dir/$name.sid" ]]; then
      echo "error: $dir already holds a local cluster; run: $0 down $dir" >&2
      exit 1
    fi
  done
  mkdir -p "$dir/shared"
  dir=$(cd "$dir" && pwd)
  trap 'echo "error: local cluster failed to start; stopping what started" >&2; down' ERR

  local port=${LOCAL_RAY_PORT:-6379} dash=${LOCAL_DASHBOARD_PORT:-8265} mlport=${LOCAL_MLFLOW_PORT:-5000}
  local cpus=${LOCAL_CPUS_PER_NODE:-1} gpus=${LOCAL_GPUS_PER_NODE:-0}
  local store=${LOCAL_OBJECT_STORE_BYTES:-300000000}
  dashboard=http://127.0.0.1:$dash

  export RAY_AUTH_MODE=token
  if [[ -z "${RAY_AUTH_TOKEN:-}" && -z "${RAY_AUTH_TOKEN_PATH:-}" && ! -s "$HOME/.ray/auth_token" ]]; then
    ray get-auth-token --generate >/dev/null
  fi

  # Each process tree in a session of its own, recorded, so `down` stops exactly these.
  echo "starting the MLflow server on 127.0.0.1:$mlport" >&2
  # shellcheck disable=SC2016  # single quotes meant: $$ is the new session's shell, $0 the file it writes
  MLFLOW_SERVER_DIR=$dir/mlflow MLFLOW_HOST=127.0.0.1 MLFLOW_PORT=$mlport \
    setsid -f bash -c 'echo $$ > "$0"; exec "$1"' "$dir/mlflow.sid" "$repo/cluster/mlflow-server.sh" \
    >"$dir/mlflow.log" 2>&1 </dev/null

  echo "starting the head node (GCS 127.0.0.1:$port, dashboard $dashboard)" >&2
  # shellcheck disable=SC2016  # as above
  setsid --wait bash -c 'echo $$ > "$0"; shift; exec "$@"' "$dir/head.sid" - \
    timeout 300 ray start --head --port="$port" --dashboard-host=127.0.0.1 --dashboard-port="$dash" \
    --ray-client-server-port="$(free_port)" --dashboard-agent-listen-port="$(free_port)" \
    --num-cpus="$cpus" --num-gpus="$gpus" --object-store-memory="$store" \
    --temp-dir="$dir/head" --node-name=local-head --disable-usage-stats \
    >"$dir/head.log" 2>&1 </dev/null

  echo "starting the worker node" >&2
  # shellcheck disable=SC2016  # as above
  setsid --wait bash -c 'echo $$ > "$0"; shift; exec "$@"' "$dir/worker.sid" - \
    timeout 300 ray start --address="127.0.0.1:$port" --dashboard-agent-listen-port="$(free_port)" \
    --num-cpus="$cpus" --num-gpus="$gpus" --object-store-memory="$store" \
    --temp-dir="$dir/worker" --node-name=local-worker --disable-usage-stats \
    >"$dir/worker.log" 2>&1 </dev/null

  wait_for 120 "the Ray job server" timeout 30 ray job list --address "$dashboard"
  wait_for 120 "two alive Ray nodes" two_nodes_alive
  wait_for 120 "the MLflow server" python -c \
    'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' "http://127.0.0.1:$mlport/health"
  trap - ERR

  {
    echo "export RAY_AUTH_MODE=token"
    [[ -n "${RAY_AUTH_TOKEN_PATH:-}" ]] && echo "export RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH"
    echo "export RAY_API_SERVER_ADDRESS=$dashboard"
    echo "export MLFLOW_TRACKING_URI=http://127.0.0.1:$mlport"
    echo "export STUDY_SHARED=$dir/shared"
    echo "export LOCAL_RAY_GCS_ADDRESS=127.0.0.1:$port"
  } >"$dir/env"
  cat >&2 <<EOF
local cluster up: 2 nodes x $cpus CPU, dashboard $dashboard, MLflow http://127.0.0.1:$mlport
  source $dir/env && STUDY_SPACE=smoke $repo/cluster/submit.sh
  $0 down $dir
EOF
}

case "$cmd" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down [DIR]" >&2; exit 2 ;;
esac
