# Two commands do everything on a fresh Debian machine:
#   make demo   pretrain on Fashion-MNIST and print the linear-probe table
#   make test   run the test suite (slow checks: make test-slow)
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup demo test test-slow test-all bench clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m data2vec demo --out runs/demo --force

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

clean:
	rm -rf runs build *.egg-info
