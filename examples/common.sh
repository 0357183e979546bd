# Steps every example recipe shares; sourced by the scripts beside it, not run on its own.
# Needs `pip install 'embeval[download]'` and internet for the downloads.

SIMCSE_DATA=https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main

# fetch_simcse PATH FILE: SimCSE's training FILE (wiki1m_for_simcse.txt, nli_for_simcse.csv)
# saved to PATH, unless PATH already holds it. The .part file keeps a cut download from counting.
fetch_simcse() {
  [ -s "$1" ] && return 0
  mkdir -p "$(dirname "$1")"
  curl -fL -o "$1.part" "$SIMCSE_DATA/$2"
  mv "$1.part" "$1"
}

# need_sts DATA_DIR: SentEval's STS data under DATA_DIR (downloaded once).
need_sts() {
  [ -d "$1/sts/STSBenchmark" ] || embeval data download --data "$1" --only sts
}

# score_and_report OUT DATA_DIR: the seven STS test sets with OUT/best (SimCSE's protocol), then
# one HTML report with the training curves, both named after OUT.
score_and_report() {
  local name
  name=$(basename "$1")
  embeval score "$1/best" --data "$2" --out "reports/runs/$name-test.json"
  embeval report "reports/runs/$name-test.json" --train-log "$1/train_log.jsonl" \
    --out "reports/$name.html"
}
