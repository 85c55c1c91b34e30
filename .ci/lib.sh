# Helpers shared by the .ci/ scripts (sourced, not run).

# new_venv DIR [PYTHON]: a fresh venv at DIR with a current pip, activated.
new_venv() {
    "${2:-python3}" -m venv "$1"
    # shellcheck disable=SC1091
    . "$1/bin/activate"
    quietly python -m pip install --upgrade pip
}

# quietly CMD...: run CMD with its output kept aside, shown only if it fails
# (pip's install chatter would bury everything else in the CI log).
quietly() {
    local log
    log=$(mktemp)
    if "$@" > "$log" 2>&1; then
        rm -f "$log"
    else
        local status=$?
        cat "$log" >&2
        rm -f "$log"
        echo "CI: failed (exit status $status): $*" >&2
        return "$status"
    fi
}
