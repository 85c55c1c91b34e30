#!/usr/bin/env bash
# Smoke test of an installed scratchnet, as a new user gets it: a fresh venv
# in an empty temporary directory (so nothing is imported from a checkout),
# `pip install WHEEL` (dependencies from the registry), then:
#   - scratchnet is imported from the venv and its __version__ is the wheel's;
#   - available_backends() is exactly BACKENDS;
#   - the compiled extension, if any, needs no library beyond libc, libm and
#     libpthread (no OpenMP runtime);
#   - `scratchnet train` runs 600 iterations (one epoch) with each backend
#     but numpy, and they print the same accuracies.
#
# Usage: tools/smoke_wheel.sh WHEEL [BACKENDS]
#        BACKENDS: comma-separated, default numpy,numba,c
#        PYTHON=python3.12 tools/smoke_wheel.sh ...   the venv's Python
set -euo pipefail

[ $# -ge 1 ] && [ -f "$1" ] || { echo "usage: $0 WHEEL [BACKENDS]" >&2; exit 2; }
wheel=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
backends=${2:-numpy,numba,c}
python=${PYTHON:-python3}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$python" -m venv venv
venv/bin/python -m pip install --quiet "$wheel" > pip.log 2>&1 || { cat pip.log >&2; exit 1; }

venv/bin/python - "$wheel" "$backends" <<'PY'
import importlib.metadata
import pathlib
import subprocess
import sys

import scratchnet

wheel, expected = pathlib.Path(sys.argv[1]), tuple(sys.argv[2].split(","))
where = pathlib.Path(scratchnet.__file__).resolve()
assert pathlib.Path(sys.prefix).resolve() in where.parents, f"scratchnet imported from {where}, not the venv"
version = importlib.metadata.version("scratchnet")
assert wheel.name.startswith(f"scratchnet-{version}-"), (wheel.name, version)
assert scratchnet.__version__ == version, (scratchnet.__version__, version)
print(f"smoke: scratchnet {version} from {where.parent}")
print(f"smoke: backends {scratchnet.available_backends()}")
assert scratchnet.available_backends() == expected, f"expected backends {expected}"

if "c" in expected:
    from scratchnet import _ckernels

    dynamic = subprocess.run(["readelf", "-d", _ckernels.__file__], capture_output=True, text=True, check=True)
    needed = sorted(line.split("[")[1].rstrip("]") for line in dynamic.stdout.splitlines() if "(NEEDED)" in line)
    print(f"smoke: {pathlib.Path(_ckernels.__file__).name} needs {needed}")
    assert set(needed) <= {"libc.so.6", "libm.so.6", "libpthread.so.0"}, needed
PY

outputs=()
for backend in ${backends//,/ }; do
    [ "$backend" = numpy ] && continue  # the reference: minutes for an epoch
    echo "smoke: scratchnet train --iters 600 --backend $backend"
    out=$(venv/bin/scratchnet train --iters 600 --backend "$backend" --no-progress --out "run-$backend")
    echo "$out" | sed 's/^/    /'
    [ -f "run-$backend/params.npz" ] || { echo "smoke: no run-$backend/params.npz" >&2; exit 1; }
    outputs+=("$(echo "$out" | grep 'acc')")
done
for out in "${outputs[@]}"; do
    [ "$out" = "${outputs[0]}" ] || { echo "smoke: the backends' accuracies differ" >&2; exit 1; }
done
echo "smoke: OK"
