#!/usr/bin/env bash
# The MLflow tracking server the study logs to: a database backend store, an artifact store
# served through the server (clients need no storage credentials), and an explicit bind address.
#
#   cluster/mlflow-server.sh                        # sqlite under ./mlflow-server, 127.0.0.1:5000
#   MLFLOW_HOST=10.0.0.5 MLFLOW_PORT=5000 \
#   MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:***@db:5432/mlflow \
#   MLFLOW_ARTIFACTS_DESTINATION=s3://my-bucket/mlflow cluster/mlflow-server.sh
#
# Only the study's driver writes to it (one Tune callback on the driver, DESIGN.md §3), so a
# SQLite backend is safe with one server worker; use PostgreSQL/MySQL for a long-lived shared
# server. MLflow 3 refuses ./mlruns file stores. Extra arguments go to `mlflow server`.
#
# Environment:
#   MLFLOW_SERVER_DIR             where the default SQLite file and artifacts live (./mlflow-server)
#   MLFLOW_BACKEND_STORE_URI      database URI (default sqlite:///<MLFLOW_SERVER_DIR>/mlflow.db)
#   MLFLOW_ARTIFACTS_DESTINATION  artifact store: a directory, s3://, gs://, ... (<MLFLOW_SERVER_DIR>/artifacts)
#   MLFLOW_HOST                   interface to bind (127.0.0.1: the head node's driver and an SSH
#                                 tunnel reach it; bind a private IP to serve other machines)
#   MLFLOW_PORT                   port (5000)
#   MLFLOW_WORKERS                server workers (1 for SQLite, else 4)
#   MLFLOW_ALLOWED_HOSTS          Host headers accepted besides localhost and private IPs, e.g.
#                                 "head-node:5000,mlflow.example.org" (MLflow's DNS-rebinding guard)
set -euo pipefail

dir=${MLFLOW_SERVER_DIR:-$PWD/mlflow-server}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
backend=${MLFLOW_BACKEND_STORE_URI:-sqlite:///$dir/mlflow.db}
artifacts=${MLFLOW_ARTIFACTS_DESTINATION:-$dir/artifacts}
host=${MLFLOW_HOST:-127.0.0.1}
port=${MLFLOW_PORT:-5000}
case "$backend" in
  sqlite:*) workers=${MLFLOW_WORKERS:-1} ;;
  *) workers=${MLFLOW_WORKERS:-4} ;;
esac

args=(--backend-store-uri "$backend" --serve-artifacts --artifacts-destination "$artifacts"
      --host "$host" --port "$port" --workers "$workers")
if [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]]; then
  args+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS")
fi
echo "mlflow server: backend $backend, artifacts $artifacts, http://$host:$port" >&2
exec mlflow server "${args[@]}" "$@"
