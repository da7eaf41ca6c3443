#!/usr/bin/env bash
# `make lint`: the banned-function list (as curl keeps one) and cppcheck over the sources.
set -euo pipefail
cd "$(dirname "$0")/.."

modules=$(ls common/*.[ch] registry/*.[ch] meter/*.[ch] billing/*.[ch] gateway/*.[ch] main/*.[ch])
src="$modules $(ls tests/*.[ch])"
banned='\b(sprintf|vsprintf|strcpy|strcat|strncpy|strncat|strtok|atoi|atol|atoll|gets)[[:space:]]*\('
if grep -nE "$banned" $src; then
    echo "lint: banned functions above (use cm_fmt/cm_copy/snprintf, strtoull with checks)" >&2
    exit 1
fi
if command -v cppcheck >/dev/null; then
    cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability \
        --suppress=missingIncludeSystem --inline-suppr -I . $modules
fi
echo "lint: ok"
