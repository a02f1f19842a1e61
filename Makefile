# The two commands of the README. Each creates the virtual environment when it is missing
# (or when the requirements changed), so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= default

# Pretrained tags would hang on the unreachable hub before failing; fail fast instead.
export HF_HUB_OFFLINE := 1

.PHONY: book test venv clean-book browser check-book gpu-check

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

SUBJECTS ?= 1 2 3

## book: simulate the built-in dataset, train/load the models, execute every notebook for
## SUBJECTS and build the HTML book (_build/html/index.html)
book: $(STAMP)
	$(BIN)/python -m analysis run --dataset simulated --profile $(PROFILE) --subjects $(SUBJECTS)

## test: the whole test suite (what CI runs); the book checks need the system Chromium
## (unit tests, every notebook through nbmake at its ci defaults, the runner end to end)
test: $(STAMP) browser
	$(BIN)/python -m pytest tests notebooks --nbmake --nbmake-timeout=1200

## browser: Debian's headless Chromium, driven by Playwright in analysis.book_check
## (never `playwright install`: its browser download is unreachable offline)
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || command -v sudo)
browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends chromium

## check-book: open built pages offline in headless Chromium; fails on a missing page, an
## error output cell, a broken image or any request to an outside host
BOOK_PAGES ?= index.html book/intro.html
check-book: $(STAMP) browser
	$(BIN)/python -m analysis.book_check _build/html $(BOOK_PAGES) --screenshots _build/screenshots

## gpu-check: on a CUDA machine, train the paper model on full-size random data for a fixed
## number of steps on one GPU, then with DDP on every GPU, and sample; one JSON line each
## (samples/s, signals/s, peak memory). GPU_SIZE: things-eeg2, things-eeg2-250hz, things-meg
GPU_SIZE ?= things-eeg2-250hz
GPU_STEPS ?= 50
N_GPUS = $(shell $(BIN)/python -c "import torch; print(torch.cuda.device_count())")
gpu-check: $(STAMP)
	$(BIN)/python -m analysis.gpu_check --size $(GPU_SIZE) --steps $(GPU_STEPS)
	@if [ "$(N_GPUS)" -gt 1 ]; then $(BIN)/python -m torch.distributed.run --standalone \
	  --nproc_per_node=$(N_GPUS) -m analysis.gpu_check --size $(GPU_SIZE) --steps $(GPU_STEPS); fi

clean-book:
	rm -rf _build
