# One venv in the repo; every target that needs it depends on the stamp, which
# is keyed on pyproject.toml, so `make test` or `make sweep` on a fresh clone
# installs first and an edited pyproject.toml triggers a reinstall.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
PYTEST_ARGS ?=
# Two xdist workers, one per core; a file's tests that share a Ray or a module's costly
# fixture keep to one worker (tests/conftest.py). Four workers on 2 cores spent 1,339 CPU-s
# in 685 s; two spend 830 CPU-s in 438 s (docs/performance.md): every sweep in a test starts
# Ray processes that think they have the cores to themselves. `make test PYTEST_PARALLEL=`
# runs it in one process.
PYTEST_PARALLEL ?= -n 2 --dist loadgroup

.PHONY: install test test-fast lint sweep validate bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test,bench]'
	$(BIN)/python -c "import torch, torchvision, torchvision.ops; \
		torchvision.ops.nms(torch.rand(2, 4), torch.rand(2), 0.5); \
		print('torch', torch.__version__, '+ torchvision', torchvision.__version__, 'import together')"
	rm -f $(VENV)/.installed-*
	touch $@

# Fast suite plus the slow end-to-end Aer runs; CI runs exactly this.
# The two-node cluster tests run after the rest, on their own: their sweep must finish in
# bounded time, which a parallel run's busy cores can push past (it did, under load).
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m 'not cluster' $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m cluster $(PYTEST_ARGS)

# Without the slow marks: the quick inner loop.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not slow and not cluster' $(PYTEST_PARALLEL) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check sweep workers qkd_sweep bench tests
	$(BIN)/ruff format --check sweep workers qkd_sweep bench tests

# A sweep spec, run under Ray Tune: teachers once, then every student trial;
# rerunning resumes. `make sweep SPEC=specs/paper.yaml ARGS="--data-root DIR"`.
SPEC ?= specs/quickstart.yaml
ARGS ?=
sweep: $(STAMP)
	$(BIN)/qkd-sweep sweep $(SPEC) $(ARGS)

# The expanded grid and the trials per phase, without running anything.
validate: $(STAMP)
	$(BIN)/qkd-sweep validate $(SPEC) $(ARGS)

# Speed and memory of the quantum path, a whole trial and a 2-worker sweep.
bench: $(STAMP)
	$(BIN)/python -m bench --out results/bench.json $(ARGS)
	$(BIN)/python -m bench.user_circuits --out results/bench.json

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache *.egg-info
