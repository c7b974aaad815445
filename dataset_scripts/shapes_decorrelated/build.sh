#!/usr/bin/env bash
# Build hf_spurious/shapes_decorrelated from a SpuriousShapes world (no weights, CPU is enough).
#
#   bash dataset_scripts/shapes_decorrelated/build.sh            # world in ./shapes_world (made if missing)
#   PUSH=1 REPO=me/shapes_decorrelated bash dataset_scripts/shapes_decorrelated/build.sh
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
WORLD="${WORLD:-shapes_world}"
# The Hub id comes from the package (hf_spurious.hub, owner: $HF_SPURIOUS_HUB_ORG); the export
# folder defaults to the id as a relative path, so load_dataset("<id>") finds it offline from here.
REPO="${REPO:-$(python -c "from hf_spurious.hub import dataset_repo_id; print(dataset_repo_id('shapes'))")}"
OUT="${OUT:-$REPO}"
INPAINTER="${INPAINTER:-opencv}"

[ -f "$WORLD/world.json" ] || hf-spurious world --out "$WORLD"
run() {  # config split policy inpainter
  hf-spurious counterfactuals --source shapes --data-dir "$WORLD" --config-name "$1" --split "$2" \
    --target-policy "$3" --inpainter "$4" --seed 0 --out "$OUT" --card-template "$HERE/README.md"
}
run test_partner test partner "$INPAINTER"
run test_partner_oracle test partner oracle
run test_anchor test anchor "$INPAINTER"
run test test random "$INPAINTER"
run train train random "$INPAINTER"

if [ "${PUSH:-0}" = "1" ]; then
  python -c "from hf_spurious.data import push_decorrelated_to_hub as p; print(p('$OUT', '$REPO'))"
fi
