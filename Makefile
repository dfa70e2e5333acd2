# Two commands on a fresh machine:
#   make demo   -> creates .venv, installs, runs the main job end to end on the embedded default
#   make test   -> creates .venv, installs, runs the test suite (what CI runs)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= all
OUT ?= runs/demo

.PHONY: venv demo test test-slow lint clean parity cortexm-tools

# The Cortex-M cross toolchain and emulator (generated C encoder on qemu mps2-an386 / mps2-an505).
# Installed with apt when this runs as root on Debian/Ubuntu; otherwise it says what to install (the
# tests that need it skip on a user's machine and fail under CI=true).
CORTEXM_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
cortexm-tools:
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $(CORTEXM_PACKAGES) (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CORTEXM_PACKAGES) >/dev/null; \
	else echo "NOTE: Cortex-M tests need: sudo apt-get install $(CORTEXM_PACKAGES)"; fi

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

demo: $(STAMP) cortexm-tools
	$(BIN)/python -m anyppg_edge demo --out $(OUT)

test: $(STAMP) cortexm-tools
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

# Parity table of the teacher (golden released weights) and the watch student, each artifact vs a
# golden set of its float model on held-out ../shared windows (artifacts from `python -m export all`);
# every int8 TFLite also runs in TensorFlow Lite Micro (bit-identical to LiteRT's reference kernels).
TEACHER_CKPT ?= ../shared/reference/net1d_anyppg_released.state_dict.pt
STUDENT_CKPT ?= runs/distill_watch_slim/best.pt
parity: $(STAMP)
	$(BIN)/python -m export golden --model anyppg-released --checkpoint $(TEACHER_CKPT) --out runs/parity/anyppg-released.golden.npz
	$(BIN)/python -m export parity runs/export/anyppg-released/anyppg-released.{float,int8}.{onnx,tflite} \
		--golden runs/parity/anyppg-released.golden.npz --checkpoint $(TEACHER_CKPT) --downstream --out runs/parity/anyppg-released
	$(BIN)/python -m export golden --model student-watch-slim --checkpoint $(STUDENT_CKPT) --out runs/parity/student-watch-slim.golden.npz
	$(BIN)/python -m export parity runs/export/student-watch-slim/student-watch-slim.{float,int8}.{onnx,tflite} \
		--golden runs/parity/student-watch-slim.golden.npz --checkpoint $(STUDENT_CKPT) --downstream --out runs/parity/student-watch-slim

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
