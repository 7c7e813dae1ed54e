#!/usr/bin/env bash
# Install promtool (Prometheus' rule tester; the tests run the platform's PromQL on it) from the
# Debian/Ubuntu package `prometheus`, as root or with passwordless sudo. The package's service
# is never started: a policy-rc.d refuses it for the duration of the install (as
# scripts/container-test.sh does for docker.io). Exit 0 when promtool is there afterwards.
set -euo pipefail

command -v promtool >/dev/null && exit 0
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo -n true 2>/dev/null || { echo "install-promtool: needs root or passwordless sudo" >&2; exit 1; }
  sudo="sudo -n"
fi
command -v apt-get >/dev/null || { echo "install-promtool: no apt-get (not Debian/Ubuntu)" >&2; exit 1; }

echo "== installing promtool (Debian package prometheus)"
policy_rc_d="${POLICY_RC_D:-/usr/sbin/policy-rc.d}"
created=""
if [ ! -e "$policy_rc_d" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy_rc_d" >/dev/null
  $sudo chmod 0755 "$policy_rc_d"
  created=1
fi
rc=0
log="$(mktemp)"
{ $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
  && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
  </dev/null >"$log" 2>&1 || rc=$?
[ -z "$created" ] || $sudo rm -f "$policy_rc_d"
if [ "$rc" != 0 ]; then tail -n 20 "$log" >&2; fi
rm -f "$log"
[ "$rc" = 0 ] && command -v promtool >/dev/null
