#!/usr/bin/env bash
# Unsupervised Focal-InfoNCE on BERT-base, the paper's setting (Hou & Li, Findings of EMNLP 2023;
# SimCSE's recipe, Gao et al. 2021): 1M Wikipedia sentences, 1 epoch, batch 64, lr 3e-5,
# max length 32, tau = 0.05, m = 0.3, [CLS] + MLP in training and [CLS] without it for evaluation,
# STS-B dev every 125 steps keeping the best checkpoint, float16 autocast on a GPU.
# Needs internet (model, wiki1m, SentEval data) and `pip install 'embeval[download]'`.
#
#   bash examples/focal_infonce_bert_base.sh            # one GPU (about 1 hour on an A100/H100)
#   NPROC=4 BATCH=16 bash examples/focal_infonce_bert_base.sh   # 4 GPUs x 16 = global batch 64
#
# Expected (authors' README): STS-B dev about 82-83 during training; STS test Avg. 77.32.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MODEL=${MODEL:-google-bert/bert-base-uncased}
DATA_DIR=${DATA_DIR:-data}
WIKI=${WIKI:-$DATA_DIR/train/wiki1m_for_simcse.txt}
OUT=${OUT:-runs/focal-infonce-bert-base}
BATCH=${BATCH:-64}           # per process
NPROC=${NPROC:-1}
EXTRA=${EXTRA:-}             # e.g. "--steps 2" for a dry run
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}

fetch_simcse "$WIKI" wiki1m_for_simcse.txt
need_sts "$DATA_DIR"

if [ "$NPROC" -gt 1 ]; then LAUNCH=(torchrun --nproc_per_node "$NPROC" -m embeval.cli); else LAUNCH=(embeval); fi
# shellcheck disable=SC2086
"${LAUNCH[@]}" train --model "$MODEL" --data "$WIKI" --out "$OUT" \
  --loss focal-infonce --focal-m 0.3 --temp 0.05 \
  --batch-size "$BATCH" --lr 3e-5 --max-length 32 --epochs 1 \
  --pooler cls --eval-pooler cls_before_pooler \
  --eval-steps 125 --seed 42 --eval-data "$DATA_DIR" $EXTRA

score_and_report "$OUT" "$DATA_DIR"
