#!/usr/bin/env bash
# Apply ruff to the whole tree: its safe fixes (import order, pyupgrade), then
# its formatting; then list what is left for a person to fix. .ci/lint checks
# the same with the same ruff (pinned in pyproject.toml's `lint` group),
# which this script installs in build/lint-venv when needed.
set -euo pipefail
cd "$(dirname "$0")/.."

pinned=$(sed -n 's/^lint = \["ruff==\(.*\)"\]$/\1/p' pyproject.toml)
[ -n "$pinned" ] || { echo "format: no ruff pin in pyproject.toml's lint group" >&2; exit 1; }
venv=build/lint-venv
if [ "$("$venv/bin/ruff" --version 2> /dev/null)" != "ruff $pinned" ]; then
    echo "format: installing ruff $pinned in $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip > /dev/null 2>&1
    "$venv/bin/python" -m pip install --quiet --group lint > /dev/null 2>&1
fi
ruff=$venv/bin/ruff

"$ruff" check --fix-only --quiet . || true  # the findings left are listed at the end
"$ruff" format .
echo "format: what ruff cannot fix by itself:"
"$ruff" check --statistics . && echo "format: nothing; the tree is clean"
