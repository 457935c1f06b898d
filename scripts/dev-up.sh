#!/usr/bin/env bash
# Bring up the executor's development infrastructure on this machine, idempotently:
# Docker engine (dockerd --bridge=none --iptables=false if none answers), the loopback
# registry (127.0.0.1:5000, or $PTM_REGISTRY), the base image ptm-base-python:bookworm
# (debootstrap once, then cached in ~/.cache/ptm_p2p), and the algorithm images, pushed
# and printed by digest. Same as `ptm dev up`; usable before ptm is on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m ptm_p2p.dev "$@"
