# The few commands people type. Every target sets itself up on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
# Benchmark data: DATA=/path, else embeval's own rule (embeval.eval.data.paths.data_root:
# $EMBEVAL_DATA, else data/ when it holds the data, else ../shared/data beside the project).
# Expanded when a recipe runs, after the venv exists.
DATA ?= $(shell $(BIN)/python -c "from embeval.eval.data.paths import data_root; print(data_root())")
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test test-fast bench bench-transfer bench-train bench-methods-card lint browser clean mutants

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,download,ray]"
	touch $@

# Headless Chromium for the report's browser test (Debian package; needs root or sudo).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

demo: $(BIN)/.installed
	$(BIN)/embeval score --data $(DATA) --out reports/runs/all-MiniLM-L6-v2-test.json
	$(BIN)/embeval report reports/runs/all-MiniLM-L6-v2-test.json --out reports/index.html

test: $(BIN)/.installed browser
	EMBEVAL_TEST_DATA=$(DATA) $(BIN)/pytest -m "not gpu" -p no:cacheprovider

# The regression gate CI runs: packaged all-MiniLM-L6-v2 on STS-B dev vs the committed baseline.
gate: $(BIN)/.installed
	$(BIN)/embeval check --data $(DATA) --no-cache --out reports/runs/gate-stsb-dev.json \
		--baseline reports/baselines/all-MiniLM-L6-v2-stsb-dev.json --tolerance 0.5

test-fast: $(BIN)/.installed browser
	EMBEVAL_TEST_DATA=$(DATA) $(BIN)/pytest

# Curated mutants (tools/mutant_list.py), each run against the fast tests that must catch it;
# fails naming every survivor. ONLY=name1,name2 runs some.
mutants: $(BIN)/.installed
	EMBEVAL_TEST_DATA=$(abspath $(DATA)) $(BIN)/python tools/mutants.py $(if $(ONLY),--only $(ONLY))

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_score.py --data $(DATA)

# The seven SentEval transfer tasks, cold and warm cache (tens of minutes on a laptop CPU).
bench-transfer: $(BIN)/.installed
	nice $(BIN)/python benchmarks/bench_transfer.py --data $(DATA)

# Training throughput, embeval vs sentence-transformers MultipleNegativesRankingLoss (random-tiny).
bench-train: $(BIN)/.installed
	nice $(BIN)/python benchmarks/bench_train.py --data $(DATA)/train/wiki1m_for_simcse.first11914.txt

# Every training method, 3 seeds, on the packaged MiniLM: hours on a 2-core CPU (resumable).
bench-methods-card: $(BIN)/.installed
	nice $(BIN)/python benchmarks/bench_methods_card.py --data $(DATA)

lint: $(BIN)/.installed
	$(BIN)/ruff check embeval tests benchmarks && $(BIN)/ruff format --check embeval tests benchmarks

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
