#!/usr/bin/env bash
# scripts/deps.sh — installs the Debian packages hubmeter needs to build, test
# and run (compiler, libraries, Redis, PostgreSQL, nginx; promtool; Chromium
# renders the funding report's HTML in the tests; wget, git, git-lfs, pip, skopeo (the
# docker registry protocol, against Debian's docker-registry) and the @huggingface/hub
# client under Node.js are real clients in the tests). Idempotent: does
# nothing when everything is already installed. Never prompts (works in CI).
# System services are prevented from auto-starting during the install.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config
  libmicrohttpd-dev libcurl4-openssl-dev libhiredis-dev libpq-dev
  libjansson-dev libssl-dev libcriterion-dev
  redis-server postgresql nginx-light libnginx-mod-http-echo
  curl ca-certificates procps aria2 wget git git-lfs python3-pip skopeo docker-registry
  chromium
  prometheus
)
# prometheus: only its promtool is used, by the tests (promtool check metrics / config);
# the policy below keeps its daemon from starting.

# Node.js and npm run the @huggingface/hub client in the tests; a machine that already has
# them (another distribution's packages, say) keeps its own.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "deps: missing packages: ${missing[*]}"

SUDO=()
if ((EUID != 0)); then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null </dev/null; then
    SUDO=(sudo -n)
  else
    echo "deps: not root and passwordless sudo is unavailable; run as root:" >&2
    echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

# Keep the package maintainer scripts from starting system-wide redis,
# postgresql, nginx or docker-registry instances: the project only uses private instances.
# Only install our own policy-rc.d when none exists, and remove it afterwards.
POLICY=/usr/sbin/policy-rc.d
policy_installed=0
cleanup() {
  if ((policy_installed)); then
    "${SUDO[@]}" rm -f "$POLICY"
  fi
}
trap cleanup EXIT
if [[ ! -e "$POLICY" ]]; then
  printf '#!/bin/sh\n# temporary, installed by hubmeter scripts/deps.sh\nexit 101\n' |
    "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 0755 "$POLICY"
  policy_installed=1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update </dev/null
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
echo "deps: installed ${missing[*]}"
