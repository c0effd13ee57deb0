# One-command set-up: every target creates .venv and installs into it (torch==2.13.0 first).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-fast screenshots bench demo selftest package clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[gui,test]'
	touch $(STAMP)

run: $(STAMP)  ## open the app
	$(VENV)/bin/fusion-gui

test: $(STAMP)  ## the whole test suite (Qt tests run offscreen)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

test-fast: $(STAMP)  ## tests that need neither Qt nor the slow marker: engine, CLI, structure
	$(PY) -m pytest -q -m "not slow and not gui and not cuda and not packaging"

screenshots: $(STAMP)  ## refresh docs/screenshots (the README's pictures); plain test runs write to build/screenshots
	FUSION_GUI_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m screenshot
	$(PY) docs/make_screenshots.py --out $(CURDIR)/docs/screenshots  # then the README's app views from real runs

demo: $(STAMP)  ## headless demo merge of tiny models
	$(VENV)/bin/fusion-gui demo

selftest: $(STAMP)
	$(VENV)/bin/fusion-gui --selftest

bench: $(STAMP)  ## merge speed and memory against the I/O floor
	$(PY) benchmarks/bench_merge.py

package: $(STAMP)  ## PyInstaller onedir, .deb and .tar.gz in dist/ (packaging/README.md)
	$(PY) -m PyInstaller --version >/dev/null 2>&1 || $(PY) -m pip install -q pyinstaller
	PYTHON=$(abspath $(PY)) packaging/build_linux.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
