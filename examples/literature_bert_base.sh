#!/usr/bin/env bash
# Methods from the literature on BERT-base, each in its paper's (or released code's) setting:
#
#   bash examples/literature_bert_base.sh promcse-hinge   # sup. SimCSE + PromCSE's hinge
#   bash examples/literature_bert_base.sh gcse            # sup. SimCSE form + GCSE's weighting
#   bash examples/literature_bert_base.sh dclr            # DCLR, unsupervised
#   bash examples/literature_bert_base.sh matryoshka      # sup. SimCSE, Matryoshka dims
#   bash examples/literature_bert_base.sh 2dmse           # sup. SimCSE, 2D Matryoshka
#   bash examples/literature_bert_base.sh sbert-nli       # SBERT's NLI softmax objective
#   bash examples/literature_bert_base.sh diffcse         # DiffCSE, unsupervised
#   bash examples/literature_bert_base.sh promptbert      # PromptBERT, unsupervised
#
# Supervised runs use SimCSE's NLI triplets (nli_for_simcse.csv, 275k rows: sent0,sent1,hard_neg)
# with SimCSE's supervised BERT-base setting (batch 512 over the GPUs, lr 5e-5, 3 epochs, tau
# 0.05, max length 32). Needs internet and `pip install 'embeval[download]'`.
#   promcse-hinge: margin 0.2, weight 10 (YJiangcm/PromCSE run_sup_example.sh). PromCSE also
#     freezes BERT and trains soft prompts (lr 1e-2); embeval trains the whole encoder, so this
#     is "sup. SimCSE + energy-based hinge", the paper's ablation, not PromCSE itself.
#   gcse: alpha 0.17, tau 0.05, the base model = the starting model (GCSE's default when no
#     base checkpoint is given); the paper's 81.98 used its LLM-generated data, not NLI.
#   dclr: RUCAIBox/DCLR run.sh for BERT-base: wiki1m, batch 128, lr 3e-5, 3 epochs, phi 0.9,
#     one noise vector per sentence refined by 4 gradient steps, the frozen scorer
#     princeton-nlp/unsup-simcse-bert-base-uncased.
#   matryoshka: 768,512,256,128,64, weights 1 (sentence-transformers' MatryoshkaLoss default).
#   2dmse: the same widths, one layer drawn per step, KL temperature 0.3 (sentence-transformers'
#     Matryoshka2dLoss defaults; the 2DMSE paper trains AnglE's objective, not SimCSE's).
#   sbert-nli: Reimers & Gurevych 2019: batch 16, lr 2e-5, 1 epoch, 10 % warm-up, mean pooling;
#     the paper trains on SNLI + MultiNLI with all three labels (a CSV sent0,sent1,label);
#     SimCSE's triplets give entailment and contradiction rows only. Max length 128
#     (sentence-transformers' default for bert-base-uncased).
#   diffcse: voidism/DiffCSE run_diffcse.sh: wiki1m, batch 64, lr 7e-6, 2 epochs, mask 0.30,
#     lambda 0.005, generator distilbert-base-uncased (same vocabulary as bert-base-uncased);
#     its BatchNorm projector is not reproduced (see the objective's docstring).
#   promptbert: kongds/Prompt-BERT run.sh unsup-bert: wiki1m, batch 256, lr 1e-5, 1 epoch, tau
#     0.05, max length 32 (the sentence; the template is added around it); anchors in
#     'This sentence of "[X]" means [MASK] .', positives in 'This sentence : "[X]" means
#     [MASK] .' (the view's defaults), trained on the denoised [MASK] state through the MLP,
#     evaluated on template 1's [MASK] state without denoising, as that script evaluates.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

METHOD=${1:?usage: $0 promcse-hinge|gcse|dclr|matryoshka|2dmse|sbert-nli|diffcse|promptbert}
MODEL=${MODEL:-google-bert/bert-base-uncased}
DATA_DIR=${DATA_DIR:-data}
NLI=${NLI:-$DATA_DIR/train/nli_for_simcse.csv}
WIKI=${WIKI:-$DATA_DIR/train/wiki1m_for_simcse.txt}
OUT=${OUT:-runs/$METHOD-bert-base}
DIMS=${DIMS:-768,512,256,128,64}  # Matryoshka widths (BERT-base: 768 wide)
EXTRA=${EXTRA:-}             # e.g. "--steps 2" for a dry run
# Also: REFERENCE (dclr's frozen scorer), GENERATOR (diffcse's MLM), WARMUP (sbert-nli), SCORE
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}

need_sts "$DATA_DIR"
SUP=(--batch-size 512 --lr 5e-5 --epochs 3 --temp 0.05 --max-length 32)
case "$METHOD" in
  promcse-hinge) fetch_simcse "$NLI" nli_for_simcse.csv
    ARGS=(--data "$NLI" --loss promcse-hinge --loss-arg margin=0.2 --loss-arg weight=10 "${SUP[@]}") ;;
  gcse) fetch_simcse "$NLI" nli_for_simcse.csv
    ARGS=(--data "$NLI" --loss gcse --loss-arg alpha=0.17 --reference-model initial "${SUP[@]}") ;;
  dclr) fetch_simcse "$WIKI" wiki1m_for_simcse.txt
    ARGS=(--data "$WIKI" --loss dclr --loss-arg phi=0.9 --negatives dclr-noise
          --reference-model "${REFERENCE:-princeton-nlp/unsup-simcse-bert-base-uncased}"
          --batch-size 128 --lr 3e-5 --epochs 3 --temp 0.05 --max-length 32) ;;
  matryoshka) fetch_simcse "$NLI" nli_for_simcse.csv
    ARGS=(--data "$NLI" --loss sup-simcse --matryoshka-dims "$DIMS" "${SUP[@]}") ;;
  2dmse) fetch_simcse "$NLI" nli_for_simcse.csv
    ARGS=(--data "$NLI" --loss sup-simcse --matryoshka-dims "$DIMS"
          --matryoshka-layers 1 --matryoshka-kl-temperature 0.3 "${SUP[@]}") ;;
  sbert-nli) fetch_simcse "$NLI" nli_for_simcse.csv
    ARGS=(--data "$NLI" --objective sbert-nli --batch-size 16 --lr 2e-5 --epochs 1
          --warmup-steps "${WARMUP:-3437}" --max-length 128 --pooler avg --eval-pooler avg) ;;
  diffcse) fetch_simcse "$WIKI" wiki1m_for_simcse.txt
    ARGS=(--data "$WIKI" --objective diffcse
          --objective-arg generator="${GENERATOR:-distilbert/distilbert-base-uncased}"
          --objective-arg mask_ratio=0.3 --objective-arg weight=0.005
          --batch-size 64 --lr 7e-6 --epochs 2 --temp 0.05 --max-length 32) ;;
  promptbert) fetch_simcse "$WIKI" wiki1m_for_simcse.txt
    ARGS=(--data "$WIKI" --view promptbert
          --batch-size 256 --lr 1e-5 --epochs 1 --temp 0.05 --max-length 32) ;;
  *) echo "unknown method $METHOD" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086
POOL=(--pooler cls --eval-pooler cls_before_pooler)
[ "$METHOD" = sbert-nli ] && POOL=()
[ "$METHOD" = promptbert ] && POOL=(--pooler promptbert_denoised --eval-pooler promptbert)
embeval train --model "$MODEL" --out "$OUT" "${POOL[@]}" "${ARGS[@]}" \
  --eval-steps 125 --seed 42 \
  --eval-data "$DATA_DIR" $EXTRA
if [ "${SCORE:-1}" = 1 ]; then  # SCORE=0: train only (tests/test_examples.py)
  score_and_report "$OUT" "$DATA_DIR"
fi
