#!/usr/bin/env bash
# Installs everything perfmem needs on Debian bookworm; safe to run again (it skips what is there).
#
#   scripts/deps/*.apt   one Debian package per line (# comments allowed), grouped by system
#   scripts/deps/*.pip   pinned PyPI requirements for the Python test oracles
#
# Python oracles live in a virtual environment outside the clone (PERFMEM_VENV, default
# ~/.cache/perfmem/venv) made from Debian's python3 with --system-site-packages, so Debian's
# python3-torch and python3-numpy are used instead of multi-GB wheels. The venv is rebuilt only
# when the requirement files change.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "install-deps: $*" >&2; exit 1; }

if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  SUDO=""; fi

# ---- Debian packages -------------------------------------------------------------------------
mapfile -t wanted < <(cat scripts/deps/*.apt | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
missing=()
for pkg in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${#missing[@]} Debian package(s): ${missing[*]}"
  command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || die "apt-get update failed (is the Debian archive reachable?)"
  for pkg in "${missing[@]}"; do
    apt-cache show "$pkg" >/dev/null 2>&1 || die "package '$pkg' is not available from the configured Debian archive"
  done
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install failed for: ${missing[*]}"
else
  echo "install-deps: all ${#wanted[@]} Debian packages present"
fi

# ---- Python virtual environment for test oracles --------------------------------------------
venv="${PERFMEM_VENV:-$HOME/.cache/perfmem/venv}"
reqs=$(cat scripts/deps/*.pip 2>/dev/null | sed 's/#.*//' | sed '/^[[:space:]]*$/d' | sort -u || true)
if [ -n "$reqs" ]; then
  stamp="$venv/.perfmem-requirements"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$reqs" ]; then
    echo "install-deps: Python venv up to date ($venv)"
  else
    echo "install-deps: preparing Python venv at $venv"
    [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv" \
      || die "could not create a virtual environment with /usr/bin/python3 (python3-venv installed?)"
    printf '%s\n' "$reqs" > "$venv/requirements.txt"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$venv/requirements.txt" \
      || die "pip could not install the oracle requirements (scripts/deps/*.pip)"
    printf '%s' "$reqs" > "$stamp"
  fi
fi
echo "install-deps: done"
