#!/usr/bin/env bash
# Unsupervised ConSERT on BERT-base, the released script's setting (Yan et al., ACL 2021;
# yym6472/ConSERT README): the unlabelled sentences of STS12-16, STS-B and SICK-R (the paper's
# transductive "stssick" data, built here from the SentEval files), feature cutoff 0.2 for one
# view and token shuffle for the other, dropout off, NT-Xent with intra-view negatives at tau 0.1,
# batch 96, max length 64, lr 5e-7, 10 epochs, mean pooling, STS-B dev every 200 steps.
# Differences: ConSERT also scales its loss by 0.15 (cl_rate; AdamW is nearly invariant to it) and
# stops after 10 evaluations without gain (embeval trains every epoch and keeps the best).
# Needs internet (model, SentEval data) and `pip install 'embeval[download]'`; one GPU.
#
#   bash examples/consert_bert_base.sh
#
# Expected (paper, Table 2, unsupervised BERT-base): STS avg 72.74.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MODEL=${MODEL:-google-bert/bert-base-uncased}
DATA_DIR=${DATA_DIR:-data}
STSSICK=${STSSICK:-$DATA_DIR/train/stssick_unlabelled.txt}
OUT=${OUT:-runs/consert-bert-base}
EXTRA=${EXTRA:-}             # e.g. "--steps 2" for a dry run
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}

need_sts "$DATA_DIR"
if [ ! -s "$STSSICK" ]; then  # every sentence of the STS/SICK pairs, labels unused
  mkdir -p "$(dirname "$STSSICK")"
  python - "$DATA_DIR" "$STSSICK" <<'PY'
import sys

from embeval.eval.data.sts import load_sts

root, out = sys.argv[1], sys.argv[2]
splits = {f"STS{y}": ("test",) for y in range(12, 17)}
splits.update(STSBenchmark=("train", "dev", "test"), SICKRelatedness=("train", "dev", "test"))
lines = []
for task, names in splits.items():
    for split in names:
        data = load_sts(task, split, root)
        lines += [s for pair in zip(data.s1, data.s2) for s in pair]
with open(out, "w", encoding="utf-8") as f:
    f.writelines(s.replace("\n", " ") + "\n" for s in lines)
PY
fi

# shellcheck disable=SC2086
embeval train --model "$MODEL" --data "$STSSICK" --out "$OUT" \
  --view consert --view-arg aug1=feature_cutoff --view-arg aug2=shuffle \
  --view-arg cutoff_rate=0.2 --dropout 0 \
  --loss nt-xent --temp 0.1 --batch-size 96 --lr 5e-7 --max-length 64 --epochs 10 \
  --pooler avg --eval-pooler avg --eval-steps 200 --seed 1 --eval-data "$DATA_DIR" $EXTRA

score_and_report "$OUT" "$DATA_DIR"
