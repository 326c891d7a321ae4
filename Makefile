# Two commands for a newcomer on a fresh machine:
#   make demo   runs the whole lifecycle end to end on the embedded default (local backend)
#   make test   runs the test suite
# Both create .venv and install the locked dependencies first (idempotent).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q uv==0.13.9
	# torch apart: uv would fetch the CUDA build; pip takes the CPU wheel where one lies on disk
	grep -v '^torch==' requirements.lock > $(VENV)/requirements-no-torch.txt
	$(BIN)/uv pip install -q --python $(BIN)/python -r $(VENV)/requirements-no-torch.txt
	$(BIN)/pip install -q --no-deps torch==$$(sed -n 's/^torch==//p' requirements.lock)
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/fabric demo --stack dev

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/pip install -q --no-deps islp==0.6.0 plotnine==0.15.9
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/quantize.py
	$(BIN)/python benchmarks/serve.py    # closed-loop numbers need wrk (apt-get install wrk)
	$(BIN)/python benchmarks/drift.py
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/distributed_search.py

lock:
	./scripts/lock.sh

clean:
	rm -rf $(VENV) .fabric
