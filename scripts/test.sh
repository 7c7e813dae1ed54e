#!/usr/bin/env bash
# Run the whole test suite offline: creates ./venv on first use, installs the pinned
# requirements, then lint, type-check and pytest (with coverage). No cluster, Docker or GPU needed.
# The PromQL tests run on Prometheus' own engine: promtool, from Debian's `prometheus` package,
# installed here when missing (as root, or with passwordless sudo, on Debian/Ubuntu; ~10 s once).
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin="${PYTHON:-python3}"
if [ ! -x venv/bin/python ]; then
  "$python_bin" -m venv venv
fi
. venv/bin/activate
# Install only when the requirement files changed since the last install (fast re-runs).
stamp=venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt recommender/requirements.txt 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

install_promtool() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if sudo -n true 2>/dev/null; then sudo="sudo -n"; else return 1; fi
  fi
  command -v apt-get >/dev/null || return 1
  echo "== installing promtool (Debian package prometheus)"
  # Never let the package's maintainer scripts start the Prometheus service: only promtool is used.
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 0755 "$policy"
  fi
  local rc=0 log; log="$(mktemp)"
  { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
    </dev/null >"$log" 2>&1 || rc=$?
  [ -z "$policy" ] || $sudo rm -f "$policy"
  [ "$rc" = 0 ] || tail -n 20 "$log" >&2
  rm -f "$log"
  return "$rc"
}
if ! command -v promtool >/dev/null; then
  install_promtool || echo "warning: promtool is missing and could not be installed (needs root or sudo on" \
    "Debian/Ubuntu): the PromQL tests will fail; install Debian's prometheus package or put promtool on PATH" >&2
fi

echo "== ruff"; ruff check .
echo "== mypy"; mypy mlplatform workloads recommender policy
echo "== pytest"
python -m pytest --cov --cov-report=term "$@"
