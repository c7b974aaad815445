#!/usr/bin/env bash
# Build hf_spurious/flickr30k_decorrelated (configs "test" and "train") and push it to the Hub.
#
#   FLICKR=/data/flickr30k NPROC=2 bash dataset_scripts/flickr30k_decorrelated/build.sh
#
# FLICKR must hold dataset_flickr30k.json (Karpathy split), flickr30k-images/, and the Flickr30k Entities
# Annotations/ and Sentences/ folders. Rerunning resumes from the finished shards.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
FLICKR="${FLICKR:?set FLICKR to the Flickr30k root}"
# The Hub id comes from the package (hf_spurious.hub, owner: $HF_SPURIOUS_HUB_ORG); the export
# folder defaults to the id as a relative path, so load_dataset("<id>") finds it offline from here.
REPO="${REPO:-$(python -c "from hf_spurious.hub import dataset_repo_id; print(dataset_repo_id('flickr30k'))")}"
OUT="${OUT:-$REPO}"
NPROC="${NPROC:-1}"
INPAINTER="${INPAINTER:-diffusers:stable-diffusion-v1-5/stable-diffusion-inpainting}"
OPTIONS="${OPTIONS:-{\"steps\": 30, \"batch_size\": 8}}"

for SPLIT in test train; do
  accelerate launch --num_processes "$NPROC" -m hf_spurious.cli counterfactuals \
    --source flickr30k --data-dir "$FLICKR" --split "$SPLIT" \
    --inpainter "$INPAINTER" --inpainter-options "$OPTIONS" --text np_removal \
    --seed 0 --shard-size 256 --out "$OUT" --card-template "$HERE/README.md"
done

if [ "${PUSH:-1}" = "1" ]; then
  python -c "from hf_spurious.data import push_decorrelated_to_hub as p; print(p('$OUT', '$REPO'))"
fi
