#!/usr/bin/env bash
# scripts/services.sh — private Redis 7, PostgreSQL 15 and nginx instances whose
# whole state (data, pidfiles, logs, ports, password) lives under one folder.
# Never touches the system-wide services. When run as root, PostgreSQL runs as
# the `postgres` (or `hubmeter-pg`) system user; see usage() for the commands.
set -euo pipefail

usage() {
  cat >&2 <<'USAGE'
usage: scripts/services.sh start DIR        start (or reuse) Redis + PostgreSQL
       scripts/services.sh env DIR          print export lines for eval
       scripts/services.sh stop DIR         stop Redis + PostgreSQL
       scripts/services.sh status DIR       exit 0 if both run
       scripts/services.sh nginx-start DIR PORT ROOTDIR
       scripts/services.sh nginx-stop DIR
env: HM_PG_PORT (default 54329), HM_REDIS_PORT (default 63799),
     PG_BINDIR (default /usr/lib/postgresql/15/bin)
prints for eval: HUBMETER_REDIS_URL, HUBMETER_DATABASE_URL
USAGE
  exit 2
}

die() {
  echo "services: $*" >&2
  exit 1
}
log() { echo "services: $*" >&2; }

DEFAULT_PG_PORT=54329
DEFAULT_REDIS_PORT=63799
PG_DB=hubmeter
PG_SUPERUSER=hubmeter
WAIT_SECS=10

# ---------------------------------------------------------------- helpers ---

# set_dir DIR [create]: sets $DIR to the absolute, symlink-free path.
set_dir() {
  local d=$1 create=${2:-}
  [[ -n "$d" ]] || usage
  if [[ -n "$create" ]]; then
    mkdir -p "$d"
  elif [[ ! -d "$d" ]]; then
    DIR=$d
    return 1
  fi
  DIR=$(realpath "$d")
}

# pid_alive PIDFILE NAME: true if PIDFILE holds the pid of a live NAME process.
pid_alive() {
  local pidfile=$1 name=$2 pid
  [[ -s "$pidfile" ]] || return 1
  pid=$(pidfile_pid "$pidfile")
  [[ -n "$pid" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"
}

pidfile_pid() { head -n1 "$1" 2>/dev/null | tr -cd '0-9'; }

# stop_pidfile PIDFILE NAME SIGNAL: signal, wait (bounded), then SIGKILL.
stop_pidfile() {
  local pidfile=$1 name=$2 sig=$3 pid i
  if ! pid_alive "$pidfile" "$name"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(pidfile_pid "$pidfile")
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < WAIT_SECS * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) did not exit after ${WAIT_SECS}s, killing"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$pidfile"
}

# Ports remembered in DIR/ports as KEY=VALUE lines.
ports_get() {
  local key=$1 file="$DIR/ports"
  [[ -f "$file" ]] || return 0
  grep -E "^${key}=[0-9]+$" "$file" | tail -n1 | cut -d= -f2 || true
}

ports_write() {
  local tmp="$DIR/ports.tmp.$$"
  printf 'HM_PG_PORT=%s\nHM_REDIS_PORT=%s\n' "$1" "$2" >"$tmp"
  mv -f "$tmp" "$DIR/ports"
}

check_port() {
  if ! [[ "$1" =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > 65535)); then
    die "invalid port: $1"
  fi
}

lock_dir() {
  exec 9>"$DIR/.services.lock"
  flock -w 120 9 || die "timed out waiting for lock on $DIR"
}

# NOTE: daemons must be started with 9>&- so they do not inherit the lock.

# ------------------------------------------------------------------ redis ---

redis_pidfile() { echo "$DIR/redis/redis.pid"; }

redis_running() { pid_alive "$(redis_pidfile)" redis-server; }

redis_start() {
  local port=$1 i
  mkdir -p "$DIR/redis"
  if redis_running; then
    log "redis already running (pid $(pidfile_pid "$(redis_pidfile)"))"
    return 0
  fi
  rm -f "$(redis_pidfile)"
  redis-server --daemonize yes \
    --bind 127.0.0.1 --port "$port" --protected-mode yes \
    --dir "$DIR/redis" --databases 1024 \
    --appendonly yes --save '' \
    --pidfile "$(redis_pidfile)" --logfile "$DIR/redis/redis.log" \
    </dev/null >/dev/null 9>&- ||
    die "redis-server failed to start, see $DIR/redis/redis.log"
  for ((i = 0; i < WAIT_SECS * 10; i++)); do
    if [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null || true)" == PONG ]] &&
      redis_running; then
      log "redis started on 127.0.0.1:$port"
      return 0
    fi
    if ((i >= 10)) && ! redis_running; then
      break # exited early (e.g. port in use)
    fi
    sleep 0.1
  done
  tail -n 20 "$DIR/redis/redis.log" >&2 2>/dev/null || true
  die "redis did not answer PING on port $port, see $DIR/redis/redis.log"
}

redis_stop() {
  # SIGTERM: redis flushes the AOF and exits (no RDB save: --save '').
  stop_pidfile "$(redis_pidfile)" redis-server TERM
}

# ------------------------------------------------------------- postgresql ---

pg_bindir() {
  local d
  if [[ -n "${PG_BINDIR:-}" ]]; then
    echo "$PG_BINDIR"
    return
  fi
  if [[ -x /usr/lib/postgresql/15/bin/pg_ctl ]]; then
    echo /usr/lib/postgresql/15/bin
    return
  fi
  d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null |
    sort -V | tail -n1 || true)
  if [[ -n "$d" ]]; then
    echo "$d"
  elif command -v pg_config >/dev/null 2>&1; then
    pg_config --bindir
  else
    die "PostgreSQL server binaries not found (install postgresql or set PG_BINDIR)"
  fi
}

# Sets PG_OSUSER: the OS user running PostgreSQL ("" = current user).
pg_osuser() {
  PG_OSUSER=
  ((EUID == 0)) || return 0
  if id -u postgres >/dev/null 2>&1; then
    PG_OSUSER=postgres
  else
    if ! id -u hubmeter-pg >/dev/null 2>&1; then
      useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin hubmeter-pg
    fi
    PG_OSUSER=hubmeter-pg
  fi
}

# as_pg CMD...: run CMD as the PostgreSQL OS user, from / (cwd may be private).
as_pg() {
  if [[ -n "$PG_OSUSER" ]]; then
    (cd / && runuser -u "$PG_OSUSER" -- "$@")
  else
    "$@"
  fi
}

# Sets PGDATA; with create, prepares it (symlink to /var/tmp when needed).
pg_datadir() {
  local create=${1:-} hash target
  PGDATA="$DIR/pg"
  if [[ -L "$PGDATA" ]]; then
    target=$(readlink "$PGDATA")
    if [[ -n "$create" && ! -d "$target" ]]; then
      mkdir -p "$target"
      chmod 0700 "$target"
      [[ -z "$PG_OSUSER" ]] || chown "$PG_OSUSER:" "$target"
    fi
    PGDATA=$target
    return 0
  fi
  [[ -n "$create" ]] || return 0
  if [[ -d "$PGDATA" ]]; then
    return 0
  fi
  if [[ -n "$PG_OSUSER" ]] && ! as_pg test -x "$DIR"; then
    # DIR is not reachable by the PostgreSQL user (e.g. below /root):
    # keep the cluster in /var/tmp and point DIR/pg at it.
    hash=$(printf '%s' "$DIR" | sha256sum | cut -c1-12)
    target="/var/tmp/hubmeter-pg-$hash"
    if [[ -e "$target" ]]; then
      # Left by an earlier checkout at the same path (DIR/pg is new, so is DIR's password):
      # that cluster is not ours to reuse. Stop it if it still runs, then start afresh.
      log "removing stale postgres data in $target (from an earlier checkout of $DIR)"
      as_pg "$BIN/pg_ctl" stop -D "$target" -m fast -t 20 >/dev/null 2>&1 || true
      rm -rf "$target"
    fi
    mkdir -p "$target"
    chown "$PG_OSUSER:" "$target"
    chmod 0700 "$target"
    ln -sfn "$target" "$PGDATA"
    PGDATA=$target
    log "postgres data in $target (DIR not reachable by $PG_OSUSER)"
  else
    mkdir -p "$PGDATA"
    chmod 0700 "$PGDATA"
    [[ -z "$PG_OSUSER" ]] || chown "$PG_OSUSER:" "$PGDATA"
  fi
  if [[ -n "$PG_OSUSER" ]] && ! as_pg test -w "$PGDATA"; then
    die "$PGDATA is not writable by $PG_OSUSER"
  fi
}

pg_password() {
  local file="$DIR/pg.password" chars
  if [[ ! -s "$file" ]]; then
    chars=$(LC_ALL=C tr -dc 'A-Za-z0-9' < <(head -c 4096 /dev/urandom))
    (
      umask 077
      printf '%s\n' "${chars:0:32}" >"$file"
    )
  fi
  chmod 0600 "$file"
  head -n1 "$file"
}

pg_running() {
  [[ -f "$PGDATA/PG_VERSION" ]] || return 1
  as_pg "$BIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1
}

# Port of the running postmaster (line 4 of postmaster.pid).
pg_running_port() { sed -n 4p "$PGDATA/postmaster.pid" 2>/dev/null | tr -cd '0-9'; }

pg_initdb() {
  local pw=$1 pwfile
  [[ -f "$PGDATA/PG_VERSION" ]] && return 0
  log "initdb in $PGDATA"
  # The password file must be readable by the PostgreSQL user.
  pwfile=$(as_pg mktemp)
  printf '%s\n' "$pw" >"$pwfile"
  if ! as_pg "$BIN/initdb" -D "$PGDATA" -U "$PG_SUPERUSER" --pwfile="$pwfile" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C >"$DIR/pg.initdb.log" 2>&1; then
    rm -f "$pwfile"
    cat "$DIR/pg.initdb.log" >&2
    die "initdb failed"
  fi
  rm -f "$pwfile"
  as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<'CONF'

# ---- hubmeter private instance (scripts/services.sh) ----
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
CONF
}

pg_start() {
  local port=$1 pw
  pw=$(pg_password)
  pg_datadir create
  if pg_running; then
    log "postgres already running (port $(pg_running_port))"
  else
    pg_initdb "$pw"
    # The log file is opened here (as the caller) and inherited by the
    # server, so it works even when the server user cannot reach DIR.
    if ! as_pg "$BIN/pg_ctl" start -w -t 60 -D "$PGDATA" \
      -o "-p $port -c listen_addresses=127.0.0.1" >>"$DIR/pg.log" 2>&1 </dev/null 9>&-; then
      tail -n 20 "$DIR/pg.log" >&2 || true
      die "postgres failed to start, see $DIR/pg.log"
    fi
    log "postgres started on 127.0.0.1:$port"
  fi
  port=$(pg_running_port)
  pg_create_db "$port" "$pw"
  PG_PORT=$port
}

pg_create_db() {
  local port=$1 pw=$2 exists
  exists=$(PGPASSWORD=$pw PGCONNECT_TIMEOUT=10 "$BIN/psql" -X -q -t -A \
    -h 127.0.0.1 -p "$port" -U "$PG_SUPERUSER" -d postgres \
    -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") ||
    die "cannot connect to postgres on port $port"
  if [[ "$exists" != 1 ]]; then
    PGPASSWORD=$pw PGCONNECT_TIMEOUT=10 "$BIN/psql" -X -q \
      -h 127.0.0.1 -p "$port" -U "$PG_SUPERUSER" -d postgres \
      -c "CREATE DATABASE $PG_DB" >/dev/null
    log "created database $PG_DB"
  fi
}

pg_stop() {
  local pid
  [[ -f "$PGDATA/PG_VERSION" ]] || return 0
  pg_running || return 0
  if ! as_pg "$BIN/pg_ctl" stop -w -t 30 -m fast -D "$PGDATA" >/dev/null 2>&1; then
    pid=$(pidfile_pid "$PGDATA/postmaster.pid")
    if [[ -n "$pid" ]]; then
      log "pg_ctl stop failed, sending SIGQUIT to postmaster $pid"
      kill -QUIT "$pid" 2>/dev/null || true
      sleep 1
    fi
  fi
}

# ------------------------------------------------------------------ nginx ---

nginx_pidfile() { echo "$DIR/nginx/nginx.pid"; }

# nginx_user ROOTDIR: prints the worker user that can read every file of ROOTDIR.
nginx_user() {
  local root=$1 u
  for u in www-data nobody; do
    id -u "$u" >/dev/null 2>&1 || continue
    if (cd / && runuser -u "$u" -- test -r "$root" -a -x "$root") &&
      [[ -z "$(cd / && runuser -u "$u" -- find "$root" \( ! -readable -o \
        \( -type d ! -executable \) \) -print -quit 2>/dev/null || echo x)" ]]; then
      echo "$u"
      return 0
    fi
  done
  echo root
}

nginx_start() {
  local port=$1 root=$2 ndir="$DIR/nginx" userline="" u code i
  check_port "$port"
  [[ -d "$root" ]] || die "ROOTDIR $root is not a directory"
  root=$(realpath "$root")
  nginx_stop
  mkdir -p "$ndir/tmp"
  : >"$ndir/access.log" # each nginx-start begins with an empty access log
  if ((EUID == 0)); then
    u=$(nginx_user "$root")
    if [[ "$u" == root ]]; then
      userline="user root;"
    else
      userline="user $u;"
    fi
  fi
  local echo_module=/usr/lib/nginx/modules/ngx_http_echo_module.so
  # The Git LFS batch API of acme/code.git (its object is a static file): the download
  # link points back at whoever asked, the gateway included (X-Forwarded-Host).
  local lfs_batch="" oid
  if [[ -f "$root/acme/code.git/lfs/oid" ]]; then
    oid=$(tr -cd '0-9a-f' <"$root/acme/code.git/lfs/oid")
    lfs_batch="        location = /acme/code.git/info/lfs/objects/batch {
            default_type application/vnd.git-lfs+json;
            echo_read_request_body;
            echo '{\"transfer\":\"basic\",\"objects\":[{\"oid\":\"$oid\",\"size\":2000000,\"actions\":{\"download\":{\"href\":\"http://\$http_x_forwarded_host/acme/code.git/lfs/objects/$oid\"}}}]}';
        }"
  fi
  cat >"$ndir/nginx.conf" <<CONF
# generated by scripts/services.sh nginx-start
load_module $echo_module;
$userline
worker_processes 1;
pid "$ndir/nginx.pid";
error_log "$ndir/error.log" warn;

events {
    worker_connections 256;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    # What the upstream received, for tests: credentials must never arrive here.
    log_format upstream_view '\$request \$status \$body_bytes_sent '
                             'auth="\$http_authorization" xkey="\$http_x_api_key" '
                             'xff="\$http_x_forwarded_for" via="\$http_via"';
    access_log "$ndir/access.log" upstream_view;
    sendfile on;
    tcp_nopush on;
    etag on;
    server_tokens off;
    client_body_temp_path "$ndir/tmp/client_body";
    proxy_temp_path "$ndir/tmp/proxy";
    fastcgi_temp_path "$ndir/tmp/fastcgi";
    uwsgi_temp_path "$ndir/tmp/uwsgi";
    scgi_temp_path "$ndir/tmp/scgi";

    # A Hugging Face hub answers a client that accepts Xet file info with that info (and
    # Xet headers) instead of the file.
    map \$http_accept \$wants_xet_info {
        default 0;
        "~*application/vnd\\.xet-fileinfo\\+json" 1;
    }

    server {
        listen 127.0.0.1:$port;
        server_name localhost;
        root "$root";

        # readiness probe of scripts/services.sh; kept out of access.log
        location = /__services_probe {
            access_log off;
            return 204;
        }

        # Fixtures of the gateway's end-to-end tests (a hub's behaviours).
        # A download that redirects to "storage" with Xet hints, as a Hugging Face hub does.
        location = /acme/redirected/resolve/main/config.json {
            add_header X-Xet-Hash abc123 always;
            add_header Link '<http://127.0.0.1/cas/token>; rel="xet-auth"' always;
            add_header X-Repo-Commit 0123456789abcdef always;
            add_header X-Linked-Size 22 always;
            return 302 /cdn/config.json;
        }
        location /cdn/ {
            alias "$root/acme/model/resolve/main/";
            add_header X-Xet-Hash abc123 always;
        }
$lfs_batch
        # A Xet-backed file: Xet file info for clients that accept it, else the bytes.
        location = /acme/xetmodel/resolve/main/model.bin {
            error_page 418 = @xet_info;
            if (\$wants_xet_info) {
                return 418;
            }
            alias "$root/acme/model/resolve/main/model.bin";
            add_header X-Repo-Commit 0123456789abcdef always;
        }
        location @xet_info {
            default_type application/vnd.xet-fileinfo+json;
            add_header X-Xet-Hash 0f1e2d3c4b5a69788796a5b4c3d2e1f0 always;
            add_header X-Linked-Size 3145739 always;
            add_header Link '<http://127.0.0.1:9/api/models/acme/xetmodel/xet-read-token/main>; rel="xet-auth", <http://127.0.0.1:9/api/reconstructions/0f1e2d3c>; rel="xet-reconstruction-info"' always;
            return 200 '{"hash":"0f1e2d3c4b5a69788796a5b4c3d2e1f0","file_size":3145739}';
        }
        location = /acme/model/api/redirect {
            return 302 /cdn/config.json;
        }
        location = /loop/resolve/x {
            return 302 /loop/resolve/x;
        }
        # Echoes a request body (POST/PUT API calls).
        location = /api/echo {
            client_body_buffer_size 8m;
            client_max_body_size 8m;
            client_body_in_single_buffer on;
            echo_read_request_body;
            echo_request_body;
        }
        # A chunked response (no Content-Length).
        location = /api/chunked {
            echo "first part";
            echo_flush;
            echo "second part";
        }
        # Answers its head only after 2 s (first-byte timeout).
        location = /api/slow {
            echo_sleep 2;
            echo late;
        }
    }
}
CONF
  if ! nginx -p "$ndir/" -e "$ndir/error.log" -c "$ndir/nginx.conf" \
    -g 'daemon on;' </dev/null >/dev/null 2>"$ndir/start.err" 9>&-; then
    cat "$ndir/start.err" >&2
    die "nginx failed to start"
  fi
  for ((i = 0; i < WAIT_SECS * 10; i++)); do
    code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port/__services_probe" || true)
    if [[ "$code" == 204 ]]; then
      echo "$port" >"$ndir/port"
      log "nginx serving $root on 127.0.0.1:$port (${userline:-current user})"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$ndir/error.log" >&2 2>/dev/null || true
  die "nginx did not answer on port $port within ${WAIT_SECS}s"
}

nginx_stop() {
  # SIGQUIT: graceful shutdown of master and workers.
  stop_pidfile "$(nginx_pidfile)" nginx QUIT
}

# ------------------------------------------------------------------- main ---

cmd=${1:-}
[[ -n "$cmd" ]] || usage
shift

case "$cmd" in
start)
  (($# == 1)) || usage
  set_dir "$1" create
  lock_dir
  BIN=$(pg_bindir)
  pg_osuser
  pg_port=${HM_PG_PORT:-$(ports_get HM_PG_PORT)}
  pg_port=${pg_port:-$DEFAULT_PG_PORT}
  redis_port=$(ports_get HM_REDIS_PORT)
  if ! redis_running || [[ -z "$redis_port" ]]; then
    redis_port=${HM_REDIS_PORT:-${redis_port:-$DEFAULT_REDIS_PORT}}
  fi
  check_port "$pg_port"
  check_port "$redis_port"
  redis_start "$redis_port"
  ports_write "$pg_port" "$redis_port"
  PG_PORT=$pg_port
  pg_start "$pg_port"
  ports_write "$PG_PORT" "$redis_port"
  ;;
env)
  (($# == 1)) || usage
  set_dir "$1" || die "$1 does not exist (run: scripts/services.sh start $1)"
  pg_port=$(ports_get HM_PG_PORT)
  redis_port=$(ports_get HM_REDIS_PORT)
  [[ -n "$pg_port" && -n "$redis_port" && -s "$DIR/pg.password" ]] ||
    die "no services state in $DIR (run: scripts/services.sh start $1)"
  pw=$(head -n1 "$DIR/pg.password")
  echo "export HUBMETER_REDIS_URL=redis://127.0.0.1:$redis_port/0"
  echo "export HUBMETER_DATABASE_URL=postgresql://$PG_SUPERUSER:$pw@127.0.0.1:$pg_port/$PG_DB"
  ;;
stop)
  (($# == 1)) || usage
  set_dir "$1" || exit 0
  lock_dir
  redis_stop
  BIN=$(pg_bindir)
  pg_osuser
  pg_datadir
  pg_stop
  log "stopped redis and postgres in $DIR"
  ;;
status)
  (($# == 1)) || usage
  rc=0
  if ! set_dir "$1"; then
    echo "redis: stopped"
    echo "postgres: stopped"
    exit 1
  fi
  if redis_running; then
    echo "redis: running (pid $(pidfile_pid "$(redis_pidfile)"), port $(ports_get HM_REDIS_PORT))"
  else
    echo "redis: stopped"
    rc=1
  fi
  BIN=$(pg_bindir)
  pg_osuser
  pg_datadir
  if pg_running; then
    echo "postgres: running (pid $(pidfile_pid "$PGDATA/postmaster.pid"), port $(pg_running_port))"
  else
    echo "postgres: stopped"
    rc=1
  fi
  if [[ -d "$DIR/nginx" ]]; then
    if pid_alive "$(nginx_pidfile)" nginx; then
      echo "nginx: running (pid $(pidfile_pid "$(nginx_pidfile)"), port $(cat "$DIR/nginx/port" 2>/dev/null || echo '?'))"
    else
      echo "nginx: stopped"
    fi
  fi
  exit "$rc"
  ;;
nginx-start)
  (($# == 3)) || usage
  set_dir "$1" create
  lock_dir
  nginx_start "$2" "$3"
  ;;
nginx-stop)
  (($# == 1)) || usage
  set_dir "$1" || exit 0
  lock_dir
  nginx_stop
  ;;
-h | --help | help) usage ;;
*) usage ;;
esac
