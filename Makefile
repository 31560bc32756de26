# Two commands: `make demo` (set up + run the main job) and `make test` (set up + run every check).
# Both create .venv themselves. On a machine without a GPU the CPU build of torch goes in first,
# so that the project's `torch` requirement never pulls the multi-GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP   = $(VENV)/.installed

.PHONY: setup demo test lint typecheck bench clean

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
	touch $(STAMP)

setup: $(STAMP)

## The main job on the embedded defaults: ingest the sample corpus, fine-tune the tiny local model on it,
## evaluate the result on the test split (publish joins when it lands). W&B runs offline without a key.
demo: $(STAMP)
	$(BIN)/promptly ingest
	$(BIN)/promptly db status
	$(BIN)/promptly train experiment=smoke
	$(BIN)/promptly eval run_dir=latest
	$(BIN)/promptly runs

lint: $(STAMP)
	$(BIN)/ruff check promptly tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

## Every check: lint, types, then the tests (slow end-to-end ones included).
test: $(STAMP)
	$(BIN)/ruff check promptly tests benchmarks
	$(BIN)/mypy
	WANDB_MODE=offline $(BIN)/python -m pytest -q --timeout=900

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) .promptly logs .pytest_cache .mypy_cache .ruff_cache
