# genreshift: `make demo` and `make test` work on a fresh machine with Python 3.11, make and apt.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages: SoundFonts for the synthetic corpus, ffmpeg for M4A/AAC,
# portaudio19-dev so that tinysoundfont's PyAudio dependency builds, chromium for the web app's
# browser test (Playwright drives it; no browser is ever downloaded), redis-server for the web
# app's Redis queue (its tests start their own instance on a loopback port).
APT_PACKAGES := fluid-soundfont-gm timgm6mb-soundfont csound-soundfont opl3-soundfont avldrums.lv2-soundfont ffmpeg portaudio19-dev chromium redis-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install sysdeps demo test benchmarks default-models clean real-data ablation

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
	$(BIN)/pip install --quiet -e '.[web,dev,gtzan]'
	touch $(STAMP)

EXAMPLE := examples/example.flac

demo: install
	@mkdir -p out
	$(BIN)/genreshift convert $(EXAMPLE) --to jazz -o out/example_jazz.wav \
	  --plot out/example_jazz.png --force
	@echo "demo result: $(CURDIR)/out/example_jazz.wav (spectrograms: $(CURDIR)/out/example_jazz.png)"

# Two pytest-xdist workers: the suite is mostly single-threaded processes, so on the 2-core CI
# machine it takes about half the time of one worker (7.7 against 14.2 min measured here).
# --dist loadfile keeps each file on one worker: some files share a module fixture whose
# tests run in order (tests/test_web_queue.py's site starts its workers in its first test).
TEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Regenerates every table of BENCHMARKS.md (and benchmarks/results/) from scratch: hours on 2
# cores (resumable: `benchmarks/run_all --work DIR --resume`); needs the shipped models.
benchmarks: install
	benchmarks/run_all

# The shipped default models: the real-recording excerpts (`real-data`) and the produced
# synthetic corpus -> mel shards -> the classifier, reference mode's style model (the
# classifier trained on the real excerpts too) and one converter per target genre
# (rest -> genre, with real excerpts in `rest`), all trained at once (one thread each, sharing
# the cores), then exported as float16 inference files into checkpoints/. The corpus holds all
# ten arrangements (so `rest` and the classifier know them) and leaves out the held-out
# SoundFont. Every step resumes where it stopped: run it again after an interruption.
GENRES ?= classical jazz rock electronic hiphop lofi
CORPUS_GENRES ?= classical,jazz,rock,electronic,hiphop,lofi,blues,country,reggae,metal
HELDOUT_SOUNDFONT ?= sf_GMbank.sf2
SYNTH_TUNES ?= 240
SYNTH_SECONDS ?= 30
CLASSIFIER_STEPS ?= 600
# Reference mode's style model (checkpoints/style.pt): the classifier's recipe plus a
# contrastive term on STYLE_REAL_WINDOWS real excerpts a step (`train classifier --real`).
STYLE_STEPS ?= 600
STYLE_REAL_WINDOWS ?= 16
CONVERTER_STEPS ?= 1200
# Batches sized for the 2-core budget: a step of batch 2 (+1 real window) costs about 1.1
# core-seconds here (4.5 s a step per process with the eight jobs on the 2 cores, kernel
# autogroup off: docs/TRAINING_2026-12-04.md); the TrainConfig defaults (4 + 2) double that.
CONVERTER_OPTS ?= --batch-size 2 --real-windows 1
JOBS ?= 8
# A directory of earlier converter runs (rest-GENRE/resume.pt) that new runs warm-start from:
# fresh optimisers and schedule, the earlier weights (`train cyclegan --init-from`).
CONVERTER_INIT ?=
# Each exported converter's residual gain is chosen on the corpus's validation split
# (`train calibrate`): 3 tunes x 9 other genres per target, first 10 s.
CALIBRATE_OPTS ?= --tunes 3 --seconds 10 --jobs 2
DATA ?= data
RUNS ?= runs
MODELS ?= checkpoints
GS := $(CURDIR)/$(BIN)/genreshift

default-models: install real-data
	@set -e; mkdir -p $(RUNS); \
	if [ ! -f $(DATA)/synth/metadata.csv ]; then \
	  $(GS) data synth --out $(DATA)/synth --tunes $(SYNTH_TUNES) --seconds $(SYNTH_SECONDS) \
	    --genres $(CORPUS_GENRES) --exclude-soundfont $(HELDOUT_SOUNDFONT) --seed 0 --force; fi; \
	$(GS) data tensors --source $(DATA)/synth --out $(DATA)/synth_mel; \
	$(GS) data tensors --source $(DATA)/real --out $(DATA)/real_mel; \
	(echo classifier; echo style; echo $(GENRES) | tr ' ' '\n') | xargs -P $(JOBS) -I{} sh -c \
	  'if [ {} = classifier ]; then \
	     $(GS) train classifier --data $(DATA)/synth_mel --out $(RUNS)/classifier \
	       --steps $(CLASSIFIER_STEPS) --checkpoint-every 200 --val-every 200 --threads 1 \
	       --resume -q > $(RUNS)/classifier.log 2>&1; \
	   elif [ {} = style ]; then \
	     $(GS) train classifier --data $(DATA)/synth_mel --real $(DATA)/real_mel \
	       --real-windows $(STYLE_REAL_WINDOWS) --out $(RUNS)/style --steps $(STYLE_STEPS) \
	       --checkpoint-every 100 --val-every 200 --threads 1 --resume -q > $(RUNS)/style.log 2>&1; \
	   else \
	     $(GS) train cyclegan --data $(DATA)/synth_mel --real $(DATA)/real_mel --a rest --b {} \
	       --out $(RUNS)/rest-{} --steps $(CONVERTER_STEPS) $(CONVERTER_OPTS) --checkpoint-every 50 \
	       $(if $(CONVERTER_INIT),--init-from $(CONVERTER_INIT)/rest-{}/resume.pt) \
	       --val-every 250 --sample-every 500 --threads 1 --resume -q > $(RUNS)/rest-{}.log 2>&1; \
	   fi || { echo "training {} failed: see $(RUNS)/{}.log or $(RUNS)/rest-{}.log"; exit 1; }'; \
	mkdir -p $(MODELS); \
	$(GS) train export $(RUNS)/classifier/classifier.pt $(MODELS)/classifier.pt --half --force; \
	$(GS) train export $(RUNS)/style/classifier.pt $(MODELS)/style.pt --half --no-onnx --force; \
	for g in $(GENRES); do \
	  $(GS) train export $(RUNS)/rest-$$g/converter.pt $(MODELS)/rest-to-$$g.pt --half --force; done; \
	$(GS) train calibrate $(MODELS) --data $(DATA)/synth $(CALIBRATE_OPTS) \
	  --report $(RUNS)/calibration.json -q; \
	ls -l $(MODELS)/*.pt $(MODELS)/*.onnx

clean:
	rm -rf $(VENV) out

# Real recordings for the converters' `rest` domain: the music of free games packaged by Debian,
# downloaded as .deb files and unpacked (never installed), then cut into licence-checked
# excerpts by `genreshift data real`. Reruns skip what is already downloaded, unpacked or cut.
# redeclipse-data is the big one (862 MB download, 959 MB unpacked).
REAL_PACKAGES ?= ufoai-music widelands-data boswars-data redeclipse-data scorched3d-data \
  hyperrogue-music megaglest-data unknown-horizons warmux-data extremetuxracer-data \
  endless-sky-data xmoto-data neverball-common lugaru-data adonthell-data btanks-data
REAL_JOBS ?= 2

real-data: install
	@set -e; mkdir -p $(DATA)/debs $(DATA)/debian; \
	for p in $(REAL_PACKAGES); do \
	  if [ -f $(DATA)/debian/$$p/.unpacked ]; then continue; fi; \
	  if ! apt-cache show $$p >/dev/null 2>&1; then \
	    $(SUDO) apt-get update -qq || true; fi; \
	  if ! apt-cache show $$p >/dev/null 2>&1; then \
	    echo "real-data: skipping $$p: apt does not know it"; continue; fi; \
	  deb=$$(ls $(DATA)/debs/$${p}_*.deb 2>/dev/null | head -1); \
	  if [ -z "$$deb" ]; then \
	    echo "real-data: downloading $$p ($$(apt-cache show $$p | awk '/^Size:/{printf "%d MB", $$2/1e6; exit}'))"; \
	    (cd $(DATA)/debs && apt-get download -qq $$p 2>&1 | grep -v 'unsandboxed' || true); \
	    deb=$$(ls $(DATA)/debs/$${p}_*.deb 2>/dev/null | head -1); fi; \
	  if [ -z "$$deb" ]; then echo "real-data: skipping $$p: download failed"; continue; fi; \
	  rm -rf $(DATA)/debian/$$p; dpkg -x $$deb $(DATA)/debian/$$p; touch $(DATA)/debian/$$p/.unpacked; \
	  echo "real-data: unpacked $$p"; \
	done; \
	$(GS) data real --source $(DATA)/debian --out $(DATA)/real --jobs $(REAL_JOBS)

# The ablation of the real-recordings work (MODEL_CARD.md, BENCHMARKS.md): one target
# (ABLATION_GENRE), a shorter run, trained five ways on the same tunes: everything, and
# everything but one of corpus realism (the --dry corpus), real recordings, the residual
# generator plus content loss, and the paired loss. Needs default-models' data first.
ABLATION_GENRE ?= rock
ABLATION_STEPS ?= $(CONVERTER_STEPS)
# 0 (the default) trains every variant to ABLATION_STEPS, the shipped length (47 min for the
# five on the 2 cores); N > 0 stops each at step N (its learning rate still constant, as in
# the main run at that step), e.g. 300 for a quick look.
ABLATION_STOP ?= 0
# Each variant is then calibrated like the shipped converters (validation split), so that
# each is compared at its own best gain.
ABLATION_CALIBRATE ?= --tunes 2 --seconds 10 --gains 1,2,3,4 --jobs 2
ABLATION_VARIANTS ?= full dry noreal noresidual nopaired

ablation: install
	@set -e; mkdir -p $(RUNS)/ablation; \
	if [ ! -f $(DATA)/synth_dry/metadata.csv ]; then \
	  $(GS) data synth --out $(DATA)/synth_dry --tunes $(SYNTH_TUNES) --seconds $(SYNTH_SECONDS) \
	    --genres $(CORPUS_GENRES) --exclude-soundfont $(HELDOUT_SOUNDFONT) --seed 0 --dry \
	    --force -q; fi; \
	$(GS) data tensors --source $(DATA)/synth_dry --out $(DATA)/synth_dry_mel -q; \
	echo $(ABLATION_VARIANTS) | tr ' ' '\n' | xargs -P $(JOBS) -I{} sh -c \
	  'data=$(DATA)/synth_mel; opts="--real $(DATA)/real_mel"; \
	   case {} in \
	     dry) data=$(DATA)/synth_dry_mel;; \
	     noreal) opts="";; \
	     noresidual) opts="$$opts --no-g-residual --content-chroma 0 --content-onset 0";; \
	     nopaired) opts="$$opts --paired 0";; \
	   esac; \
	   $(GS) train cyclegan --data $$data $$opts --a rest --b $(ABLATION_GENRE) \
	     --out $(RUNS)/ablation/{} --steps $(ABLATION_STEPS) $(CONVERTER_OPTS) \
	     $$( [ $(ABLATION_STOP) -gt 0 ] && echo --stop-at $(ABLATION_STOP) ) --checkpoint-every 50 \
	     --val-every 150 --sample-every 500 --threads 1 --resume -q \
	     > $(RUNS)/ablation/{}.log 2>&1 || { echo "ablation {} failed: see $(RUNS)/ablation/{}.log"; exit 1; }'; \
	for v in $(ABLATION_VARIANTS); do mkdir -p $(RUNS)/ablation/models-$$v; \
	  $(GS) train export $(RUNS)/ablation/$$v/converter.pt \
	    $(RUNS)/ablation/models-$$v/rest-to-$(ABLATION_GENRE).pt --force; \
	  cp $(MODELS)/classifier.pt $(RUNS)/ablation/models-$$v/ 2>/dev/null || true; \
	  $(GS) train calibrate $(RUNS)/ablation/models-$$v --data $(DATA)/synth $(ABLATION_CALIBRATE) \
	    --report $(RUNS)/ablation/calibration-$$v.json -q; done
