# Two commands do everything on a fresh Debian machine:
#   make demo   pretrain on Fashion-MNIST and print the linear-probe table
#   make test   run the test suite (slow checks: make test-slow)
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: setup demo test test-slow test-all bench-image bench-speech bench-text bench-versions bench-lowlabel \
	bench-vs-transformers bench-profile bench-loader bench-multimodal clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m data2vec demo --out runs/demo --force

# One OpenMP thread per test process: the distributed tests fork ranks that start loader
# workers, and forking a process whose OpenMP pool is running can deadlock the children.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

test-slow: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m slow

test-all: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "slow or not slow"

# Benchmarks (results and the exact commands are recorded in docs/benchmarks.md).
bench-image: $(STAMP)
	$(PY) benchmarks/image_throughput.py --preset data2vec2_image_fmnist --steps 10

bench-speech: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/speech.py --pretrain-min 10 --ft-steps 600 --labeled 300

bench-text: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/text.py --out runs/bench-text

# Needs the speech corpus: .venv/bin/python -m data2vec speech-corpus --out runs/speech --num 1500 --seed 0
bench-multimodal: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/multimodal.py --steps 30 --out runs/bench-multimodal

bench-versions: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/versions.py --minutes 8 --probes 4 --probe-train 10000 --out runs/versions

bench-lowlabel: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/fmnist_lowlabel.py --fractions 0.01 0.1 --seeds 3 --out runs/fmnist-lowlabel

bench-vs-transformers: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/vs_transformers.py --compile --floor --repeats 3

bench-profile: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/profile_step.py --steps 2

bench-loader: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) benchmarks/loader.py

clean:
	rm -rf runs build *.egg-info
