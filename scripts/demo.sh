#!/usr/bin/env bash
# The main job: set up, build, and run the default failover drill
# (simulator/scenarios/leader-kill.yaml): a local 3-node remsd cluster on
# loopback, 200 simulated agents over mTLS, a policy rollout and commands at
# 20/s, the leader SIGKILLed mid-way; then the report (failover figures,
# commands, assertions) and the paths of the JSON report and the timeline
# picture (SVG). Exit status: rems-sim's (0 when every assertion held).
#
# Environment: REMS_BUILD_DIR (default build), REMS_DRILL_OUT (where the
# report files go; default drill-report/), REMS_DRILL_SEED (default: from
# the clock), REMS_DRILL (another scenario file).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${REMS_BUILD_DIR:-build}
out=${REMS_DRILL_OUT:-drill-report}
scenario=${REMS_DRILL:-simulator/scenarios/leader-kill.yaml}

echo "== setup and build" >&2
bash scripts/build.sh "$build"
mkdir -p "$out"
echo "== drill: $scenario" >&2
args=(--out "$out" --remsd "$build/api/remsd")
if [ -n "${REMS_DRILL_SEED:-}" ]; then
    args+=(--seed "$REMS_DRILL_SEED")
fi
start=$(date +%s)
rc=0
"$build/simulator/rems-sim" "${args[@]}" "$scenario" || rc=$?
echo "== the drill took $(( $(date +%s) - start )) s; rems-sim exited $rc" >&2
exit "$rc"
