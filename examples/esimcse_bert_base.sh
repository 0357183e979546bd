#!/usr/bin/env bash
# Unsupervised ESimCSE on BERT-base, the paper's setting (Wu et al., COLING 2022; caskcsg/sentemb
# ESimCSE/): SimCSE's recipe (1M Wikipedia sentences, 1 epoch, batch 64, lr 3e-5, max length 32,
# tau 0.05, [CLS] + MLP in training, [CLS] without it for evaluation, STS-B dev every 125 steps)
# plus subword repetition (dup_rate 0.32) for the positives and a queue of 160 momentum-encoder
# (EMA 0.995) embeddings as extra negatives. Needs internet (model, wiki1m, SentEval data) and
# `pip install 'embeval[download]'`; one GPU.
#
#   bash examples/esimcse_bert_base.sh
#
# Expected (paper, Table 1): STS avg 78.27 for BERT-base.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MODEL=${MODEL:-google-bert/bert-base-uncased}
DATA_DIR=${DATA_DIR:-data}
WIKI=${WIKI:-$DATA_DIR/train/wiki1m_for_simcse.txt}
OUT=${OUT:-runs/esimcse-bert-base}
EXTRA=${EXTRA:-}             # e.g. "--steps 2" for a dry run
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}

fetch_simcse "$WIKI" wiki1m_for_simcse.txt
need_sts "$DATA_DIR"

# shellcheck disable=SC2086
embeval train --model "$MODEL" --data "$WIKI" --out "$OUT" \
  --view esimcse --view-arg dup_rate=0.32 \
  --negatives momentum-queue --negatives-arg queue_size=160 --negatives-arg momentum=0.995 \
  --loss infonce --temp 0.05 --batch-size 64 --lr 3e-5 --max-length 32 --epochs 1 \
  --pooler cls --eval-pooler cls_before_pooler \
  --eval-steps 125 --seed 42 --eval-data "$DATA_DIR" $EXTRA

score_and_report "$OUT" "$DATA_DIR"
