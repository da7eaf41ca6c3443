#!/usr/bin/env bash
# Module boundaries of DESIGN.md, checked from #include lines: each library belongs to one
# module and the arrows point one way (gateway → meter/registry/billing → common).
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
# includes PATTERN in FILES that are not allowed
forbid() {
    local what=$1 pattern=$2
    shift 2
    local hits
    hits=$(grep -nE "^#include [<\"]($pattern)" "$@" 2>/dev/null || true)
    if [ -n "$hits" ]; then
        echo "check-deps: $what:" >&2
        echo "$hits" >&2
        fail=1
    fi
}
mods() { for d in "$@"; do ls "$d"/*.[ch] 2>/dev/null || true; done; }

forbid "only gateway/ includes libmicrohttpd and libcurl" 'microhttpd\.h|curl/' \
    $(mods common registry meter billing main)
forbid "only meter/ includes hiredis" 'hiredis/' $(mods common registry gateway billing main)
forbid "common/ includes no other module" 'registry/|meter/|gateway/|billing/|main/' $(mods common)
forbid "registry/ depends on common/ only" 'meter/|gateway/|billing/|main/' $(mods registry)
forbid "meter/ never includes gateway/, registry/ or billing/" 'gateway/|registry/|billing/|main/' $(mods meter)
forbid "billing/ reads PostgreSQL only" 'gateway/|meter/|hiredis/|main/' $(mods billing)
forbid "modules never include main/" 'main/' $(mods common registry meter gateway billing)
# Outside a module, only its face (module.h) may be included; *_int.h stay inside.
forbid "meter_int.h is private to meter/" 'meter/meter_int\.h' $(mods common registry gateway billing main)
forbid "registry_int.h is private to registry/" 'registry/registry_int\.h' $(mods common meter gateway billing main)
forbid "gw_int.h is private to gateway/" 'gateway/gw_int\.h' $(mods common registry meter billing main)
[ "$fail" -eq 0 ] && echo "check-deps: ok"
exit "$fail"
