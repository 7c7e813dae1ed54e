#!/usr/bin/env bash
# The real-container tier (README's optional third command; CI runs it after scripts/test.sh):
# builds recommender/Dockerfile and runs the rendered pods' containers exactly as their pods run
# them (tests/container_tier.py): the dev stack's training JobSet (prepare, then two workers and
# finish side by side), the one-worker stack's training Job and retraining CronJob (it must
# promote the version the JobSet promoted), and the Deployment. The retraining launcher needs an
# API server, so it is checked as written, not run.
#
# Docker: uses the engine that answers `docker info`. If none does and this runs as root, it
# installs Debian's docker.io (with containerd and runc) when missing, starts a private engine
# for this run (its own socket, no iptables changes, no forwarding off the host) and stops it.
# Base: as root, a stand-in for the official python:3.11-slim-bookworm image, made from Debian
# packages with debootstrap (no image registry needed), with the Python dependencies as wheels
# downloaded here, so the image build runs without network. Otherwise, the Dockerfile's own
# base from Docker Hub (ML_PLATFORM_CI_BASE=official|standin chooses).
# Cache, this machine only: ML_PLATFORM_CI_CACHE (default /var/cache/ml-platform-ci as root).
# Delete it to start cold; the stand-in base is rebuilt monthly to pick up Debian updates.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm                  # the Debian release of the Dockerfile's pinned official base
PACKAGES=python3,python3-venv   # Debian's python3 is 3.11 in bookworm, like the official base
MIRROR="${ML_PLATFORM_CI_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_MAX_AGE_DAYS=30
if [ "$(id -u)" = 0 ]; then
  CACHE="${ML_PLATFORM_CI_CACHE:-/var/cache/ml-platform-ci}"
  MODE="${ML_PLATFORM_CI_BASE:-standin}"
else
  CACHE="${ML_PLATFORM_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ml-platform-ci}"
  MODE="${ML_PLATFORM_CI_BASE:-official}"
fi
RUN_DIR=/run/ml-platform-ci
STARTED_ENGINE_PID=""
CREATED_BRIDGE=""
STEP="start"
SUMMARY_FILE="$(mktemp)"

say() { echo "== $*"; }
die() { echo "error: $*" >&2; exit 1; }

finish() {
  local rc=$?
  set +e
  stop_engine
  local detail; detail="$(cat "$SUMMARY_FILE" 2>/dev/null)"; rm -f "$SUMMARY_FILE"
  if [ "$rc" = 0 ]; then
    echo "container tier: PASSED in ${SECONDS} s: ${detail}"
  else
    echo "container tier: FAILED after ${SECONDS} s at step '${STEP}'${detail:+: ${detail}}"
  fi
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "missing $*: install them (Debian packages) or run this as root on Debian"
  fi
  # Never let a package's maintainer script start a service: this run starts only what it stops.
  local policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 0755 "$policy"
  fi
  local rc=0 log; log="$(mktemp)"
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; } </dev/null >"$log" 2>&1 \
    || rc=$?
  [ -z "$policy" ] || rm -f "$policy"
  [ "$rc" = 0 ] || { tail -n 20 "$log" >&2; rm -f "$log"; die "apt-get install $* failed"; }
  rm -f "$log"
}

engine_answers() { timeout 20 docker info >/dev/null 2>&1; }

start_engine() {
  STEP="docker engine"
  if engine_answers; then say "docker: using the running engine"; return; fi
  [ "$(id -u)" = 0 ] || die "no Docker engine answers: start Docker, or run this as root to have one started"
  export DOCKER_HOST="unix://$RUN_DIR/docker.sock"
  if engine_answers; then   # left by a run that was killed: adopt it, and stop it at the end
    STARTED_ENGINE_PID="$(cat "$RUN_DIR/dockerd.pid")"; say "docker: adopted the engine a killed run left"; return
  fi
  local missing=()
  for tool in dockerd:docker.io containerd:containerd runc:runc docker:docker.io; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then say "docker: installing ${missing[*]}"; apt_install "${missing[@]}"; fi
  mkdir -p "$RUN_DIR" "$CACHE/docker"
  ip link show docker0 >/dev/null 2>&1 || CREATED_BRIDGE=docker0
  # No iptables rules and no IP forwarding: a container reaches the host and nothing beyond, and
  # published ports go through docker-proxy on the host's loopback. overlay2 works on ext4.
  dockerd --host "$DOCKER_HOST" --data-root "$CACHE/docker" --exec-root "$RUN_DIR/exec" \
    --pidfile "$RUN_DIR/dockerd.pid" --iptables=false --ip-forward=false --storage-driver overlay2 \
    </dev/null >"$CACHE/dockerd.log" 2>&1 &
  STARTED_ENGINE_PID=$!
  for _ in $(seq 60); do
    engine_answers && { say "docker: started a private engine ($(docker version -f '{{.Server.Version}}'))"; return; }
    kill -0 "$STARTED_ENGINE_PID" 2>/dev/null || break
    sleep 1
  done
  tail -n 20 "$CACHE/dockerd.log" >&2
  die "the Docker engine did not start (log: $CACHE/dockerd.log)"
}

stop_engine() {
  [ -n "$STARTED_ENGINE_PID" ] || return 0
  kill -TERM "$STARTED_ENGINE_PID" 2>/dev/null
  for _ in $(seq 30); do kill -0 "$STARTED_ENGINE_PID" 2>/dev/null || break; sleep 1; done
  kill -KILL "$STARTED_ENGINE_PID" 2>/dev/null
  [ -z "$CREATED_BRIDGE" ] || ip link delete "$CREATED_BRIDGE" 2>/dev/null
  STARTED_ENGINE_PID=""
}

# The stand-in base: Debian's minimal system plus python3, slimmed as the official slim images are.
standin_base() {
  STEP="stand-in base image"
  local recipe key tar
  recipe="v1 $SUITE minbase $PACKAGES -doc -man -info -locale -apt-lists PATH LANG"
  key="$(printf '%s' "$recipe" | sha256sum | cut -c1-12)"
  BASE_IMAGE="ml-platform-ci/python:$SUITE-$key"
  tar="$CACHE/base/$SUITE-$key.tar"
  mkdir -p "$CACHE/base"
  find "$CACHE/base" -name '*.tar' \( ! -name "$SUITE-$key.tar" -o -mtime +"$BASE_MAX_AGE_DAYS" \) -delete
  if [ ! -f "$tar" ]; then
    command -v debootstrap >/dev/null || { say "base: installing debootstrap"; apt_install debootstrap; }
    say "base: debootstrap $SUITE with $PACKAGES from $MIRROR"
    local work; work="$(mktemp -d "$CACHE/base/build.XXXXXX")"
    if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" \
         </dev/null >"$work/log" 2>&1; then
      tail -n 20 "$work/log" >&2; rm -rf "$work"; die "debootstrap failed"
    fi
    (cd "$work/rootfs" && rm -rf var/cache/apt/archives/*.deb var/lib/apt/lists/* usr/share/doc/* \
       usr/share/man/* usr/share/info/* \
     && find usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +)
    tar --numeric-owner -C "$work/rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
      -cf "$tar.partial" .
    mv "$tar.partial" "$tar"; rm -rf "$work"
  fi
  if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
     || [ "$(docker image inspect -f '{{index .Config.Labels "tar-mtime"}}' "$BASE_IMAGE")" != "$(stat -c %Y "$tar")" ]; then
    docker import --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
      --change "ENV LANG=C.UTF-8" --change 'CMD ["python3"]' --change "LABEL tar-mtime=$(stat -c %Y "$tar")" \
      "$tar" "$BASE_IMAGE" >/dev/null
  fi
  say "base: $BASE_IMAGE ($(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

# The build stage's image: the base plus the wheels and pip settings that point at them.
wheels_builder() {
  STEP="wheels"
  local platforms=() key dir
  for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_$(uname -m)"); done
  key="$( (cat recommender/requirements.txt; echo "${platforms[*]}") | sha256sum | cut -c1-12)"
  dir="$CACHE/wheels/$key"
  mkdir -p "$CACHE/wheels"
  find "$CACHE/wheels" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
  if [ ! -f "$dir/.complete" ]; then
    say "wheels: downloading recommender/requirements.txt for CPython 3.11"
    rm -rf "$dir"
    venv/bin/python -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
      "${platforms[@]}" --python-version 3.11 --implementation cp --abi cp311 \
      -r recommender/requirements.txt -d "$dir" </dev/null >"$CACHE/wheels/log" 2>&1 \
      || { tail -n 20 "$CACHE/wheels/log" >&2; die "pip download failed"; }
    touch "$dir/.complete"
  fi
  BUILD_IMAGE="$BASE_IMAGE-wheels-$key"
  if ! docker image inspect "$BUILD_IMAGE" >/dev/null 2>&1; then
    local context; context="$(mktemp -d)"
    cp -al "$dir" "$context/wheels" 2>/dev/null || cp -a "$dir" "$context/wheels"
    printf 'FROM %s\nCOPY wheels /wheels\nENV PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels\n' "$BASE_IMAGE" > "$context/Dockerfile"
    DOCKER_BUILDKIT=0 docker build --quiet --network none --tag "$BUILD_IMAGE" "$context" >/dev/null 2>"$context/log" \
      || { cat "$context/log" >&2; rm -rf "$context"; die "could not build $BUILD_IMAGE"; }
    rm -rf "$context"
  fi
  say "wheels: $(find "$dir" -name '*.whl' | wc -l) in $BUILD_IMAGE"
}

# Keep the newest tier image (its layers are the next build's cache) and the current bases.
prune() {
  STEP="prune"
  local keep=("${BASE_IMAGE:-}" "${BUILD_IMAGE:-}") ref
  docker images --format '{{.Repository}}:{{.Tag}}' 'ml-platform-ci/bookstore-recommender' | tail -n +2 \
    | while read -r ref; do docker image rm "$ref" >/dev/null 2>&1 || true; done
  docker images --format '{{.Repository}}:{{.Tag}}' 'ml-platform-ci/python' | while read -r ref; do
    [[ " ${keep[*]} " == *" $ref "* ]] || docker image rm "$ref" >/dev/null 2>&1 || true
  done
  [ -z "$STARTED_ENGINE_PID" ] || docker image prune --force >/dev/null 2>&1 || true
}

STEP="preflight"
[ -x venv/bin/python ] || die "no ./venv: run 'bash scripts/test.sh' first (it creates it)"
case "$MODE" in standin | official) ;; *) die "ML_PLATFORM_CI_BASE must be standin or official, got '$MODE'";; esac
[ "$MODE" = official ] || [ "$(id -u)" = 0 ] || die "the stand-in base needs root (debootstrap); use ML_PLATFORM_CI_BASE=official"
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock -w 900 9 || die "another container tier run holds $CACHE/lock"

start_engine
args=(--summary-file "$SUMMARY_FILE")
if [ "$MODE" = standin ]; then
  standin_base
  wheels_builder
  args+=(--base-image "$BASE_IMAGE" --build-image "$BUILD_IMAGE")
fi
STEP="image and pods"
venv/bin/python -m tests.container_tier "${args[@]}" </dev/null
prune
