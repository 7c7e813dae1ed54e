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

if ! command -v promtool >/dev/null; then
  bash scripts/install-promtool.sh || echo "warning: promtool is missing and could not be installed (needs root" \
    "or sudo on Debian/Ubuntu): the PromQL tests will fail; install Debian's prometheus package or put promtool" \
    "on PATH" >&2
fi

echo "== ruff"; ruff check .
echo "== mypy"; mypy mlplatform workloads recommender policy
echo "== pytest"
# One worker per core, at most 4 (each renders the stacks its modules need); PYTEST_WORKERS overrides
# (0 = in this process, e.g. for pdb).
python -m pytest -n "${PYTEST_WORKERS:-auto}" --maxprocesses 4 --cov --cov-report=term "$@"
