# Two entry points for a fresh machine (see README):
#   make demo   install, then run the whole pipeline (ingest -> dataset -> train -> register) and score a sample
#   make test   install, then run the whole test suite (make test-fast: without the `slow` ones)
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DISABLE_MLFLOW_INTEGRATION := TRUE

.PHONY: install demo test test-fast repro browser

install: $(VENV)/.installed

# pip (not uv/poetry) so that torch==2.13.0 resolves to the CPU build on local disk.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	$(BIN)/dvc config core.analytics false
	touch $@

repro: install
	$(BIN)/dvc pull --quiet data/raw.dvc
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

demo: repro
	$(BIN)/stance score examples/paragraphs.jsonl --out outputs/sample_scores.jsonl
	@echo "paragraph scores: outputs/sample_scores.jsonl; model card: MODEL_CARD.md; runs: $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db"

# Debian's chromium for the browser tests (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: install browser
	$(BIN)/dvc pull --quiet data/raw.dvc
	$(BIN)/python -m pytest

# The unit tests only (no training, serving or browser): seconds to minutes.
test-fast: install
	$(BIN)/dvc pull --quiet data/raw.dvc
	$(BIN)/python -m pytest -m "not slow"
