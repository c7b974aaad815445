#!/usr/bin/env bash
# Build the SpuriousShapes decorrelated dataset (configs test_partner, test_partner_oracle, test_anchor, test,
# train). This wraps the documented command, which also generates the world when $WORLD has none:
#   hf-spurious build-dataset shapes --data-dir "$WORLD" [--push-to-hub REPO] [flags]
# Extra arguments go to it; PUSH=1 pushes to $REPO at the end (the token and the Hub are checked first).
set -euo pipefail
WORLD="${WORLD:-shapes_world}"
REPO="${REPO:-$(python -c "from hf_spurious.hub import dataset_repo_id; print(dataset_repo_id('shapes'))")}"
OUT="${OUT:-$REPO}"
ARGS=(build-dataset shapes --data-dir "$WORLD" --out "$OUT")
if [ "${PUSH:-0}" = "1" ]; then ARGS+=(--push-to-hub "$REPO"); fi
exec hf-spurious "${ARGS[@]}" "$@"
