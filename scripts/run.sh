#!/usr/bin/env bash
# `make run`: the demo. Starts (or reuses) a private Redis and PostgreSQL under var/run
# unless HUBMETER_REDIS_URL / HUBMETER_DATABASE_URL are set, migrates, creates a demo
# plan, org, key and a file:// upstream laid out like a model repo, prints curl lines
# that work as printed, and runs `hubmeter serve` in the foreground.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
dir=$root/var/run
bin=$root/bin/hubmeter
mkdir -p "$dir"

if [ -z "${HUBMETER_REDIS_URL:-}" ] || [ -z "${HUBMETER_DATABASE_URL:-}" ]; then
    bash scripts/services.sh start "$dir"
    redis_url=${HUBMETER_REDIS_URL:-}
    database_url=${HUBMETER_DATABASE_URL:-}
    eval "$(bash scripts/services.sh env "$dir")"
    [ -n "$redis_url" ] && export HUBMETER_REDIS_URL=$redis_url
    [ -n "$database_url" ] && export HUBMETER_DATABASE_URL=$database_url
fi

"$bin" migrate

# A demo upstream laid out like a model repository: /<org>/<repo>/resolve/main/<file>.
repo=$dir/demo-repo/demo-org/tiny-model/resolve/main
if [ ! -f "$repo/model.safetensors" ]; then
    mkdir -p "$repo"
    head -c 1048576 /dev/urandom > "$repo/model.safetensors"
    printf '{"architectures":["TinyModel"],"hidden_size":64}\n' > "$repo/config.json"
    printf '# tiny-model\nA demo repository served through hubmeter.\n' > "$repo/README.md"
fi
export HUBMETER_UPSTREAM=${HUBMETER_UPSTREAM:-file://$dir/demo-repo}
export HUBMETER_LISTEN=${HUBMETER_LISTEN:-127.0.0.1:8080}
export HUBMETER_JOURNAL_DIR=${HUBMETER_JOURNAL_DIR:-$dir/journal}

"$bin" plans show demo >/dev/null 2>&1 ||
    "$bin" plans create demo --requests-per-minute 600 --request-burst 100 \
        --monthly-bytes 10737418240 --max-concurrent 16
"$bin" orgs show demo-org >/dev/null 2>&1 ||
    "$bin" orgs create demo-org --name "Demo Org" --class commercial --plan demo

# The demo key is shown once by `keys create`, so it is kept (mode 0600, git-ignored) and
# reused while it is still valid in this database.
keyfile=$dir/demo-key
key=""
if [ -s "$keyfile" ]; then
    key=$(cat "$keyfile")
    prefix=${key:0:11}
    if ! "$bin" keys list demo-org | awk -v p="$prefix" '$2 == p && $4 == "-" {found=1} END {exit !found}'; then
        key=""
    fi
fi
if [ -z "$key" ]; then
    key=$("$bin" keys create demo-org --name demo | tail -n 1)
    (umask 077 && printf '%s\n' "$key" > "$keyfile")
fi

host=${HUBMETER_LISTEN%:*}
port=${HUBMETER_LISTEN##*:}
[ "$host" = "0.0.0.0" ] && host=127.0.0.1
base="http://$host:$port"
cat <<MSG

hubmeter demo: org demo-org, plan demo, upstream $HUBMETER_UPSTREAM
Download a file through the gateway (metered to demo-org):
  curl -fsS -o model.safetensors -H "Authorization: Bearer $key" $base/demo-org/tiny-model/resolve/main/model.safetensors
The same path without a key is an anonymous download:
  curl -fsS $base/demo-org/tiny-model/resolve/main/config.json
See the org's usage (bytes and requests, from PostgreSQL, a second or two later):
  curl -fsS -H "Authorization: Bearer $key" $base/-/v1/usage
Stop with Ctrl-C; \`make stop\` stops the local Redis and PostgreSQL.

MSG
exec "$bin" serve
