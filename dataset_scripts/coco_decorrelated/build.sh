#!/usr/bin/env bash
# Build hf_spurious/coco_decorrelated (configs "test" and "train") and push it to the Hub.
#
#   COCO=/data/coco NPROC=4 bash dataset_scripts/coco_decorrelated/build.sh
#
# COCO must hold dataset_coco.json (Karpathy split), annotations/instances_{train,val}2014.json and the
# train2014/ val2014/ image folders. Rerunning resumes from the finished shards (kept in $OUT/.work).
# Offline check afterwards, from the directory that holds $OUT:  load_dataset("hf_spurious/coco_decorrelated", "test")
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
COCO="${COCO:?set COCO to the COCO root}"
# The Hub id comes from the package (hf_spurious.hub, owner: $HF_SPURIOUS_HUB_ORG); the export
# folder defaults to the id as a relative path, so load_dataset("<id>") finds it offline from here.
REPO="${REPO:-$(python -c "from hf_spurious.hub import dataset_repo_id; print(dataset_repo_id('coco'))")}"
OUT="${OUT:-$REPO}"
NPROC="${NPROC:-1}"
INPAINTER="${INPAINTER:-diffusers:stable-diffusion-v1-5/stable-diffusion-inpainting}"   # or opencv | blur | mean | zero
OPTIONS="${OPTIONS:-{\"steps\": 30, \"batch_size\": 8}}"

for SPLIT in test train; do
  accelerate launch --num_processes "$NPROC" -m hf_spurious.cli counterfactuals \
    --source coco --data-dir "$COCO" --split "$SPLIT" \
    --inpainter "$INPAINTER" --inpainter-options "$OPTIONS" --text np_removal \
    --seed 0 --shard-size 256 --out "$OUT" --card-template "$HERE/README.md"
done

if [ "${PUSH:-1}" = "1" ]; then
  python -c "from hf_spurious.data import push_decorrelated_to_hub as p; print(p('$OUT', '$REPO'))"
fi
