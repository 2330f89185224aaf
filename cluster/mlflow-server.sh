#!/usr/bin/env bash
# The MLflow tracking server the study logs to: a database backend store, an artifact store
# served through the server (clients need no storage credentials), an explicit bind address, and
# MLflow's basic authentication whenever the server listens beyond loopback.
#
#   cluster/mlflow-server.sh                        # SQLite under ./mlflow-server, 127.0.0.1:5000, no login
#   MLFLOW_HOST=10.0.0.5 MLFLOW_SERVER_DIR=/var/lib/mlflow cluster/mlflow-server.sh
#                                                   # basic auth; admin password generated on first start
#   MLFLOW_HOST=0.0.0.0 MLFLOW_BACKEND_STORE_URI=postgresql://mlflow@db:5432/mlflow PGPASSFILE=~/.pgpass \
#   MLFLOW_ARTIFACTS_DESTINATION=s3://my-bucket/mlflow cluster/mlflow-server.sh
#
# Only the study's driver writes to it (one Tune callback on the driver, DESIGN.md §3), so a SQLite
# backend is safe with one server worker, on a local disk: SQLite's file locking is unreliable on
# NFS/SMB/Lustre and the script refuses such a directory. Use PostgreSQL/MySQL for a long-lived or
# shared server. MLflow 3 refuses ./mlruns file stores. Extra arguments go to `mlflow server`.
#
# Secrets never reach a command line or the log: the backend URI is handed to MLflow through its
# environment (MLFLOW_BACKEND_STORE_URI), the echoed URI hides any password, and the auth secrets
# come from the environment or from files. Keep database passwords out of the URI altogether:
# PostgreSQL's PGPASSWORD / PGPASSFILE (~/.pgpass) work with a password-less URI.
#
# Environment:
#   MLFLOW_SERVER_DIR             the SQLite files, artifacts and auth files (./mlflow-server); local disk
#   MLFLOW_BACKEND_STORE_URI      database URI (default sqlite:///<MLFLOW_SERVER_DIR>/mlflow.db)
#   MLFLOW_ARTIFACTS_DESTINATION  artifact store: a directory, s3://, gs://, ... (<MLFLOW_SERVER_DIR>/artifacts)
#   MLFLOW_HOST                   interface to bind (127.0.0.1; 0.0.0.0 or a private IP to serve other machines)
#   MLFLOW_PORT                   port (5000); a Kubernetes/Docker link value (tcp://10.0.0.1:5000, injected
#                                 into pods by a Service named `mlflow`) is ignored with a note
#   MLFLOW_WORKERS                server workers (1 for SQLite, else 4)
#   MLFLOW_ALLOWED_HOSTS          Host headers accepted *in addition to* MLflow's defaults (localhost,
#                                 127.0.0.1, [::1] on any port, private IPs), e.g. "mlflow:5000,mlflow.*"
#                                 (MLflow's DNS-rebinding guard: without it a name gets 403)
#   MLFLOW_AUTH                   auto (default: basic unless bound to loopback) | basic | none (loopback
#                                 only; e.g. behind an authenticating reverse proxy on the same host)
#   basic auth (MLflow's `--app-name basic-auth`; clients send MLFLOW_TRACKING_USERNAME/_PASSWORD):
#   MLFLOW_AUTH_ADMIN_USERNAME    admin user created on first start (admin)
#   MLFLOW_AUTH_ADMIN_PASSWORD    its password, or MLFLOW_AUTH_ADMIN_PASSWORD_FILE (a file holding it;
#                                 default <MLFLOW_SERVER_DIR>/admin-password, generated if missing, mode 600)
#   MLFLOW_FLASK_SERVER_SECRET_KEY  CSRF key, or MLFLOW_FLASK_SERVER_SECRET_KEY_FILE (default
#                                 <MLFLOW_SERVER_DIR>/flask-secret-key, generated if missing)
#   MLFLOW_AUTH_DATABASE_URI      users and permissions (default sqlite:///<MLFLOW_SERVER_DIR>/basic_auth.db)
#   MLFLOW_AUTH_DEFAULT_PERMISSION  what a logged-in user may do by default (READ; NO_PERMISSIONS, EDIT, MANAGE)
#   MLFLOW_AUTH_CACHE_SECONDS     how long a worker trusts a checked password (60; 0: hash every request).
#                                 Each check is a deliberately slow PBKDF2 hash (0.1-5 s measured here),
#                                 and the driver sends a request per logged batch; a changed password
#                                 takes up to this long to reach every worker
#   MLFLOW_AUTH_CONFIG_PATH       your own basic_auth.ini instead of the one written here
set -euo pipefail

die() { echo "mlflow-server.sh: error: $*" >&2; exit 1; }
note() { echo "mlflow-server.sh: $*" >&2; }

umask 077  # the auth database, the generated secrets and the SQLite store: owner only
dir=${MLFLOW_SERVER_DIR:-$PWD/mlflow-server}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
backend=${MLFLOW_BACKEND_STORE_URI:-sqlite:///$dir/mlflow.db}
artifacts=${MLFLOW_ARTIFACTS_DESTINATION:-$dir/artifacts}
host=${MLFLOW_HOST:-127.0.0.1}
port=${MLFLOW_PORT:-5000}
if [[ "$port" =~ ^tcp://.*:([0-9]+)$ ]]; then
  # Kubernetes sets <SERVICE>_PORT=tcp://<ip>:<port> for every Service in the namespace (service
  # links), so a Service named `mlflow` hands the server a URL where it expects a port number.
  note "ignoring MLFLOW_PORT=$port (a Kubernetes service link, not a setting); using 5000"
  port=5000
fi
[[ "$port" =~ ^[0-9]+$ ]] || die "MLFLOW_PORT must be a port number, not '$port'"
case "$backend" in
  sqlite:*) workers=${MLFLOW_WORKERS:-1} ;;
  *) workers=${MLFLOW_WORKERS:-4} ;;
esac

redact() {  # a URI with its password replaced: scheme://user:***@host/...
  sed -E 's#^([A-Za-z0-9+.-]+://[^:/@]+):[^@/]*@#\1:***@#' <<<"$1"
}

network_fs() {  # DIR: prints the filesystem type if DIR is on a network/cluster filesystem
  local type
  type=$(stat -f -c %T "$1" 2>/dev/null) || return 1
  case "$type" in
    nfs* | smb* | cifs | lustre | gpfs | beegfs | ceph* | glusterfs | fuse* | 9p | afs | panfs | wekafs | v9fs)
      echo "$type" ;;
    *) return 1 ;;
  esac
}

sqlite_dir() {  # URI: the directory of a sqlite:/// database, nothing for other databases
  [[ "$1" == sqlite:///* ]] && dirname "${1#sqlite:///}"
}

loopback=
case "$host" in 127.* | localhost | ::1 | "[::1]") loopback=1 ;; esac
auth=${MLFLOW_AUTH:-auto}
case "$auth" in
  auto) if [[ -n "$loopback" ]]; then auth=none; else auth=basic; fi ;;
  basic) ;;
  none) [[ -n "$loopback" ]] || die "MLFLOW_AUTH=none on $host: an open server beyond loopback lets anyone" \
          "read and write runs. Use basic auth (the default), or bind 127.0.0.1 behind an authenticating proxy." ;;
  *) die "MLFLOW_AUTH must be auto, basic or none, not '$auth'" ;;
esac

auth_db=${MLFLOW_AUTH_DATABASE_URI:-sqlite:///$dir/basic_auth.db}
databases=("$backend")
[[ "$auth" == basic ]] && databases+=("$auth_db")
for uri in "${databases[@]}"; do
  db_dir=$(sqlite_dir "$uri") || continue
  mkdir -p "$db_dir"
  if fs=$(network_fs "$db_dir"); then
    die "$db_dir is on a $fs filesystem: SQLite's locking is unreliable there and the store can be" \
        "corrupted. Put MLFLOW_SERVER_DIR on a local disk, or use MLFLOW_BACKEND_STORE_URI=postgresql://..."
  fi
done

secret_from() {  # VAR FILE_VAR DEFAULT_FILE: export VAR from itself, from a file, or a new generated file
  local var=$1 file_var=$2 default=$3 file
  secret_file=
  [[ -n "${!var:-}" ]] && { export "${var?}"; return; }
  file=${!file_var:-$default}
  secret_file=$file
  if [[ ! -s "$file" ]]; then
    [[ -z "${!file_var:-}" ]] || die "$file_var=$file is missing or empty"
    python -c 'import secrets; print(secrets.token_urlsafe(32))' >"$file"
    note "generated $file (mode 600)"
  fi
  printf -v "$var" '%s' "$(<"$file")"
  export "${var?}"
}

args=(--serve-artifacts --artifacts-destination "$artifacts" --host "$host" --port "$port" --workers "$workers")
if [[ "$auth" == basic ]]; then
  python -c 'import flask_wtf' 2>/dev/null ||
    die "MLflow's basic auth needs Flask-WTF: pip install 'mlflow[auth]'"
  secret_from MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_AUTH_ADMIN_PASSWORD_FILE "$dir/admin-password"
  password_file=$secret_file
  secret_from MLFLOW_FLASK_SERVER_SECRET_KEY MLFLOW_FLASK_SERVER_SECRET_KEY_FILE "$dir/flask-secret-key"
  export MLFLOW_AUTH_ADMIN_USERNAME=${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
  if [[ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]]; then
    export MLFLOW_AUTH_CONFIG_PATH=$dir/basic_auth.ini
    cat >"$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = $auth_db
admin_username = $MLFLOW_AUTH_ADMIN_USERNAME
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_SECONDS:-60}
EOF
  fi
  args+=(--app-name basic-auth)
fi

# MLflow's --allowed-hosts replaces its defaults: keep them, so 127.0.0.1, localhost (an SSH tunnel,
# `kubectl port-forward`) and private IPs still work next to the names added here.
if [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]]; then
  # MLflow 3.17's defaults (mlflow.server.security_utils.get_default_allowed_hosts; a test compares them)
  defaults="localhost,127.0.0.1,[::1],0.0.0.0,localhost:*,127.0.0.1:*,[[]::1]:*,0.0.0.0:*,192.168.*,10.*"
  defaults+=$(printf ',172.%d.*' {16..31})",fc00:*,fd00:*"
  args+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS,$defaults")
fi

# The backend URI goes through the environment: `mlflow server` reads MLFLOW_BACKEND_STORE_URI and
# hands it to its workers the same way, so a password in it never shows in `ps`.
export MLFLOW_BACKEND_STORE_URI=$backend
login="no login (bound to loopback)"
if [[ "$auth" == basic ]]; then
  login="basic auth, admin user $MLFLOW_AUTH_ADMIN_USERNAME"
  if [[ -n "$password_file" ]]; then
    login+=" (its first-start password is in $password_file)"
  fi
fi
note "backend $(redact "$backend"), artifacts $(redact "$artifacts"), http://$host:$port, $login"
exec mlflow server "${args[@]}" "$@"
