# Sourced by the other scripts: create or refresh the project's .venv from the lock files.
#
# A stamp per lock, and one for the project, records what is installed, so an unchanged
# checkout skips pip entirely and a changed lock file (or pyproject.toml, or the version in
# src/oriserver/__init__.py, which the installed metadata copies) reinstalls. Every
# named lock is installed before the project itself: the editable install builds without
# isolation (no network), with the hatchling that a lock (build or dev) has put in .venv.
#
# A failure prints one line saying what failed and what to do, and returns 2 when the machine
# lacks what the scripts need (a Python 3.11+ that can create virtual environments), else 1.
# pip's own output goes to .venv/pip.log, not to the terminal.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ORI_VENV:-$ROOT/.venv}"
PIP_LOG="$VENV/pip.log"

# _venv_error CODE MESSAGE: the one line a failure prints; returns CODE.
_venv_error() {
    echo "error: $2" >&2
    return "$1"
}

_is_usable_python() {
    command -v "$1" >/dev/null 2>&1 &&
        "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}

# PYTHON, when set, is the user's choice: an unusable one is an error, not a reason to guess.
_find_python() {
    if [ -n "${PYTHON:-}" ]; then
        _is_usable_python "$PYTHON" && { echo "$PYTHON"; return 0; }
        _venv_error 2 "PYTHON=$PYTHON is not a Python 3.11 or newer: point PYTHON at one, or unset it to search PATH"
        return
    fi
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        _is_usable_python "$candidate" && { echo "$candidate"; return 0; }
    done
    _venv_error 2 "no Python 3.11 or newer on PATH: install one, or set PYTHON=/path/to/python3.11"
}

_create_venv() {
    local python output existed=0
    python="$(_find_python)" || return
    "$python" -c 'import ensurepip, venv' >/dev/null 2>&1 ||
        { _venv_error 2 "$python cannot create virtual environments: on Debian/Ubuntu, apt-get install python3-venv"; return; }
    [ -e "$VENV" ] && existed=1
    echo "creating $VENV with $python" >&2
    if ! output="$("$python" -m venv "$VENV" 2>&1)"; then
        # A half-made .venv would be taken for a finished one next time; remove what we made.
        [ "$existed" = 1 ] || rm -rf "$VENV"
        _venv_error 1 "$python -m venv $VENV failed (${output##*$'\n'}): fix that, then run the command again"
        return
    fi
}

_digest() { # _digest FILE...: one hash of the files' contents
    cat "$@" | sha256sum | cut -d' ' -f1
}

_stamp_matches() { # _stamp_matches NAME FILE...: the stamp for NAME records the files' content
    local name="$1"
    shift
    [ "$(cat "$VENV/.installed-$name" 2>/dev/null)" = "$(_digest "$@")" ]
}

# _pip_install NAME DIGEST WHAT ARGS...: pip install ARGS, then stamp NAME with DIGEST.
_pip_install() {
    local name="$1" digest="$2" what="$3"
    shift 3
    echo "installing $what into $VENV" >&2
    echo "== pip install $*" >>"$PIP_LOG"
    "$VENV/bin/python" -m pip install --disable-pip-version-check "$@" >>"$PIP_LOG" 2>&1 ||
        {
            _venv_error 1 "pip could not install $what into $VENV; see $PIP_LOG, fix what it reports (often no access to the package index), then run the command again"
            return
        }
    echo "$digest" >"$VENV/.installed-$name"
}

# ensure_venv LOCK...: install the named lock files (runtime, build, dev), then the project.
ensure_venv() {
    [ -x "$VENV/bin/python" ] || _create_venv || return
    local lock lock_file installed=0
    for lock in "$@"; do
        lock_file="$ROOT/requirements/$lock.txt"
        _stamp_matches "$lock" "$lock_file" && continue
        [ "$installed" = 1 ] || : >"$PIP_LOG"
        _pip_install "$lock" "$(_digest "$lock_file")" "requirements/$lock.txt" \
            --require-hashes --no-deps -r "$lock_file" || return
        installed=1
    done
    # A lock that changed may have replaced what the editable install was built with.
    local project=("$ROOT/pyproject.toml" "$ROOT/src/oriserver/__init__.py")
    if [ "$installed" = 1 ] || ! _stamp_matches project "${project[@]}"; then
        [ "$installed" = 1 ] || : >"$PIP_LOG"
        _pip_install project "$(_digest "${project[@]}")" "the project (editable)" \
            --no-deps --no-build-isolation -e "$ROOT" || return
    fi
    export PATH="$VENV/bin:$PATH"
}
