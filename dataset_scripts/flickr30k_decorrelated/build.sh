#!/usr/bin/env bash
# Build the flickr30k decorrelated dataset (configs "test" and "train"). This wraps the documented command,
#   hf-spurious build-dataset flickr30k --data-dir "$FLICKR" [--push-to-hub REPO] [flags]
# which ships with the package (the card template too). Extra arguments go to it, e.g.
#   FLICKR=/data/flickr30k bash dataset_scripts/flickr30k_decorrelated/build.sh --inpainter opencv
# NPROC=4 shards the work over 4 processes (accelerate launch); PUSH=1 pushes to $REPO at the end (the token
# and the Hub are checked before the build). A rerun resumes from the finished shards.
set -euo pipefail
FLICKR="${FLICKR:?set FLICKR to the Flickr30k Entities root}"
REPO="${REPO:-$(python -c "from hf_spurious.hub import dataset_repo_id; print(dataset_repo_id('flickr30k'))")}"
OUT="${OUT:-$REPO}"
NPROC="${NPROC:-1}"
ARGS=(build-dataset flickr30k --data-dir "$FLICKR" --out "$OUT")
if [ "${PUSH:-0}" = "1" ]; then ARGS+=(--push-to-hub "$REPO"); fi
if [ "$NPROC" -gt 1 ]; then
  exec accelerate launch --num_processes "$NPROC" -m hf_spurious.cli "${ARGS[@]}" "$@"
fi
exec hf-spurious "${ARGS[@]}" "$@"
