# `make train` and `make test` each install what they need first (idempotent, quiet).
PY ?= python3
APT_AUDIO = fluidsynth fluid-soundfont-gm

.PHONY: install install-audio install-browser train test test-all lint

install: install-browser
	$(PY) -m pip install -q -e '.[dev]'

# Chromium from Debian, for the studio's browser tests (Playwright drives it; they skip without it).
install-browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; } || \
	  echo "warning: could not install chromium; the studio's browser tests will be skipped"; \
	else echo "warning: no apt-get; install Chromium at /usr/bin/chromium for the studio's browser tests"; fi

# A General MIDI soundfont and FluidSynth from Debian, for WAV rendering (falls back to sine waves without).
install-audio:
	@if [ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] && command -v fluidsynth >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q --no-install-recommends $(APT_AUDIO) >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q --no-install-recommends $(APT_AUDIO) >/dev/null; } || \
	  echo "warning: could not install $(APT_AUDIO); audio will be rendered with sine waves"; \
	else echo "warning: no apt-get; install FluidSynth and a GM soundfont for soundfont audio"; fi

train: install install-audio
	$(PY) train.py $(ARGS)

test: install
	$(PY) -m pytest -q -n auto --dist worksteal

test-all: install
	$(PY) -m pytest -q -n auto --dist worksteal -m ''

lint:
	ruff check . && ruff format --check .
