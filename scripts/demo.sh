#!/usr/bin/env bash
# `make demo`: an emulated TCP ping-pong between two simulated hosts, in both mediation modes.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
$bin/simterpose --version
TIMEFORMAT="wall time of the whole run: %R s"
for mode in address-translation full-mediation; do
  echo
  echo "== simterpose run examples/scenarios/pingpong.yaml --mediate $mode --cpu-model none"
  time $bin/simterpose run examples/scenarios/pingpong.yaml --mediate "$mode" --cpu-model none
done
