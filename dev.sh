#!/usr/bin/env bash
# Tater Desktop: set up (idempotent) and run the app, the headless server, or the test suite.
#
#   ./dev.sh run [args]     set up, then start the tray app (no display? it tells you to use `serve`)
#   ./dev.sh serve [args]   set up, then run the API headless:  ./dev.sh serve --model path/to/model.gguf
#   ./dev.sh test [args]    set up everything the tests need, then run the whole suite (args go to pytest)
#   ./dev.sh setup [app|test]
#
# Debian/Ubuntu system packages are installed with apt-get when running as root (or with sudo).
# llama-cpp-python has no binary wheel on PyPI: it is compiled once (minutes) into a wheel cache
# (~/.cache/tater-desktop/wheels, override with TATER_WHEEL_CACHE) and reused from there.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${TATER_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
LLAMA_VERSION=0.3.36
LLAMA_CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"
WHEEL_CACHE=${TATER_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tater-desktop/wheels}
LLAMA_WHEELS=$WHEEL_CACHE/llama-$LLAMA_VERSION-nollava-portable
NPM_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/tater-desktop/npm
CLAUDE_CODE_VERSION=2.1.197
CODEX_VERSION=0.171.0
# The MCP reference server the suite drives Hydra against (tests/mcp/test_mcp_everything.py).
MCP_EVERYTHING_VERSION=2026.8.31
ZOD_VERSION=4.6.7

APP_APT=(libglib2.0-0 libegl1 libgl1 libx11-6 libdbus-1-3 libfontconfig1 libxkbcommon0
  libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-render0
  libxcb-shape0 libxcb-util1 libxcb-xkb1 libxkbcommon-x11-0 cmake build-essential)
TEST_APT=(xvfb xauth trayer xdotool x11-utils imagemagick dbus dbus-x11 gnome-keyring binutils)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
  command -v apt-get >/dev/null || { say "not a Debian system: install the equivalent of: $*"; return 0; }
  local missing=()
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && { command -v sudo >/dev/null && sudo=sudo || { say "please install: ${missing[*]}"; return 0; }; }
  say "apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

llama_wheel() {
  if ! ls "$LLAMA_WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl >/dev/null 2>&1; then
    say "compiling llama-cpp-python $LLAMA_VERSION once (several minutes) into $LLAMA_WHEELS"
    mkdir -p "$LLAMA_WHEELS"
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$VENV/bin/pip" wheel -q --no-cache-dir --no-deps \
      -w "$LLAMA_WHEELS" "llama-cpp-python==$LLAMA_VERSION"
  fi
}

npm_tool() {  # $1 = npm package, $2 = version: installed once into $NPM_CACHE/<name>-<version>
  local dir="$NPM_CACHE/$(basename "$1")-$2"
  [ -f "$dir/.installed" ] && return 0
  command -v npm >/dev/null || { apt_install nodejs npm; }
  command -v npm >/dev/null || { say "npm not found: the agent CLI tests need $1@$2"; return 0; }
  say "installing $1@$2 into $dir"
  mkdir -p "$dir"
  npm install --silent --no-audit --no-fund --prefix "$dir" "$1@$2" && touch "$dir/.installed"
}

setup() {  # $1 = app | test
  local what=$1 extras
  if [ "$what" = test ]; then
    apt_install "${APP_APT[@]}" "${TEST_APT[@]}"
  else
    apt_install "${APP_APT[@]}"
  fi
  [ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PY" -m venv "$VENV"; }
  extras="ui,llama"
  [ "$what" = test ] && extras="ui,llama,mlx,hf,test,bundle"
  [ -n "${TATER_EXTRAS:-}" ] && extras="$extras,$TATER_EXTRAS"
  if [ "$what" = test ]; then
    npm_tool @anthropic-ai/claude-code "$CLAUDE_CODE_VERSION"  # tests/messages
    npm_tool @openai/codex "$CODEX_VERSION"  # tests/responses
    npm_tool @modelcontextprotocol/server-everything "$MCP_EVERYTHING_VERSION"  # tests/mcp
    npm_tool zod "$ZOD_VERSION"  # tests/providers/schema_corpus.py prints zod's JSON Schemas with node
  fi
  local stamp="$VENV/.tater-setup-$what" want
  want=$(cat "$ROOT/pyproject.toml" "$ROOT/dev.sh" | sha256sum | cut -c1-16)-$extras
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  llama_wheel
  if [ "$what" = test ] || [[ "$extras" == *hf* ]]; then
    # The CPU build of torch: a looser requirement pulls gigabytes of CUDA packages.
    "$VENV/bin/pip" install -q "torch==2.13.0"
  fi
  say "installing tater-desktop[$extras]"
  "$VENV/bin/pip" install -q --find-links "$LLAMA_WHEELS" -e "$ROOT[$extras]"
  echo "$want" > "$stamp"
}

has_display() { [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || [ "$(uname)" = Darwin ]; }

cmd=${1:-run}
[ $# -gt 0 ] && shift
case "$cmd" in
  run)
    setup app
    if ! has_display && [ -z "${QT_QPA_PLATFORM:-}" ]; then
      say "no display found: the tray app needs a desktop session."
      say "run the API headless instead:  ./dev.sh serve --model /path/to/model.gguf"
      exit 2
    fi
    exec "$VENV/bin/tater" "$@" ;;
  serve) setup app; exec "$VENV/bin/tater" serve "$@" ;;
  test)
    setup test
    cd "$ROOT"
    exec "$VENV/bin/python" -m pytest "$@" ;;
  setup) setup "${1:-test}" ;;
  *) echo "usage: $0 {run|serve|test|setup} [args]" >&2; exit 2 ;;
esac
