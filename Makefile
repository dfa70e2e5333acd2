# Two commands on a fresh machine:
#   make demo   -> creates .venv, installs, runs the main job end to end on the embedded default
#   make test   -> creates .venv, installs, runs the test suite (what CI runs)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= all
OUT ?= runs/demo

.PHONY: venv demo test test-slow lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: on this machine it is a local CPU wheel
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	# tflite-support's metadata modules work beside TF 2.21 but declare protobuf<4: no deps
	$(BIN)/python -m pip install -q --no-deps tflite-support==0.4.4
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m anyppg_edge demo --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
