#!/usr/bin/env bash
# `make bench`, part d: the usage pipeline. Measures (1) the lag between the end of a burst of
# keyed downloads (wrk, well above 1,000 requests/s) and their count showing in /-/v1/usage,
# and (2) the flusher's throughput on synthetic batches (usage rows applied per second).
# Writes var/bench-pipeline/results.md, which scripts/bench.sh appends to BENCH.md.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
B=$root/var/bench-pipeline
bin=$root/bin/hubmeter
export HM_PG_PORT=54359 HM_REDIS_PORT=63829
port=18473
mkdir -p "$B"
rm -f "$B/results.md"
gw_pid=""
cleanup() {
    [ -n "$gw_pid" ] && kill "$gw_pid" 2>/dev/null && wait "$gw_pid" 2>/dev/null
    bash scripts/services.sh stop "$B" >/dev/null 2>&1 || true
}
trap cleanup EXIT
log() { echo "bench-pipeline: $*" >&2; }

bash scripts/services.sh start "$B" >/dev/null
eval "$(bash scripts/services.sh env "$B")"
psql -X -q "$HUBMETER_DATABASE_URL" -c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;' >/dev/null
redis-cli -p "$HM_REDIS_PORT" flushall >/dev/null
"$bin" migrate >/dev/null
"$bin" orgs create bench >/dev/null
key=$("$bin" keys create bench | tail -n 1)
mkdir -p "$B/www/bench/m/resolve/main"
head -c 1024 /dev/urandom > "$B/www/bench/m/resolve/main/1k.bin"
rm -rf "$B/journal"

# (1) lag: a 10 s wrk burst, then poll the usage API until every request is there.
HUBMETER_UPSTREAM="file://$B/www" HUBMETER_LISTEN="127.0.0.1:$port" HUBMETER_LOG_LEVEL=warn \
    HUBMETER_JOURNAL_DIR="$B/journal" "$bin" serve >>"$B/hubmeter.log" 2>&1 &
gw_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/-/healthz" >/dev/null && break; sleep 0.1; done
wrk -t1 -c8 -d10s -H "Authorization: Bearer $key" "http://127.0.0.1:$port/bench/m/resolve/main/1k.bin" >"$B/wrk.txt"
end_ms=$(date +%s%3N)
sent=$(awk '/requests in/ {print $1}' "$B/wrk.txt")
rate=$(awk '/Requests\/sec/ {printf "%d", $2}' "$B/wrk.txt")
lag_ms=""
for _ in $(seq 600); do
    got=$(curl -fs -H "Authorization: Bearer $key" "http://127.0.0.1:$port/-/v1/usage" |
        sed -n 's/.*"totals":{"bytes":[0-9]*,"requests":\([0-9]*\).*/\1/p')
    if [ -n "$got" ] && [ "$got" -ge "$sent" ]; then
        lag_ms=$(($(date +%s%3N) - end_ms))
        break
    fi
    sleep 0.05
done
log "lag: ${lag_ms:-none} ms for $sent requests at $rate req/s (usage shows ${got:-?})"
kill "$gw_pid"
wait "$gw_pid" 2>/dev/null || true
gw_pid=""

# (2) flusher throughput: 1,000 batches of 100 rows each, straight into the stream.
batches=1000 rows=100
awk -v nb="$batches" -v nr="$rows" 'BEGIN {
    for (b = 1; b <= nb; b++) {
        body = sprintf("{\"v\":1,\"id\":\"bench:1:%d\",\"source\":\"bench:1\",\"cutoff\":1,\"rows\":[", b)
        for (r = 1; r <= nr; r++) {
            body = body sprintf("%s{\"m\":%d,\"org\":%d,\"key\":%d,\"net\":null,\"repo\":\"o/r%d\",\"method\":\"GET\",\"sc\":2,\"refused\":\"\",\"req\":1,\"bytes\":1000}",
                                r > 1 ? "," : "", 1793491200 + 60 * (b % 600), r, r, b % 7)
        }
        body = body "]}"
        id = sprintf("bench:1:%d", b)
        n = split("XADD hm:usage * type batch id", parts, " ")
        printf "*%d\r\n", n + 3
        for (i = 1; i <= n; i++) printf "$%d\r\n%s\r\n", length(parts[i]), parts[i]
        printf "$%d\r\n%s\r\n$4\r\nbody\r\n$%d\r\n%s\r\n", length(id), id, length(body), body
    }
}' > "$B/batches.resp"
redis-cli -p "$HM_REDIS_PORT" --pipe < "$B/batches.resp" >/dev/null
start_ms=$(date +%s%3N)
HUBMETER_LOG_LEVEL=warn "$bin" flush >>"$B/flush.log" 2>&1 &
flush_pid=$!
applied=0
for _ in $(seq 1200); do
    applied=$(psql -X -qtA "$HUBMETER_DATABASE_URL" -c "SELECT count(*) FROM applied_batches WHERE batch_id LIKE 'bench:1:%'")
    [ "$applied" -ge "$batches" ] && break
    sleep 0.1
done
flush_ms=$(($(date +%s%3N) - start_ms))
kill "$flush_pid"
wait "$flush_pid" 2>/dev/null || true
rows_per_s=$((batches * rows * 1000 / (flush_ms > 0 ? flush_ms : 1)))
log "flusher: $applied batches x $rows rows in $flush_ms ms = $rows_per_s rows/s"

cat > "$B/results.md" <<MD

## d. The usage pipeline (scripts/bench-pipeline.sh, same machine)

| measure | result | target |
|---|---:|---|
| lag from the end of a burst to all its requests in \`/-/v1/usage\` | ${lag_ms:-not reached} ms ($sent requests at $rate req/s, ship interval 1 s) | < 2000 ms at ≥ 1,000 req/s |
| flusher throughput, one \`hubmeter flush\` | $rows_per_s usage rows/s ($batches batches × $rows rows in $flush_ms ms) | |

The lag is bounded by the ship interval (\`HUBMETER_SHIP_INTERVAL_MS\`, 1 s) plus one flusher
round; every request of the burst is journaled before its batch is shipped.
MD
cat "$B/results.md"
