# The two commands of the README. Each creates the virtual environment when it is missing
# (or when the requirements changed), so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= default

# Pretrained tags would hang on the unreachable hub before failing; fail fast instead.
export HF_HUB_OFFLINE := 1

.PHONY: book test venv clean-book

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

## book: simulate the built-in dataset and build the HTML book (_build/html/index.html)
book: $(STAMP)
	$(BIN)/python -m analysis simulate --profile $(PROFILE)
	$(BIN)/python -m analysis book

## test: the whole test suite (what CI runs)
test: $(STAMP)
	$(BIN)/python -m pytest

clean-book:
	rm -rf _build
