# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv first.
# torch==2.13.0 is installed before the package so pip never pulls a multi-GB CUDA build; the
# package asks for torch 2.13.x, the series CI tests (docs/usage.md, "PyTorch versions"), so users
# with a CUDA build of 2.13 keep theirs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help install demo test lint typecheck browser gate quality clean

help:
	@echo "make demo      export the shipped LUT-Fuse, time it in ONNX Runtime beside PyTorch, write demo_out/side_by_side.png (CPU, no download)"
	@echo "make test      lint, type-check the package (TensorRT code against tensorrt-stubs), run the tests and the CPU latency gate"
	@echo "make quality   write docs/quality.md (metrics of shipped vs official models on shared/data)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps tensorrt-stubs  # its deps would fetch TensorRT itself
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lutfuse-deploy demo --out demo_out

lint: $(STAMP)
	$(PY) -m ruff check lutfuse_deploy tests

# tensorrt-stubs as published do not parse; tools/tensorrt_stubs.py writes a repaired copy to build/typings.
typecheck: $(STAMP)
	$(PY) tools/tensorrt_stubs.py
	$(PY) -m mypy lutfuse_deploy

# The point picker's test (tests/test_rig_picker.py) clicks its page in a real headless browser: Debian's
# chromium with its chromedriver (Selenium, from the dev extra, drives them). Installed with apt when missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver for the picker's browser test"; \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; \
	fi

# pytest exits 5 when it collects nothing: that is a broken suite here, so say so and fail.
test: $(STAMP) lint typecheck browser
	$(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is broken"; exit 1; fi; exit $$rc
	$(MAKE) --no-print-directory gate

# Relative latency budgets on the CPU: the shipped models, exported here with the default export, timed
# side by side with PyTorch eager of the full LUT-Fuse and the upstream LUT-Fuse code itself (--upstream:
# found in ../shared/reference or $LUTFUSE_REFERENCE; its budgets are skipped, with the reason, where it
# is absent) in one interleaved run (ratios hold on a noisy shared machine; absolute milliseconds do not).
GATE := build/gate
LUT  := lutfuse_deploy/pretrained/lutfuse.safetensors
FAST := lutfuse_deploy/pretrained/lutfuse-fast.safetensors
MINI := lutfuse_deploy/pretrained/mini.safetensors
CLI  := $(VENV)/bin/lutfuse-deploy
gate: $(STAMP)
	mkdir -p $(GATE)
	$(CLI) export --model $(LUT) -o $(GATE)/lut.onnx
	$(CLI) export --model $(FAST) -o $(GATE)/lut-fast.onnx
	$(CLI) export --model $(MINI) -o $(GATE)/mini.onnx
	$(CLI) profile --model $(LUT) --backend torch --model $(GATE)/lut.onnx --backend onnxruntime \
	    --model $(GATE)/lut-fast.onnx --backend onnxruntime \
	    --model $(MINI) --backend torch --model $(GATE)/mini.onnx --backend onnxruntime --upstream \
	    --resolutions 640x480,1280x720 --threads 2 --warmup 1 --iters 5 \
	    --budget recipes/budgets/ci.yaml --json $(GATE)/profile.json

quality: $(STAMP)
	$(PY) -m lutfuse_deploy.quality

clean:
	rm -rf $(VENV) build demo_out .pytest_cache .mypy_cache .ruff_cache
