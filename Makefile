# rethink — `make help` lists the targets.
PY      ?= .venv/bin/python
SHARED  ?= ../shared/data
DATA    ?= data
SWEEP   ?= -m corruption=0,0.2,0.5,1.0

.DEFAULT_GOAL := help
.PHONY: help install data run test lint ui clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: .venv/.installed ## create .venv and install rethink with its test tools
.venv/.installed: pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[dev]'
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

test: install data ## run the test suite (what CI runs)
	$(PY) -m pytest -q

lint: install ## ruff
	.venv/bin/ruff check rethink tests bench

ui: install ## MLflow UI on http://127.0.0.1:5000 over the mlruns/ store
	.venv/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --host 127.0.0.1 --port 5000

clean: ## remove Hydra outputs (keeps the MLflow store and data)
	rm -rf multirun outputs .pytest_cache
