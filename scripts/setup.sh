#!/usr/bin/env bash
# Installs what building tern needs on Debian, and prints what it installs:
#   - apt packages libclang-dev libbsd-dev uuid-dev (rusteron builds the Aeron C sources with them)
#   - cmake >= 3.30 from PyPI into .tools/venv (Debian 12 ships 3.25, too old for Aeron's build)
# Source it (`. scripts/setup.sh`) to get PATH and RUSTERON_C_MARCH in the calling shell.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "setup: $*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is missing: install Rust with rustup (https://rustup.rs), then run this again"
  exit 1
fi

missing=()
for package in libclang-dev libbsd-dev uuid-dev; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  say "installing apt packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cmake_ok() {
  local version
  version="$("$1" --version 2>/dev/null | head -n1 | awk '{print $3}')" || return 1
  [ -n "$version" ] && [ "$(printf '%s\n' 3.30 "$version" | sort -V | head -n1)" = 3.30 ]
}
if ! { command -v cmake >/dev/null 2>&1 && cmake_ok cmake; }; then
  venv="$repo/.tools/venv"
  if ! cmake_ok "$venv/bin/cmake"; then
    say "installing cmake>=3.30,<4 from PyPI into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'cmake>=3.30,<4'
  fi
  export PATH="$venv/bin:$PATH"
fi

# Aeron's C build defaults to -march=native; a portable target keeps binaries runnable elsewhere.
export RUSTERON_C_MARCH="${RUSTERON_C_MARCH:-x86-64-v2}"
say "ready: $(cmake --version | head -n1), $(cargo --version), RUSTERON_C_MARCH=$RUSTERON_C_MARCH"
