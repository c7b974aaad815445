#!/usr/bin/env bash
# Build the coco decorrelated dataset (configs "test" and "train"). This wraps the documented command,
#   hf-spurious build-dataset coco --data-dir "$COCO" [--push-to-hub REPO] [flags]
# which ships with the package (the card template too). Extra arguments go to it, e.g.
#   COCO=/data/coco bash dataset_scripts/coco_decorrelated/build.sh --inpainter opencv
# NPROC=4 shards the work over 4 processes (accelerate launch); PUSH=1 pushes to $REPO at the end (the token
# and the Hub are checked before the build). A rerun resumes from the finished shards.
set -euo pipefail
COCO="${COCO:?set COCO to the COCO root}"
REPO="${REPO:-$(python -c "from hf_spurious.hub import dataset_repo_id; print(dataset_repo_id('coco'))")}"
OUT="${OUT:-$REPO}"
NPROC="${NPROC:-1}"
ARGS=(build-dataset coco --data-dir "$COCO" --out "$OUT")
if [ "${PUSH:-0}" = "1" ]; then ARGS+=(--push-to-hub "$REPO"); fi
if [ "$NPROC" -gt 1 ]; then
  exec accelerate launch --num_processes "$NPROC" -m hf_spurious.cli "${ARGS[@]}" "$@"
fi
exec hf-spurious "${ARGS[@]}" "$@"
