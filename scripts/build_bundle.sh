#!/usr/bin/env bash
# Build the Tater Desktop bundle from a clean build directory and report its size and build time.
#
#   scripts/build_bundle.sh                       # llama_cpp runtime if installed
#   TATER_BUNDLE_RUNTIMES=llama_cpp,mlx_lm scripts/build_bundle.sh
#   DIST_DIR=/tmp/dist WORK_DIR=/tmp/work scripts/build_bundle.sh
#
# PYTHON selects the interpreter (default: .venv/bin/python if present, else python3); it needs
# pyinstaller==6.22.3 and the app's dependencies installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python
  elif [[ -x .venv/Scripts/python.exe ]]; then PYTHON=.venv/Scripts/python.exe
  else PYTHON=python3; fi
fi
DIST_DIR="${DIST_DIR:-$ROOT/dist}"
WORK_DIR="${WORK_DIR:-$ROOT/build}"

if [[ "$(uname -s)" == "Linux" ]] && ! command -v objdump >/dev/null; then
  # PyInstaller's binary dependency analysis needs objdump (binutils) on Linux.
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y --no-install-recommends binutils
  else
    echo "error: objdump not found; install binutils" >&2; exit 1
  fi
fi

"$PYTHON" -c 'import PyInstaller, sys; sys.exit(0 if PyInstaller.__version__ == "6.22.3" else 1)' \
  || { echo "error: $PYTHON needs pyinstaller==6.22.3" >&2; exit 1; }

rm -rf "$WORK_DIR" "$DIST_DIR/tater" "$DIST_DIR/Tater Desktop.app"
start=$(date +%s.%N)
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level "${PYI_LOG_LEVEL:-WARN}" \
  --distpath "$DIST_DIR" --workpath "$WORK_DIR" build.spec
end=$(date +%s.%N)

if [[ -d "$DIST_DIR/Tater Desktop.app" ]]; then OUT="$DIST_DIR/Tater Desktop.app"; else OUT="$DIST_DIR/tater"; fi
INFO="$(find "$OUT" -name bundle_runtimes.json -print -quit)"
echo "bundle:     $OUT"
echo "build time: $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f s", e - s }')"
# shellcheck disable=SC2016
echo "size:       $("$PYTHON" -c '
import os, sys
files = [os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs]
total = sum(os.lstat(f).st_size for f in files)
print(f"{total / 2**20:.1f} MiB ({total} bytes, {len(files)} files)")' "$OUT")"
echo "runtimes:   $("$PYTHON" -c 'import json, sys; print(", ".join(json.load(open(sys.argv[1]))["runtimes"]) or "none")' "$INFO")"
