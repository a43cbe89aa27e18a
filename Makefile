# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOME_DIR ?= var
DATASET ?= synthetic
HOST ?= 127.0.0.1
PORT ?= 50051

.PHONY: run test venv proto check lint typecheck bench clean cluster cluster-down

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch goes in first and alone: the CPU wheel lies on this disk; anything
# else that pulls torch afterwards then finds it satisfied.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[train,load,spark,dev]'
	touch $@

venv: $(VENV)/.installed

# The Node.js client of the interop test, from the lock file.
NODE_DIR := tests/interop/node
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error
	touch $@

# The one command that regenerates the gRPC code; never edit its output.
proto: venv
	$(BIN)/python -m grpc_tools.protoc -Iserver/proto=protos \
	  --python_out=. --pyi_out=. --grpc_python_out=. protos/shoprank/v1/ranking.proto
	cp protos/shoprank/v1/ranking.proto server/proto/shoprank/v1/ranking.proto  # shipped: `shoprank proto`

run: venv
	$(BIN)/shoprank pipeline --dataset $(DATASET) --home $(HOME_DIR)
	$(BIN)/shoprank serve --home $(HOME_DIR) --host $(HOST) --port $(PORT) --stream-worker

test: venv $(NODE_DIR)/node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -q -ra

# The production topology on loopback, no Docker: a 3-node Redis Cluster, the
# PostgreSQL registry, the one-shot jobs, two replicas and nginx in front
# (deploy/cluster.py; Debian's redis-server and nginx).
cluster: venv
	$(BIN)/python -m deploy.cluster up --home $(HOME_DIR)/cluster

cluster-down: venv
	$(BIN)/python -m deploy.cluster down --home $(HOME_DIR)/cluster

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: venv
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/materialize.py
	$(BIN)/python bench/cache_memory.py
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(HOME_DIR) .pytest_cache .mypy_cache .ruff_cache
