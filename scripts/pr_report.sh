#!/usr/bin/env bash
# The pull-request comment, built offline (no cluster, cloud account, credentials or Pulumi CLI):
# render the base and the head checkout for each stack, diff them object by object
# (python -m mlplatform.render_diff), add the upgrade plan when a chart or image version changes
# (python -m mlplatform.upgrade_plan: CRD changes, replaced objects, apply order), and run the
# policy pack on the head's stacks (python -m tests.policy.report). Run from the head checkout:
#
#   bash scripts/pr_report.sh BASE_CHECKOUT OUT_FILE
#
# Writes OUT_FILE (Markdown; its first line is the marker the workflow finds its comment by).
# Exit status: 1 if the head does not render, the diff fails or the policy pack finds a mandatory
# violation; 0 otherwise. Changes to the desired state are what a pull request is for: not a failure.
# A base that cannot be rendered (an older layout, a new stack) is said in the comment, not a failure.
# Environment: PYTHON_HEAD (default venv/bin/python), PYTHON_BASE (default BASE_CHECKOUT/venv/bin/python),
# STACKS (default "dev eks").
set -uo pipefail

if [ $# -ne 2 ]; then
  echo "usage: bash scripts/pr_report.sh BASE_CHECKOUT OUT_FILE" >&2
  exit 2
fi
base_dir=$(cd "$1" 2>/dev/null && pwd) || { echo "error: base checkout $1 does not exist" >&2; exit 2; }
out=$2
py_head=${PYTHON_HEAD:-venv/bin/python}
py_base=${PYTHON_BASE:-$base_dir/venv/bin/python}
stacks=${STACKS:-dev eks}
# The eks stack needs an address for its API endpoint; a documentation range stands in (RFC 5737).
eks_address='eksPublicAccessCidrs=["203.0.113.7/32"]'
marker='<!-- ml-platform:pull-request-report -->'

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/base" "$work/head" "$work/both/base" "$work/both/head"
status=0
notes=()

last_lines() { local text; text=$(tail -n "$1" "$2" | tr '\n' ' '); echo "${text:-(no output)}"; }
render_args() { if [ "$1" = eks ]; then printf '%s\n' --stack eks --set "$eks_address"; else printf '%s\n' --stack "$1"; fi; }

for stack in $stacks; do
  mapfile -t args < <(render_args "$stack")
  if ! "$py_head" -m mlplatform.render "${args[@]}" --out "$work/head" > "$work/head-$stack.log" 2>&1; then
    notes+=("**The pull request does not render stack \`$stack\`:** \`$(last_lines 3 "$work/head-$stack.log")\`")
    status=1
    continue
  fi
  if ! (cd "$base_dir" && "$py_base" -m mlplatform.render "${args[@]}" --out "$work/base") > "$work/base-$stack.log" 2>&1; then
    notes+=("The base branch could not be rendered for stack \`$stack\`, so it is not compared: \`$(last_lines 2 "$work/base-$stack.log")\`")
    continue
  fi
  mv "$work/base/$stack" "$work/both/base/$stack" && mv "$work/head/$stack" "$work/both/head/$stack"
done

{
  echo "$marker"
  echo "## What this pull request changes"
  echo
  echo "Rendered offline from the base and the head of this pull request (no cluster, no credentials;" \
       "secrets redacted). Locally: \`python -m mlplatform.render_diff BASE_RENDER HEAD_RENDER\` (README, \"Reviewing a change\")."
  echo
  for note in "${notes[@]}"; do echo "$note"; echo; done
} > "$out"

if compgen -G "$work/both/head/*" > /dev/null; then
  "$py_head" -m mlplatform.render_diff "$work/both/base" "$work/both/head" --max-chars 45000 >> "$out" 2> "$work/diff.log"
  rc=$?
  if [ "$rc" -gt 1 ]; then
    { echo "**The desired-state diff failed:** \`$(last_lines 5 "$work/diff.log")\`"; echo; } >> "$out"
    status=1
  fi
  # Only when a version changes; exit 1 is a plan that deletes a CRD (said in it), not a failure.
  "$py_head" -m mlplatform.upgrade_plan --base-render "$work/both/base" --head-render "$work/both/head" \
    --format markdown --if-versions-change > "$work/plan.md" 2> "$work/plan.log"
  rc=$?
  if [ "$rc" -le 1 ]; then
    if [ -s "$work/plan.md" ]; then { echo; cat "$work/plan.md"; } >> "$out"; fi
  else
    { echo; echo "**The upgrade plan failed:** \`$(last_lines 5 "$work/plan.log")\`"; echo; } >> "$out"
    status=1
  fi
fi

{ echo; echo "### Policy pack (offline, on the head: the real pack process, every rule at its default level)"; echo; } >> "$out"
for stack in $stacks; do
  mapfile -t args < <(render_args "$stack")
  "$py_head" -m tests.policy.report "${args[@]}" > "$work/policy-$stack.md" 2> "$work/policy-$stack.log"
  rc=$?
  if [ "$rc" -le 1 ] && [ -s "$work/policy-$stack.md" ]; then
    cat "$work/policy-$stack.md" >> "$out"  # exit 1: a mandatory violation, listed in the report
  else
    echo "**The policy pack could not judge stack \`$stack\`:** \`$(last_lines 3 "$work/policy-$stack.log")\`" >> "$out"
    rc=2
  fi
  [ "$rc" -eq 0 ] || status=1
  echo >> "$out"
done

# A GitHub comment holds 65,536 characters; the diff is already shortened to fit, this is a last guard.
if [ "$(wc -c < "$out")" -gt 65000 ]; then
  head -c 64000 "$out" > "$work/cut.md"
  { cat "$work/cut.md"; echo; echo; echo "_… cut to fit a comment: run scripts/pr_report.sh locally for all of it._"; } > "$out"
fi
exit "$status"
