#!/usr/bin/env bash
# scripts/bench.sh — the benchmark harness (`make bench`). Owns bench/, this
# file and BENCH.md (which it regenerates: header + var/bench/results.md).
#
# In one run, on loopback, it starts under var/bench/:
#   - a private Redis + PostgreSQL (scripts/services.sh, ports 54349 / 63819),
#   - an nginx ORIGIN serving generated files (1 GiB, 64 MiB, 1 KiB),
#   - an nginx REVERSE PROXY in front of it (bench/proxy.conf.in),
#   - hubmeter in front of the same origin (keyed requests: identity + metering),
# measures both proxies (large downloads, small requests, RSS under 2,000 slow
# downloads), reports hubmeter as a ratio of nginx, and stops everything it
# started on exit (trap), also on failure. Every wait is bounded.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "$0")/.."
REPO=$(pwd)
B="$REPO/var/bench"

ORIGIN_PORT=${BENCH_ORIGIN_PORT:-18461}
PROXY_PORT=${BENCH_PROXY_PORT:-18462}
HM_PORT=${BENCH_HM_PORT:-18463}
export HM_PG_PORT=${HM_PG_PORT:-54349}
export HM_REDIS_PORT=${HM_REDIS_PORT:-63819}

BIG_SIZE=$((1024 * 1024 * 1024))
MID_SIZE=$((64 * 1024 * 1024))
SMALL_SIZE=1024
PARALLEL=8        # range streams for the parallel download
REPEAT=${BENCH_REPEAT:-5}          # best of N for the large downloads
WRK_SECS=${BENCH_WRK_SECS:-10}       # measured wrk run (after a 2 s warm-up)
ROUNDS=${BENCH_ROUNDS:-5}           # rounds of the 1 KiB runs (the proxies in turn, median)
WRK_CONNS=64
SLOW_N=${BENCH_SLOW_N:-2000}
SLOW_RATE=32768   # bytes/s per slow client
SLOW_SECS=${BENCH_SLOW_SECS:-30}
CURL_MAX_S=120    # per large download

log() { echo "bench: $*" >&2; }
die() {
  echo "bench: error: $*" >&2
  exit 1
}

# ----------------------------------------------------------- preparation ---

[[ -x bin/hubmeter ]] || die "bin/hubmeter missing (run: make bin/hubmeter)"
for tool in nginx curl taskset cc redis-server; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (run: make deps)"
done
if ! command -v wrk >/dev/null 2>&1; then
  if ((EUID == 0)); then
    log "installing wrk"
    DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y --no-install-recommends wrk \
      </dev/null >"$B.wrk-install.log" 2>&1 ||
      die "apt-get install wrk failed (see $B.wrk-install.log)"
  else
    die "wrk missing; run as root: apt-get install -y wrk"
  fi
fi
(($(nproc) >= 2)) || die "needs at least 2 cores (wrk on core 1, proxies on core 0)"

# File descriptors: 2,000 clients + 2,000 upstream connections per proxy.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
((NOFILE >= 8192)) || die "ulimit -n is $NOFILE; need at least 8192"

mkdir -p "$B"/{www,origin/tmp,proxy/tmp,hubmeter,out}
rm -f "$B"/out/*

# Cleanup: everything this run started, by pid, with bounded waits.
HM_PID=""
SAMPLER_PID=""
stop_pid() { # stop_pid PID SIGNAL NAME
  local pid=$1 sig=$2 name=$3 i
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  log "$name (pid $pid) did not exit after 10 s, killing"
  kill -KILL "$pid" 2>/dev/null || true
}
nginx_stop() { # nginx_stop DIR
  local pidfile="$1/nginx.pid" pid
  [[ -s "$pidfile" ]] || return 0
  pid=$(tr -cd '0-9' <"$pidfile")
  if [[ -n "$pid" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q nginx; then
    stop_pid "$pid" QUIT "nginx $(basename "$1")"
  fi
  rm -f "$pidfile"
}
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [[ -z "$SAMPLER_PID" ]] || stop_pid "$SAMPLER_PID" TERM "rss sampler"
  stop_pid "$HM_PID" TERM hubmeter
  nginx_stop "$B/proxy"
  nginx_stop "$B/origin"
  timeout 90 bash scripts/services.sh stop "$B" >/dev/null 2>&1 ||
    log "services.sh stop failed"
  ((rc == 0)) || log "failed (exit $rc); logs in $B"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Leftovers of an interrupted earlier run (their pidfiles live under var/bench).
nginx_stop "$B/proxy"
nginx_stop "$B/origin"
if [[ -s "$B/hubmeter/hubmeter.pid" ]]; then
  old=$(tr -cd '0-9' <"$B/hubmeter/hubmeter.pid")
  if [[ -n "$old" ]] && tr '\0' ' ' <"/proc/$old/cmdline" 2>/dev/null | grep -q 'hubmeter'; then
    stop_pid "$old" TERM "stale hubmeter"
  fi
  rm -f "$B/hubmeter/hubmeter.pid"
fi
for port in "$ORIGIN_PORT" "$PROXY_PORT" "$HM_PORT"; do
  if ss -Hltn "sport = :$port" | grep -q .; then
    die "port $port is already in use"
  fi
done

# Test files (kept between runs when their size is right), then warmed into the
# page cache so that neither proxy pays for the disk.
make_file() { # make_file PATH SIZE
  local f=$1 size=$2
  if [[ -f "$f" && "$(stat -c %s "$f")" == "$size" ]]; then
    return 0
  fi
  log "generating $f ($size bytes)"
  head -c "$size" /dev/urandom >"$f.tmp"
  mv -f "$f.tmp" "$f"
}
make_file "$B/www/1g.bin" "$BIG_SIZE"
make_file "$B/www/64m.bin" "$MID_SIZE"
make_file "$B/www/1k.bin" "$SMALL_SIZE"
chmod 0644 "$B"/www/*.bin
cat "$B"/www/*.bin >/dev/null

log "building bench/slowclients"
# shellcheck disable=SC2046 # pkg-config prints several words
cc -O2 -Wall -Wextra -o "$B/slowclients" bench/slowclients.c \
  $(pkg-config --cflags --libs libcurl 2>/dev/null || echo -lcurl)

# ---------------------------------------------------------------- servers ---

wait_http() { # wait_http URL EXPECTED_CODE SECONDS
  local url=$1 want=$2 secs=$3 code i
  for ((i = 0; i < secs * 10; i++)); do
    code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" || true)
    [[ "$code" == "$want" ]] && return 0
    sleep 0.1
  done
  return 1
}

nginx_start() { # nginx_start NAME TEMPLATE PORT
  local name=$1 tmpl=$2 port=$3 dir="$B/$1" userline="user root;"
  if id -u www-data >/dev/null 2>&1 &&
    (cd / && runuser -u www-data -- test -r "$B/www/1g.bin"); then
    userline="user www-data;"
  fi
  sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" \
    -e "s|@ROOT@|$B/www|g" -e "s|@NOFILE@|$NOFILE|g" -e "s|@USERLINE@|$userline|g" \
    "$tmpl" >"$dir/nginx.conf"
  nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -t >"$dir/test.log" 2>&1 ||
    {
      cat "$dir/test.log" >&2
      die "nginx $name: bad configuration"
    }
  : >"$dir/error.log"
  nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon on;' \
    </dev/null >/dev/null 2>"$dir/start.err" || {
    cat "$dir/start.err" >&2
    die "nginx $name failed to start"
  }
  wait_http "http://127.0.0.1:$port/1k.bin" 200 10 || die "nginx $name not answering on $port"
  log "nginx $name on 127.0.0.1:$port (pid $(cat "$dir/nginx.pid"))"
}

nginx_pids() { # nginx_pids DIR: master and its workers
  local master
  master=$(tr -cd '0-9' <"$1/nginx.pid" 2>/dev/null || true)
  [[ -n "$master" ]] || return 0
  echo "$master"
  ps -o pid= --ppid "$master" 2>/dev/null | tr -d ' ' || true
}

# What is measured: bin/hubmeter as built from this tree (`make bench` builds it first).
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=""
if [[ -n "$(git status --porcelain -- common gateway meter registry main sql 2>/dev/null || true)" ]]; then
  DIRTY=" + uncommitted changes in the C sources (bin/hubmeter is built from the working tree)"
fi
if [[ -n "$(find common gateway meter registry main sql -newer bin/hubmeter -type f 2>/dev/null | head -n1)" ]]; then
  DIRTY+=" (warning: sources newer than bin/hubmeter; run make bench, not scripts/bench.sh alone)"
fi

# Other load on the machine (e.g. a concurrent `make test`) skews the figures:
# wait (bounded) for a quiet machine, and note the load in the results.
cpu_busy_pct() { # CPU busy over the next second, all cores, in %
  local a b
  a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
    busy = y[1] - x[1]; idle = y[2] - x[2]; printf "%.0f", busy * 100 / (busy + idle + 0.0001) }'
}
QUIET_WAIT=${BENCH_QUIET_WAIT:-60}
BUSY_START=$(cpu_busy_pct)
for ((i = 0; i < QUIET_WAIT && BUSY_START > 15; i += 1)); do
  ((i % 10)) || log "machine busy (${BUSY_START}% CPU used by others); waiting up to ${QUIET_WAIT}s"
  BUSY_START=$(cpu_busy_pct)
done

log "starting Redis + PostgreSQL in $B"
timeout 180 bash scripts/services.sh start "$B" >"$B/services.log" 2>&1 || {
  cat "$B/services.log" >&2
  die "services.sh start failed"
}
eval "$(bash scripts/services.sh env "$B")"
timeout 60 bin/hubmeter migrate >"$B/migrate.log" 2>&1 || {
  cat "$B/migrate.log" >&2
  die "hubmeter migrate failed"
}
if ! timeout 30 bin/hubmeter orgs show bench >/dev/null 2>&1; then
  timeout 30 bin/hubmeter orgs create bench >/dev/null || die "cannot create org bench"
fi
KEY=$(timeout 30 bin/hubmeter keys create bench --name "bench-$(date +%s)" | tail -n1)
[[ -n "$KEY" ]] || die "cannot create an API key"
AUTH="Authorization: Bearer $KEY"
# Quotas on: an org whose plan limits requests, bytes/s and the month far above what the
# benchmark reaches, so every request takes the whole admission path. (No concurrency
# limit: a plan with one needs a Redis slot per download — see README, Quotas.)
if ! timeout 30 bin/hubmeter plans show bench-rate >/dev/null 2>&1; then
  timeout 30 bin/hubmeter plans create bench-rate --requests-per-minute 1000000000 \
    --request-burst 1000000000 --bytes-per-second 100000000000 --byte-burst 100000000000 \
    --monthly-bytes 1000000000000000000 >/dev/null ||
    die "cannot create plan bench-rate"
fi
if ! timeout 30 bin/hubmeter orgs show bench-rate >/dev/null 2>&1; then
  timeout 30 bin/hubmeter orgs create bench-rate --plan bench-rate >/dev/null ||
    die "cannot create org bench-rate"
fi
KEYQ=$(timeout 30 bin/hubmeter keys create bench-rate --name "bench-rate-$(date +%s)" | tail -n1)
[[ -n "$KEYQ" ]] || die "cannot create an API key for bench-rate"
AUTHQ="Authorization: Bearer $KEYQ"

nginx_start origin bench/origin.conf.in "$ORIGIN_PORT"
nginx_start proxy bench/proxy.conf.in "$PROXY_PORT"

HM_RESTARTS=0
HM_NOTES=()
hubmeter_start() {
  HUBMETER_UPSTREAM="http://127.0.0.1:$ORIGIN_PORT" \
    HUBMETER_LISTEN="127.0.0.1:$HM_PORT" \
    HUBMETER_MAX_CONNECTIONS=4000 HUBMETER_MAX_CONNECTIONS_PER_IP=4000 \
    HUBMETER_LOG_LEVEL=warn HUBMETER_INSTANCE_ID=bench \
    bin/hubmeter serve </dev/null >>"$B/hubmeter/hubmeter.log" 2>&1 &
  HM_PID=$!
  echo "$HM_PID" >"$B/hubmeter/hubmeter.pid"
  wait_http "http://127.0.0.1:$HM_PORT/-/healthz" 200 20 || die "hubmeter not answering on $HM_PORT"
  log "hubmeter on 127.0.0.1:$HM_PORT (pid $HM_PID)"
}
# hubmeter_check WHAT: after a benchmark; if hubmeter died, note it and restart.
hubmeter_check() {
  local what=$1 st=""
  if kill -0 "$HM_PID" 2>/dev/null &&
    wait_http "http://127.0.0.1:$HM_PORT/-/healthz" 200 10; then
    return 0
  fi
  if ! kill -0 "$HM_PID" 2>/dev/null; then
    wait "$HM_PID" 2>/dev/null && st=0 || st=$?
    HM_NOTES+=("hubmeter exited during/after **$what** (exit status $st); last log lines: \`$(tail -n 3 "$B/hubmeter/hubmeter.log" | tr '\n`|' ' ""')\`")
  else
    HM_NOTES+=("hubmeter stopped answering /-/healthz after **$what**; it was killed and restarted")
    stop_pid "$HM_PID" KILL hubmeter
  fi
  log "hubmeter down after $what; restarting"
  HM_RESTARTS=$((HM_RESTARTS + 1))
  hubmeter_start
}
: >"$B/hubmeter/hubmeter.log"
hubmeter_start

N_URL="http://127.0.0.1:$PROXY_PORT"
H_URL="http://127.0.0.1:$HM_PORT"
# Quota calls to Redis so far (blocking round trips + pipelined end-of-request calls).
quota_calls() {
  curl -sS -m 5 "$H_URL/-/metrics" |
    awk '/^hubmeter_quota_redis_(calls|sends)_total / { s += $2 } END { printf "%.0f", s }'
}


# Sanity: both proxies return the same bytes as the origin, and hubmeter honours Range.
for u in "$N_URL" "$H_URL"; do
  got=$(curl -sS -m 10 -H "$AUTH" "$u/1k.bin" | sha256sum | cut -c1-64)
  want=$(sha256sum <"$B/www/1k.bin" | cut -c1-64)
  [[ "$got" == "$want" ]] || die "$u/1k.bin does not match the origin's file"
done

# Unpinned by default; `pin CPUS` sets the affinity of both proxies (all threads).
pin() {
  local cpus=$1 p
  for p in $(nginx_pids "$B/proxy"); do taskset -a -p -c "$cpus" "$p" >/dev/null || true; done
  taskset -a -p -c "$cpus" "$HM_PID" >/dev/null || true
}

declare -A R # results: R[metric.proxy]=value

# CPU used by other processes (not this benchmark) during each phase:
# system-wide user+nice+system ticks minus those of everything this run started
# (this shell and its reaped children, nginx origin + proxy, hubmeter, Redis,
# PostgreSQL and its backends).
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)
pid_ticks() { # pid_ticks PID...: utime + stime + cutime + cstime
  local p sum=0 v
  for p in "$@"; do
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
ours_ticks() {
  local pids pm
  pids="$$ $HM_PID $(nginx_pids "$B/origin") $(nginx_pids "$B/proxy")"
  pids+=" $(tr -cd '0-9' <"$B/redis/redis.pid" 2>/dev/null || true)"
  pm=$(head -n1 "$B/pg/postmaster.pid" 2>/dev/null | tr -cd '0-9' || true)
  if [[ -n "$pm" ]]; then
    pids+=" $pm $(ps -o pid= --ppid "$pm" 2>/dev/null | tr '\n' ' ' || true)"
  fi
  # shellcheck disable=SC2086
  pid_ticks $pids
}
# Kernel threads (ksoftirqd, kworkers) mostly do this run's networking: not "others".
kthread_ticks() {
  # shellcheck disable=SC2046
  pid_ticks $(ps -eo pid=,ppid= | awk '$2 == 2 { print $1 }')
}
# user + nice + system + irq + softirq: a task's stime includes the (soft)irq work
# that interrupted it, which /proc/stat books apart.
sys_ticks() { echo $(($(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat) - $(kthread_ticks))); }
# all_ticks: "PID TICKS COMM" for every process (to name the biggest other users in out/cpu.log)
all_ticks() {
  local f
  for f in /proc/[0-9]*/stat; do
    awk '{ c = $0; sub(/^.*\) /, "", c); split(c, a, " "); n = $0; sub(/^[0-9]+ \(/, "", n); sub(/\) .*$/, "", n)
      gsub(/ /, "_", n); print $1, a[12] + a[13] + a[14] + a[15], n }' "$f" 2>/dev/null || true
  done | sort -k1,1
}
SNAP=""
snap() {
  all_ticks >"$B/out/cpu.snap"
  SNAP="$(sys_ticks) $(ours_ticks) $(date +%s.%N)"
}
others_pct() { # others_pct: % of the machine used by other processes since snap
  local now
  now="$(sys_ticks) $(ours_ticks) $(date +%s.%N)"
  {
    echo "snap: $SNAP now: $now (system user+nice+system+irq+softirq ticks minus kernel threads, ours ticks, time)"
    echo "  processes alive at both ends that used the most CPU ticks in between (pid ticks name):"
    join <(all_ticks) "$B/out/cpu.snap" | awk '$2 - $4 > 0 { print "   ", $1, $2 - $4, $3 }' | sort -k2,2nr | head -n 8
  } >>"$B/out/cpu.log"
  awk -v a="$SNAP" -v b="$now" -v hz="$HZ" -v n="$NCPU" 'BEGIN {
    split(a, x, " "); split(b, y, " ")
    o = (y[1] - x[1]) - (y[2] - x[2]); if (o < 0) o = 0
    printf "%.0f", o / hz / n / (y[3] - x[3]) * 100 }'
}

# --------------------------------------------------- a. large downloads ---

single_stream() { # single_stream PROXY URL [CURL ARGS...] -> best MB/s (10^6 B/s)
  local name=$1 url=$2 i out code size speed best=""
  shift 2
  for ((i = 1; i <= REPEAT; i++)); do
    out=$(curl -sS -o /dev/null -m "$CURL_MAX_S" -w '%{http_code} %{size_download} %{speed_download}' \
      "$@" "$url" 2>>"$B/out/$name.single.err") || true
    read -r code size speed <<<"$out"
    echo "run $i: code=$code size=$size speed=$speed" >>"$B/out/$name.single.log"
    if [[ "$code" == 200 && "$size" == "$BIG_SIZE" ]]; then
      speed=$(awk -v s="$speed" 'BEGIN { printf "%.0f", s / 1e6 }')
      if [[ -z "$best" ]] || ((speed > best)); then best=$speed; fi
    fi
  done
  echo "${best:-}"
}

parallel_ranges() { # parallel_ranges PROXY URL [CURL ARGS...] -> best aggregate MB/s
  local name=$1 url=$2 i j chunk from to t0 t1 ok best="" mbps
  shift 2
  chunk=$((BIG_SIZE / PARALLEL))
  for ((i = 1; i <= REPEAT; i++)); do
    t0=$(date +%s.%N)
    for ((j = 0; j < PARALLEL; j++)); do
      from=$((j * chunk))
      to=$((j == PARALLEL - 1 ? BIG_SIZE - 1 : from + chunk - 1))
      curl -sS -o /dev/null -m "$CURL_MAX_S" -r "$from-$to" \
        -w '%{http_code} %{size_download}\n' "$@" "$url" \
        >"$B/out/$name.range.$j" 2>>"$B/out/$name.range.err" &
    done
    wait
    t1=$(date +%s.%N)
    ok=1
    for ((j = 0; j < PARALLEL; j++)); do
      read -r code size <"$B/out/$name.range.$j" || true
      echo "run $i part $j: code=${code:-} size=${size:-}" >>"$B/out/$name.range.log"
      [[ "${code:-}" == 206 && "${size:-}" == "$chunk" ]] || ok=0
    done
    mbps=$(awk -v b="$BIG_SIZE" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.0f", b / (z - a) / 1e6 }')
    echo "run $i: ok=$ok aggregate=${mbps}MB/s" >>"$B/out/$name.range.log"
    if ((ok)) && { [[ -z "$best" ]] || ((mbps > best)); }; then best=$mbps; fi
  done
  echo "${best:-}"
}

# The proxies take turns, one run each per round, so that the machine's drift (10-20 % from
# one minute to the next here) falls on all of them alike; the best run of each counts.
larger() { # larger A B -> the larger number (either may be empty)
  if [[ -z "$1" ]]; then echo "$2"; elif [[ -z "$2" ]] || (($1 >= $2)); then echo "$1"; else echo "$2"; fi
}

snap
log "a. 1 GiB single stream (best of $REPEAT, proxies in turn)"
R[single.origin]=$(single_stream origin "http://127.0.0.1:$ORIGIN_PORT/1g.bin")
qcalls=0
declare -A LARGE_ROUNDS=() # per-round figures, for the details
in_turn() { # in_turn KEY VALUE: the best so far in R[KEY], every round in LARGE_ROUNDS[KEY]
  R[$1]=$(larger "${R[$1]:-}" "$2")
  LARGE_ROUNDS[$1]="${LARGE_ROUNDS[$1]:-}${LARGE_ROUNDS[$1]:+/}${2:-failed}"
}
for ((round = 1; round <= REPEAT; round++)); do
  in_turn single.nginx "$(REPEAT=1 single_stream nginx "$N_URL/1g.bin")"
  in_turn single.hubmeter "$(REPEAT=1 single_stream hubmeter "$H_URL/1g.bin" -H "$AUTH")"
  q0=$(quota_calls)
  in_turn single.hubmeterq "$(REPEAT=1 single_stream hubmeterq "$H_URL/1g.bin" -H "$AUTHQ")"
  q1=$(quota_calls)
  qcalls=$((qcalls + q1 - q0))
done
R[calls_per_mib]=$(awk -v c="$qcalls" -v n="$REPEAT" 'BEGIN { printf "%.3f", c / (n * 1024) }')
hubmeter_check "1 GiB single stream"
log "   origin ${R[single.origin]:-?} MB/s, nginx ${R[single.nginx]:-?} MB/s, hubmeter ${R[single.hubmeter]:-?} MB/s"

log "a. 1 GiB as $PARALLEL parallel ranges (best of $REPEAT, proxies in turn)"
R[ranges.origin]=$(parallel_ranges origin "http://127.0.0.1:$ORIGIN_PORT/1g.bin")
for ((round = 1; round <= REPEAT; round++)); do
  in_turn ranges.nginx "$(REPEAT=1 parallel_ranges nginx "$N_URL/1g.bin")"
  in_turn ranges.hubmeter "$(REPEAT=1 parallel_ranges hubmeter "$H_URL/1g.bin" -H "$AUTH")"
done
hubmeter_check "1 GiB parallel ranges"
log "   origin ${R[ranges.origin]:-?} MB/s, nginx ${R[ranges.nginx]:-?} MB/s, hubmeter ${R[ranges.hubmeter]:-?} MB/s"
R[others.a]=$(others_pct)

# ---------------------------------------------------- b. small requests ---

to_ms() { # to_ms 1.23ms|456.78us|1.02s -> milliseconds
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else print "" }'
}

cpu_ticks() { # cpu_ticks PID...: utime + stime of the processes (all threads), in clock ticks
  local p sum=0 v
  for p in "$@"; do
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
proxy_pids() { # proxy_pids NAME
  if [[ "$1" == nginx ]]; then nginx_pids "$B/proxy"; else echo "$HM_PID"; fi
}
time_wait_origin() {
  ss -Htan state time-wait "( dport = :$ORIGIN_PORT or sport = :$ORIGIN_PORT )" | wc -l
}

small_requests() { # small_requests NAME URL [WRK ARGS...]
  local name=$1 url=$2 f="$B/out/$1.wrk" c0 c1 t0 t1 tw0 tw1
  shift 2
  timeout 20 taskset -c 1 wrk -t1 -c"$WRK_CONNS" -d2s "$@" "$url" >/dev/null 2>&1 || true
  # shellcheck disable=SC2046
  c0=$(cpu_ticks $(proxy_pids "$name"))
  [[ "$name" == nginx ]] || R[q0.$name]=$(quota_calls)
  t0=$(date +%s.%N)
  tw0=$(time_wait_origin)
  if ! timeout $((WRK_SECS + 20)) taskset -c 1 wrk -t1 -c"$WRK_CONNS" -d"${WRK_SECS}s" --latency \
    "$@" "$url" >"$f" 2>&1; then
    log "wrk against $name failed: $(tail -n 3 "$f" | tr '\n' ' ')"
  fi
  # shellcheck disable=SC2046
  c1=$(cpu_ticks $(proxy_pids "$name"))
  [[ "$name" == nginx ]] || R[q1.$name]=$(quota_calls)
  t1=$(date +%s.%N)
  tw1=$(time_wait_origin)
  R[cpu.$name]=$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.0f", (b - a) / hz / (e - s) * 100 }')
  R[tw.$name]=$((tw1 - tw0))
  R[rps.$name]=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$f")
  R[p50.$name]=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$f")")
  R[p99.$name]=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$f")")
  R[non2xx.$name]=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' "$f")
  R[sockerr.$name]=$(sed -n 's/^ *Socket errors: *//p' "$f")
  R[total.$name]=$(awk '/requests in/ { print $1 }' "$f")
  # The proxy's CPU per request, µs: less hostage to the machine's speed than requests/s.
  R[us.$name]=$(awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" -v n="${R[total.$name]:-0}" \
    'BEGIN { if (n > 0) printf "%.1f", (b - a) / hz * 1e6 / n }')
}

log "b. 1 KiB, wrk -t1 -c$WRK_CONNS -d${WRK_SECS}s on core 1, proxies pinned to core 0"
snap
pin 0
# Rounds of the three in turn; each figure is the median of its rounds (the last round's
# latency, CPU and wrk details are reported), the per-round figures go to the details.
declare -A RPS_ROUNDS=() US_ROUNDS=()
for ((round = 1; round <= ROUNDS; round++)); do
  small_requests nginx "$N_URL/1k.bin"
  small_requests hubmeter "$H_URL/1k.bin" -H "$AUTH"
  small_requests hubmeterq "$H_URL/1k.bin" -H "$AUTHQ"
  for name in nginx hubmeter hubmeterq; do
    RPS_ROUNDS[$name]="${RPS_ROUNDS[$name]:-} ${R[rps.$name]:-}"
    US_ROUNDS[$name]="${US_ROUNDS[$name]:-} ${R[us.$name]:-}"
  done
done
median() { tr ' ' '\n' | awk 'NF' | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
for name in nginx hubmeter hubmeterq; do
  R[rps.$name]=$(median <<<"${RPS_ROUNDS[$name]:-}")
  R[us.$name]=$(median <<<"${US_ROUNDS[$name]:-}")
  R[usrounds.$name]=$(xargs <<<"${US_ROUNDS[$name]:-}" | tr ' ' '/')
done
R[rounds]=$(for name in nginx hubmeter hubmeterq; do printf '%s%s %s' "${sep:-}" "$name" \
  "$(xargs <<<"${RPS_ROUNDS[$name]:-}" | tr ' ' '/')"; sep='; '; done)
# Each round's ratio to the nginx run just before it (the machine drifts less within a round).
round_ratios() { # round_ratios NAME -> "r1/r2/... (median m×)"
  local rs
  rs=$(paste -d' ' <(tr ' ' '\n' <<<"${RPS_ROUNDS[$1]:-}" | awk 'NF') \
    <(tr ' ' '\n' <<<"${RPS_ROUNDS[nginx]:-}" | awk 'NF') |
    awk '$2 > 0 { printf "%.2f\n", $1 / $2 }')
  [[ -n "$rs" ]] || return 0
  echo "$(paste -sd/ <<<"$rs") (median $(median <<<"$(tr '\n' ' ' <<<"$rs")")×)"
}
R[round_ratios]="hubmeter $(round_ratios hubmeter); quotas on $(round_ratios hubmeterq)"
R[calls_per_req]=$(awk -v a="${R[q0.hubmeterq]:-0}" -v b="${R[q1.hubmeterq]:-0}" \
  -v n="${R[total.hubmeterq]:-0}" 'BEGIN { if (n > 0) printf "%.2f", (b - a) / n }')
pin 0-$(($(nproc) - 1))
R[others.b]=$(others_pct)
hubmeter_check "1 KiB wrk"
log "   nginx ${R[rps.nginx]:-?} req/s (p50 ${R[p50.nginx]:-?} ms, p99 ${R[p99.nginx]:-?} ms)," \
  "hubmeter ${R[rps.hubmeter]:-?} req/s (p50 ${R[p50.hubmeter]:-?} ms, p99 ${R[p99.hubmeter]:-?} ms)"

# -------------------------------------------- c. RSS, 2,000 slow downloads ---

rss_kib() { # rss_kib PID...: sum of VmRSS
  local p sum=0 v
  for p in "$@"; do
    v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# sampler NAME: every 0.5 s, "seconds rss_kib threads" to out/NAME.rss.
sampler() {
  local name=$1 pids t0 out="$B/out/$1.rss"
  t0=$(date +%s.%N)
  trap 'exit 0' TERM
  while :; do
    if [[ "$name" == nginx ]]; then
      pids=$(nginx_pids "$B/proxy" | tr '\n' ' ')
    else
      pids=$HM_PID
    fi
    # shellcheck disable=SC2086
    echo "$(awk -v a="$t0" -v z="$(date +%s.%N)" 'BEGIN { printf "%.1f", z - a }') $(rss_kib $pids)" \
      "$(awk '/^Threads:/ { print $2 }' "/proc/${pids%% *}/status" 2>/dev/null || echo 0)" >>"$out"
    sleep 0.5
  done
}

slow_downloads() { # slow_downloads NAME URL [HEADER]
  local name=$1 url=$2 line
  shift 2
  : >"$B/out/$name.rss"
  sampler "$name" &
  SAMPLER_PID=$!
  sleep 1
  line=$(timeout $((SLOW_SECS + 60)) "$B/slowclients" "$url" "$SLOW_N" "$SLOW_RATE" "$SLOW_SECS" "$@" \
    2>"$B/out/$name.slow.err") || line="slowclients failed (exit $?): $(tail -n 2 "$B/out/$name.slow.err" | tr '\n' ' ')"
  sleep 1
  stop_pid "$SAMPLER_PID" TERM "rss sampler"
  SAMPLER_PID=""
  echo "$line" >"$B/out/$name.slow"
  R[idle.$name]=$(awk 'NR == 1 { printf "%.1f", $2 / 1024 }' "$B/out/$name.rss")
  R[rss.$name]=$(awk '$2 > m { m = $2 } END { printf "%.1f", m / 1024 }' "$B/out/$name.rss")
  R[threads.$name]=$(awk '$3 > m { m = $3 } END { print m + 0 }' "$B/out/$name.rss")
  R[served.$name]=$(sed -n 's/.* served=\([0-9]*\).*/\1/p' <<<"$line")
  R[slow.$name]=$line
  R[slowbytes.$name]=$(sed -n 's/.* bytes=\([0-9]*\).*/\1/p' <<<"$line")
}

# Connections from the previous benchmarks must be gone before measuring RSS.
settle() {
  local i
  for ((i = 0; i < 20; i++)); do
    (($(ss -Htn state established "( sport = :$PROXY_PORT or sport = :$HM_PORT )" | wc -l) == 0)) && return 0
    sleep 0.5
  done
}

log "c. $SLOW_N slow downloads of 64 MiB at $SLOW_RATE B/s for ${SLOW_SECS}s, RSS every 0.5 s"
settle
snap
slow_downloads nginx "$N_URL/64m.bin"
log "   nginx: peak ${R[rss.nginx]:-} MiB; ${R[slow.nginx]:-}"
settle
slow_downloads hubmeter "$H_URL/64m.bin" "$AUTH"
R[others.c]=$(others_pct)
hubmeter_check "$SLOW_N slow downloads"
log "   hubmeter: peak ${R[rss.hubmeter]:-} MiB; ${R[slow.hubmeter]:-}"

# Metering sanity check: what the usage endpoint reports for the bench org.
sleep 3
R[usage]=$(curl -sS -m 10 -H "$AUTH" "$H_URL/-/v1/usage" 2>&1 | grep -o '"totals":{[^}]*}' || true)
HM_ERRLINES=$(grep -c 'level=error' "$B/hubmeter/hubmeter.log" || true)
HM_WARNLINES=$(grep -c 'level=warn' "$B/hubmeter/hubmeter.log" || true)
HM_ERRSAMPLE=$(grep -E 'level=(error|warn)' "$B/hubmeter/hubmeter.log" | sed -E 's/^ts=[^ ]+ //' |
  sort | uniq -c | sort -rn | head -n 5 || true)

# ---------------------------------------------------------------- report ---

ratio() { # ratio HUBMETER NGINX -> "0.93×" or "n/a"
  awk -v h="${1:-}" -v n="${2:-}" 'BEGIN {
    if (h == "" || n == "" || n + 0 == 0) print "n/a"; else printf "%.2f×", h / n }'
}
verdict() { # verdict HUBMETER NGINX OP TARGET
  awk -v h="${1:-}" -v n="${2:-}" -v op="$3" -v t="$4" 'BEGIN {
    if (h == "" || n == "" || n + 0 == 0) { print "**no result**"; exit }
    r = h / n
    if ((op == ">=" && r >= t) || (op == "<=" && r <= t)) print "met"; else print "**missed**" }'
}
v() { echo "${1:-—}"; }

NGINX_V=$(nginx -v 2>&1 | sed 's/^nginx version: //')
WRK_V=$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $1, $2 }')
CURL_V=$( (curl --version || true) | awk 'NR == 1 { print $1, $2 }')
MEM=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)

{
  echo "## Results — $(date -u '+%Y-%m-%d %H:%M UTC'), hubmeter \`$COMMIT\`$DIRTY"
  echo
  echo "Machine: $(nproc) cores ($CPU), $MEM, Linux $(uname -r); $NGINX_V; $WRK_V; $CURL_V; ulimit -n $NOFILE. CPU busy just before the start: ${BUSY_START}%."
  echo
  echo "| benchmark | nginx | hubmeter | hubmeter / nginx | target | |"
  echo "|---|---:|---:|---:|---|---|"
  echo "| a. 1 GiB, single stream, best of $REPEAT in turn (MB/s) | $(v "${R[single.nginx]:-}") | $(v "${R[single.hubmeter]:-}") | $(ratio "${R[single.hubmeter]:-}" "${R[single.nginx]:-}") | ≥ 1.0× | $(verdict "${R[single.hubmeter]:-}" "${R[single.nginx]:-}" '>=' 1.0) |"
  echo "| a. 1 GiB, $PARALLEL parallel ranges, best of $REPEAT in turn (MB/s, aggregate) | $(v "${R[ranges.nginx]:-}") | $(v "${R[ranges.hubmeter]:-}") | $(ratio "${R[ranges.hubmeter]:-}" "${R[ranges.nginx]:-}") | ≥ 1.0× | $(verdict "${R[ranges.hubmeter]:-}" "${R[ranges.nginx]:-}" '>=' 1.0) |"
  echo "| b. 1 KiB, wrk -c$WRK_CONNS, requests/s, median of $ROUNDS rounds | $(v "${R[rps.nginx]:-}") | $(v "${R[rps.hubmeter]:-}") | $(ratio "${R[rps.hubmeter]:-}" "${R[rps.nginx]:-}") | ≥ 0.8× | $(verdict "${R[rps.hubmeter]:-}" "${R[rps.nginx]:-}" '>=' 0.8) |"
  echo "| b. 1 KiB, wrk -c$WRK_CONNS, requests/s, **quotas on** (limited plan) | $(v "${R[rps.nginx]:-}") | $(v "${R[rps.hubmeterq]:-}") | $(ratio "${R[rps.hubmeterq]:-}" "${R[rps.nginx]:-}") | ≥ 0.8× | $(verdict "${R[rps.hubmeterq]:-}" "${R[rps.nginx]:-}" '>=' 0.8) |"
  echo "| b. 1 KiB, p99 latency (ms), quotas on | $(v "${R[p99.nginx]:-}") | $(v "${R[p99.hubmeterq]:-}") | $(ratio "${R[p99.hubmeterq]:-}" "${R[p99.nginx]:-}") | (lower is better) | |"
  echo "| a. 1 GiB, single stream, quotas on (MB/s) | $(v "${R[single.nginx]:-}") | $(v "${R[single.hubmeterq]:-}") | $(ratio "${R[single.hubmeterq]:-}" "${R[single.nginx]:-}") | ≥ 1.0× | $(verdict "${R[single.hubmeterq]:-}" "${R[single.nginx]:-}" '>=' 1.0) |"
  echo "| b. 1 KiB, p50 latency (ms) | $(v "${R[p50.nginx]:-}") | $(v "${R[p50.hubmeter]:-}") | $(ratio "${R[p50.hubmeter]:-}" "${R[p50.nginx]:-}") | (lower is better) | |"
  echo "| b. 1 KiB, p99 latency (ms) | $(v "${R[p99.nginx]:-}") | $(v "${R[p99.hubmeter]:-}") | $(ratio "${R[p99.hubmeter]:-}" "${R[p99.nginx]:-}") | (lower is better) | |"
  echo "| c. peak RSS, $SLOW_N slow downloads (MiB) | $(v "${R[rss.nginx]:-}") | $(v "${R[rss.hubmeter]:-}") | $(ratio "${R[rss.hubmeter]:-}" "${R[rss.nginx]:-}") | ≤ 2.0× | $(verdict "${R[rss.hubmeter]:-}" "${R[rss.nginx]:-}" '<=' 2.0) |"
  echo "| c. connections served (> 0 bytes) of $SLOW_N | $(v "${R[served.nginx]:-}") | $(v "${R[served.hubmeter]:-}") | $(ratio "${R[served.hubmeter]:-}" "${R[served.nginx]:-}") | = $SLOW_N | $( [[ "${R[served.hubmeter]:-0}" == "$SLOW_N" ]] && echo met || echo '**missed**') |"
  echo
  echo "Reference and details:"
  echo
  echo "- CPU used by other processes on the machine (not this benchmark) during a / b / c: $(v "${R[others.a]:-}")% / $(v "${R[others.b]:-}")% / $(v "${R[others.c]:-}")% of all $NCPU cores.$(awk -v a="${R[others.a]:-0}" -v b="${R[others.b]:-0}" -v c="${R[others.c]:-0}" 'BEGIN { if (a > 5 || b > 5 || c > 5) printf " **The machine was not quiet: these figures are skewed; re-run `make bench` on an idle machine.**" }')"
  echo "- Admission cost: quotas on vs off (same gateway, same run): $(ratio "${R[rps.hubmeterq]:-}" "${R[rps.hubmeter]:-}") of the requests/s; Redis calls per small request: $(v "${R[calls_per_req]:-}") (busy orgs are admitted from per-gateway pools; otherwise one admission round trip, pipelined with other requests', plus a pipelined end-of-request call nobody waits for); per MiB of a 1 GiB download: $(v "${R[calls_per_mib]:-}") (leases of 8 MiB, doubling up to 64 MiB as a download goes on). CPU of the gateway with quotas on: $(v "${R[cpu.hubmeterq]:-}")%."
  echo "- 1 KiB requests/s per round (the proxies in turn; the table gives the medians): $(v "${R[rounds]:-}"). Each round's ratio to nginx's run in the same round: $(v "${R[round_ratios]:-}")."
  echo "- 1 GiB MB/s per round (the proxies in turn; the table gives the best): single stream nginx $(v "${LARGE_ROUNDS[single.nginx]:-}"), hubmeter $(v "${LARGE_ROUNDS[single.hubmeter]:-}"), hubmeter with quotas $(v "${LARGE_ROUNDS[single.hubmeterq]:-}"); $PARALLEL ranges nginx $(v "${LARGE_ROUNDS[ranges.nginx]:-}"), hubmeter $(v "${LARGE_ROUNDS[ranges.hubmeter]:-}")."
  echo "- Origin alone (no proxy): single stream $(v "${R[single.origin]:-}") MB/s, $PARALLEL ranges $(v "${R[ranges.origin]:-}") MB/s."
  echo "- wrk: nginx $(v "${R[total.nginx]:-}") requests in ${WRK_SECS} s, non-2xx: $(v "${R[non2xx.nginx]:-0}"), socket errors: $(v "${R[sockerr.nginx]:-none}"); hubmeter $(v "${R[total.hubmeter]:-}") requests, non-2xx: $(v "${R[non2xx.hubmeter]:-0}"), socket errors: $(v "${R[sockerr.hubmeter]:-none}")."
  echo "- The proxy's CPU per 1 KiB request (µs, from /proc; per round, then the median): nginx $(v "${R[usrounds.nginx]:-}") ($(v "${R[us.nginx]:-}")), hubmeter $(v "${R[usrounds.hubmeter]:-}") ($(v "${R[us.hubmeter]:-}")), with quotas $(v "${R[usrounds.hubmeterq]:-}") ($(v "${R[us.hubmeterq]:-}")). The proxy shares core 0 with the part of the origin's work the scheduler puts there, so requests/s follow this only in part."
  echo "- CPU used by the proxy during the measured wrk run (100% = all of core 0): nginx $(v "${R[cpu.nginx]:-}")%, hubmeter $(v "${R[cpu.hubmeter]:-}")% (Redis/PostgreSQL not included). Change in TIME_WAIT sockets to/from the origin over that run (approximate count of upstream connections opened and closed): nginx $(v "${R[tw.nginx]:-}"), hubmeter $(v "${R[tw.hubmeter]:-}")."
  echo "- Idle RSS before the slow downloads: nginx $(v "${R[idle.nginx]:-}") MiB (master + 2 workers), hubmeter $(v "${R[idle.hubmeter]:-}") MiB; hubmeter peak threads: $(v "${R[threads.hubmeter]:-}")."
  echo "- Slow clients, nginx: \`$(v "${R[slow.nginx]:-}")\`"
  echo "- Slow clients, hubmeter: \`$(v "${R[slow.hubmeter]:-}")\`"
  echo "- Usage recorded by hubmeter for the bench org (\`/-/v1/usage\`, this month, all runs): \`$(v "${R[usage]:-}")\`"
  echo "- hubmeter log: $HM_ERRLINES error and $HM_WARNLINES warn lines; restarts after a crash or hang: $HM_RESTARTS."
  if [[ -n "$HM_ERRSAMPLE" ]]; then
    echo "  Most frequent (count, line):"
    echo
    echo '  ```'
    # shellcheck disable=SC2001
    sed 's/^/  /' <<<"$HM_ERRSAMPLE" | cut -c1-300
    echo '  ```'
  fi
  if ((${#HM_NOTES[@]})); then
    for n in "${HM_NOTES[@]}"; do echo "- $n"; done
  fi
} >"$B/results.md"

cat bench/BENCH.head.md "$B/results.md" $( [ -f var/bench-pipeline/results.md ] && echo var/bench-pipeline/results.md ) >BENCH.md.tmp
mv -f BENCH.md.tmp BENCH.md
log "results in $B/results.md and BENCH.md"
cat "$B/results.md"
