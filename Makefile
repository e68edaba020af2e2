# genreshift: `make demo` and `make test` work on a fresh machine with Python 3.11, make and apt.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages: SoundFonts for the synthetic corpus, ffmpeg for M4A/AAC,
# portaudio19-dev so that tinysoundfont's PyAudio dependency builds, chromium for the web app's
# browser test (Playwright drives it; no browser is ever downloaded).
APT_PACKAGES := fluid-soundfont-gm timgm6mb-soundfont ffmpeg portaudio19-dev chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install sysdeps demo test benchmarks default-models clean

install: $(STAMP)

sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml | sysdeps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[web,dev]'
	touch $(STAMP)

EXAMPLE := examples/example.flac

demo: install
	@mkdir -p out
	$(BIN)/genreshift convert $(EXAMPLE) --to jazz -o out/example_jazz.wav \
	  --plot out/example_jazz.png --force
	@echo "demo result: $(CURDIR)/out/example_jazz.wav (spectrograms: $(CURDIR)/out/example_jazz.png)"

test: install
	$(BIN)/python -m pytest -q

# Regenerates every table of BENCHMARKS.md (and benchmarks/results/) from scratch, about 45
# minutes on 2 cores; needs the shipped models in checkpoints/.
benchmarks: install
	benchmarks/run_all

# The shipped default models: synthetic corpus -> mel shards -> classifier -> one converter
# per genre (rest -> genre), all trained at once (one thread each, sharing the cores), then
# exported as float16 inference files into checkpoints/. Every step resumes where it stopped:
# run it again after an interruption. Sizes are chosen to fit 2.5 hours on 2 CPU cores.
GENRES ?= classical jazz rock electronic hiphop
SYNTH_TUNES ?= 200
SYNTH_SECONDS ?= 30
CLASSIFIER_STEPS ?= 600
CONVERTER_STEPS ?= 2500
JOBS ?= 5
DATA ?= data
RUNS ?= runs
MODELS ?= checkpoints
GS := $(CURDIR)/$(BIN)/genreshift

default-models: install
	@set -e; \
	if [ ! -f $(DATA)/synth/metadata.csv ]; then \
	  $(GS) data synth --out $(DATA)/synth --tunes $(SYNTH_TUNES) --seconds $(SYNTH_SECONDS) --seed 0 --force; fi; \
	$(GS) data tensors --source $(DATA)/synth --out $(DATA)/synth_mel; \
	$(GS) train classifier --data $(DATA)/synth_mel --out $(RUNS)/classifier \
	  --steps $(CLASSIFIER_STEPS) --checkpoint-every 200 --val-every 200 --threads 1 --resume -q; \
	echo $(GENRES) | tr ' ' '\n' | xargs -P $(JOBS) -I{} sh -c \
	  '$(GS) train cyclegan --data $(DATA)/synth_mel --a rest --b {} --out $(RUNS)/rest-{} \
	     --classifier $(RUNS)/classifier/classifier.pt --steps $(CONVERTER_STEPS) \
	     --checkpoint-every 250 --val-every 500 --threads 1 --resume -q \
	     > $(RUNS)/rest-{}.log 2>&1 || { echo "training rest -> {} failed: see $(RUNS)/rest-{}.log"; exit 1; }'; \
	mkdir -p $(MODELS); \
	$(GS) train export $(RUNS)/classifier/classifier.pt $(MODELS)/classifier.pt --half --force; \
	for g in $(GENRES); do \
	  $(GS) train export $(RUNS)/rest-$$g/converter.pt $(MODELS)/rest-to-$$g.pt --half --force; done; \
	ls -l $(MODELS)/*.pt

clean:
	rm -rf $(VENV) out
