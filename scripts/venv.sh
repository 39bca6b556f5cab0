# Sourced by the other scripts: create or refresh the project's .venv from the lock files.
#
# A stamp per lock records what is installed, so an unchanged checkout skips
# pip entirely and a changed lock file (or pyproject.toml, or the version in
# src/oriserver/__init__.py, which the installed metadata copies) reinstalls.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ORI_VENV:-$ROOT/.venv}"

_find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "oriserver needs Python 3.11 or newer on PATH (or set PYTHON=/path/to/python3.11)" >&2
    return 2
}

# ensure_venv LOCK...: install the named lock files (runtime, build, dev) and the project.
ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        local python
        python="$(_find_python)"
        echo "creating $VENV with $python" >&2
        "$python" -m venv "$VENV" || {
            echo "could not create a virtual environment; on Debian/Ubuntu: apt-get install python3-venv" >&2
            return 2
        }
    fi
    local lock stamp want
    for lock in "$@"; do
        stamp="$VENV/.installed-$lock"
        want="$(cat "$ROOT/requirements/$lock.txt" "$ROOT/pyproject.toml" "$ROOT/src/oriserver/__init__.py" | sha256sum | cut -d' ' -f1)"
        if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
            echo "installing requirements/$lock.txt into $VENV" >&2
            "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
                --require-hashes --no-deps -r "$ROOT/requirements/$lock.txt"
            "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
                --no-deps --no-build-isolation -e "$ROOT"
            echo "$want" >"$stamp"
        fi
    done
    export PATH="$VENV/bin:$PATH"
}
