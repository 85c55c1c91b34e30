#!/usr/bin/env bash
# Build the C extension with AddressSanitizer and UndefinedBehaviorSanitizer
# in a throwaway virtual environment, and run the tests that reach the C
# kernels under both sanitizers: tests/test_c_extension.py, the
# backend-"c" cases of test_functions.py, test_kernels.py and
# test_network.py and two of test_training.py, then the fuzz suite of the
# chapter's functions, TwoLayerNet's methods, train and the command line
# (tests/test_fuzz_{functions,net_methods,train,cli}.py, with the child
# runner's own tests) on c and numpy.
#
#   tools/sanitize.sh [extra pytest arguments]
#
# Any sanitizer report aborts the process that made it (halt_on_error), so a
# report fails the run; the report itself is on stderr (for a fuzz example,
# in the failure message, with the example).
#
# Environment: SANITIZE_DIR keeps the venv and build there (default: a
# temporary directory, removed at exit); CC picks the compiler (gcc or
# clang; its libasan is preloaded, as the Python interpreter is not built
# with ASan).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

cc=${CC:-gcc}
libasan=$("$cc" -print-file-name=libasan.so)
if [ ! -e "$libasan" ]; then
    echo "sanitize: $cc has no libasan.so (got '$libasan'); install it (Debian: libasan8 with gcc)" >&2
    exit 1
fi

if [ -n "${SANITIZE_DIR:-}" ]; then
    work=$SANITIZE_DIR
    mkdir -p "$work"
else
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
fi

flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
echo "sanitize: building the C extension with $flags in $work"
python3 -m venv "$work/venv"
# shellcheck disable=SC1091
. "$work/venv/bin/activate"
python -m pip install --quiet --upgrade pip
start=$SECONDS
CC=$cc python -m pip install --quiet ".[test]" \
    -C build-dir="$work/build" \
    -C cmake.build-type=RelWithDebInfo \
    -C cmake.define.CMAKE_C_FLAGS="$flags" \
    -C cmake.define.CMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" \
    -C cmake.define.CMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined"
echo "sanitize: built and installed in $((SECONDS - start)) s"

ext=$(python -c "import importlib.util as u; print(u.find_spec('scratchnet._ckernels').origin)")
if ! grep -q __asan_init "$ext"; then
    echo "sanitize: $ext is not instrumented" >&2
    exit 1
fi

# The interpreter is not instrumented, so ASan's runtime must be loaded
# first; libstdc++ with it, or ASan cannot intercept C++ exceptions and
# aborts when one is thrown (matplotlib's extensions, in the CLI examples).
# CPython keeps memory until exit by design: leak reports would be noise.
export LD_PRELOAD="$libasan $("$cc" -print-file-name=libstdc++.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export PYTHONFAULTHANDLER=1

# The tests import the installed (instrumented) package: run them from a
# copy of tests/, outside the source tree. --capture=sys: pytest captures
# Python's output only, so a report, which ends the process, is not lost
# with the captured output of the test that made it.
cd "$work"
rm -rf tests && cp -r "$repo/tests" tests
cp "$repo/pyproject.toml" .
status=0

# The C backend's cases: Numba is left out (its JIT in an ASan process only
# costs time; -k drops the tests that name it).
start=$SECONDS
SCRATCHNET_TEST_BACKENDS=c python -m pytest -p no:cacheprovider -q --capture=sys \
    tests/test_c_extension.py tests/test_functions.py tests/test_kernels.py tests/test_network.py \
    tests/test_training.py::test_train_with_a_read_only_parameter_updates_nothing \
    tests/test_training.py::test_a_diverged_loss_leaves_the_parameters_as_they_were \
    -k "not numba" "$@" || status=$?
echo "sanitize: C backend tests ran in $((SECONDS - start)) s"

# The fuzz suite, c against numpy (its child processes inherit the
# sanitizers), a failing example reported unshrunk (each crashing candidate
# would cost a restart of an instrumented child).
start=$SECONDS
SCRATCHNET_FUZZ_SHRINK=0 SCRATCHNET_TEST_BACKENDS=c,numpy python -m pytest -p no:cacheprovider -q --capture=sys \
    tests/test_child_runner.py tests/test_fuzz_functions.py tests/test_fuzz_net_methods.py tests/test_fuzz_train.py \
    tests/test_fuzz_cli.py "$@" || status=$?
echo "sanitize: fuzz tests ran in $((SECONDS - start)) s"
exit $status
