#!/usr/bin/env bash
# DistilCSE contrastive distillation into BERT-base, the released script's setting
# (caskcsg/sentemb DistilCSE/ckd_contrastive_run.sh): teacher princeton-nlp/sup-simcse-roberta-large
# (1024 wide, its own tokenizer; a learnt linear map takes the student's 768 dimensions there),
# InfoNCE of student vs [teacher batch | queue of 65,536 teacher embeddings], learnable logit
# scale starting at e, lr 2e-4, max length 64, [CLS] with BERT's pooler as the code pools
# (kept, not re-initialised), STS-B dev every 125 steps.
# Differences: the script distils 5M news sentences (news5m.en, not public) for 20 epochs with
# 8 GPUs x 512; this runs one GPU on wiki1m (set WIKI to your corpus) with BATCH (default 512)
# and AdamW betas (0.9, 0.999) where the code uses (0.9, 0.98), linear not cosine decay.
# Needs internet (models, wiki1m, SentEval data) and `pip install 'embeval[download]'`.
#
#   bash examples/distilcse_bert_base.sh
#
# Expected: the paper's BERT-base student rows need its data and budget; not reproduced here.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MODEL=${MODEL:-google-bert/bert-base-uncased}
TEACHER=${TEACHER:-princeton-nlp/sup-simcse-roberta-large}
DATA_DIR=${DATA_DIR:-data}
WIKI=${WIKI:-$DATA_DIR/train/wiki1m_for_simcse.txt}
OUT=${OUT:-runs/distilcse-bert-base}
BATCH=${BATCH:-512}
QUEUE=${QUEUE:-65536}
EXTRA=${EXTRA:-}             # e.g. "--steps 2" for a dry run
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}

fetch_simcse "$WIKI" wiki1m_for_simcse.txt
need_sts "$DATA_DIR"

# shellcheck disable=SC2086
embeval train --model "$MODEL" --data "$WIKI" --out "$OUT" \
  --view anchors --negatives teacher --negatives-arg "teacher=$TEACHER" \
  --negatives-arg "queue_size=$QUEUE" --negatives-arg scale_init=1 --negatives-arg pooler=cls \
  --loss infonce --batch-size "$BATCH" --lr 2e-4 --max-length 64 --epochs 1 \
  --pooler cls --eval-pooler cls --keep-pooler \
  --eval-steps 125 --seed 1111 --eval-data "$DATA_DIR" $EXTRA

score_and_report "$OUT" "$DATA_DIR"
