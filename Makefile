# rethink — `make help` lists the targets.
PY      ?= .venv/bin/python
SHARED  ?= ../shared/data
DATA    ?= data
SWEEP   ?= -m corruption=0,0.2,0.5,1.0
HOST    ?= 127.0.0.1
PORT    ?= 5000
WORKERS ?= 1
SCALE   ?= paper
REPORTS ?= reports
IMAGENET ?= $(DATA)/imagenet
DEVICES ?= 1
RUN      = $(PY) -m rethink

.DEFAULT_GOAL := help
.PHONY: help install data run test test-fast bench lint ui server clean table1 table4 fig1 fig2 imagenet paper paper-cpu report

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: .venv/.installed ## create .venv and install rethink with its test tools
.venv/.installed: pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[dev,ray]'
	touch $@

data: $(DATA)/cifar10/train $(DATA)/MNIST/raw ## extract CIFAR-10 / MNIST from $(SHARED) (no download needed)
$(DATA)/cifar10/train:
	@if [ -f $(SHARED)/cifar10-jpeg.tar.gz ]; then mkdir -p $(DATA) && tar -xzf $(SHARED)/cifar10-jpeg.tar.gz -C $(DATA); \
	else echo "no $(SHARED)/cifar10-jpeg.tar.gz: CIFAR-10 will be downloaded by torchvision on first use"; fi
$(DATA)/MNIST/raw:
	@if [ -f $(SHARED)/mnist-raw.tar.gz ]; then mkdir -p $(DATA) && tar -xzf $(SHARED)/mnist-raw.tar.gz -C $(DATA); \
	else echo "no $(SHARED)/mnist-raw.tar.gz: MNIST will be downloaded by torchvision on first use"; fi

run: install data ## the main job: label-corruption sweep (SWEEP='-m corruption=0,0.2,0.5,1.0')
	$(PY) -m rethink $(SWEEP)

test: install data ## run every test, the slow sweeps included (what CI runs; gpu tests skip without CUDA)
	$(PY) -m pytest -q

test-fast: install data ## every test but those marked slow (pytest -m "not slow"): the quick check while editing
	$(PY) -m pytest -q -m "not slow"

table1: install data ## Table 1 preset (SCALE=paper|cpu, default paper)
	$(RUN) experiment=table1 scale=$(SCALE)

table4: install data ## Table 4 preset: random labels + regularizers (SCALE=paper|cpu)
	$(RUN) experiment=table4 scale=$(SCALE)

fig1: install data ## Figure 1a + 1b/1c presets (SCALE=paper|cpu)
	$(RUN) experiment=fig1a scale=$(SCALE)
	$(RUN) experiment=fig1bc scale=$(SCALE)

fig2: install data ## Figure 2b preset: Inception with/without BatchNorm (SCALE=paper|cpu)
	$(RUN) experiment=fig2b scale=$(SCALE)

imagenet: install ## Table 2 + Fig. 2a: Inception v3 on ImageNet (IMAGENET=<folder with train/ val/>, DEVICES=<GPUs per job>, SCALE)
	$(RUN) experiment=table2 scale=$(SCALE) dataset.root=$(IMAGENET) trainer.devices=$(DEVICES)
	$(RUN) experiment=fig2a scale=$(SCALE) dataset.root=$(IMAGENET) trainer.devices=$(DEVICES)

report: install ## tables + figures from the MLflow store into $(REPORTS)/$(SCALE)/
	$(PY) -m rethink.report --scale $(SCALE) --out $(REPORTS)/$(SCALE)

paper: ## every preset at the paper's scale (use a GPU), then the report
	$(MAKE) -k table1 table4 fig1 fig2 report SCALE=paper

paper-cpu: ## every preset at the reduced CPU scale (about 1 h 45 min on 2 cores), then the report
	$(MAKE) -k table1 table4 fig1 fig2 report SCALE=cpu

bench: install data ## training throughput vs the conventional pipeline, FLOP/s, overheads (CPU, a few minutes)
	$(PY) -m bench.throughput --json bench/results/throughput-cpu.json
	$(PY) -m bench.overhead

lint: install ## ruff
	.venv/bin/ruff check rethink tests bench hydra_plugins

ui: install ## MLflow UI over the mlruns/ store, opening on the runs table (PORT=5000, HOST)
	$(PY) -m rethink.ui --tracking-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --host $(HOST) --port $(PORT)

server: install ## mlflow server over mlruns/ on http://127.0.0.1:5000 for parallel writers (HOST, PORT, WORKERS)
	.venv/bin/mlflow server --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db \
	  --artifacts-destination $(CURDIR)/mlruns/artifacts --host $(HOST) --port $(PORT) --workers $(WORKERS)

clean: ## remove Hydra outputs (keeps the MLflow store and data)
	rm -rf multirun outputs .pytest_cache
