# genreshift: `make demo` and `make test` work on a fresh machine with Python 3.11, make and apt.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages: SoundFonts for the synthetic corpus, ffmpeg for M4A/AAC,
# portaudio19-dev so that tinysoundfont's PyAudio dependency builds.
APT_PACKAGES := fluid-soundfont-gm timgm6mb-soundfont ffmpeg portaudio19-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install sysdeps demo test bench clean

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
	$(BIN)/genreshift roundtrip $(EXAMPLE) -o out/example_roundtrip.wav --force
	@echo "demo result: $(CURDIR)/out/example_roundtrip.wav"

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out
