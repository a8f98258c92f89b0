# Every run-type target takes Hydra overrides through ARGS, e.g.
#   make sweep ARGS="search.n_trials=5 trainer.epochs=10"
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=
JOBS   ?=
PORT   ?= 5000
STUDY  ?=
# A value as one shell word, quotes escaped: Make variables never reach the shell unquoted.
q = '$(subst ','\'',$(1))'

.DEFAULT_GOAL := help
.PHONY: help install baseline sweep worker launch server proxy ui dashboard report predict rerun robust test test-fast lint format bench clean

help: ## Show every target, one line each
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv (if missing) and install the package with its dev tools

baseline: $(STAMP) ## One run of the tutorial's model (4x20 tanh, SGD 0.01, 50 epochs), logged to MLflow
	@$(PY) -m sweep baseline $(ARGS)

sweep: $(STAMP) ## Run or resume the Optuna study (30 trials by default); JOBS=N runs N workers here
	@$(PY) -m sweep sweep $(if $(JOBS),search.jobs=$(call q,$(JOBS))) $(ARGS)

worker: $(STAMP) ## Join the study on a shared storage and run trials until it reaches search.n_trials
	@$(PY) -m sweep worker $(ARGS)

launch: $(STAMP) ## Workers as Ray tasks (pip install -e '.[ray]'): ADDRESS=auto|host:port WORKERS=N, one trial each at a time
	@$(PY) -m sweep launch --engine ray --address $(call q,$(or $(ADDRESS),auto)) --workers $(call q,$(or $(WORKERS),2)) $(ARGS)

server: $(STAMP) ## MLflow tracking server for many workers: PostgreSQL store (SWEEP_TRACKING_DB), artifacts proxied, 127.0.0.1 (PORT=5000)
	@$(PY) -m sweep server --port $(call q,$(PORT)) $(ARGS)

proxy: $(STAMP) ## Optuna's gRPC proxy on the study's PostgreSQL (SWEEP_STORAGE) for many workers: search.storage=grpc://host:PORT (13000)
	@$(PY) -m sweep proxy --port $(call q,$(if $(filter-out file,$(origin PORT)),$(PORT),13000)) $(ARGS)

ui: $(STAMP) ## mlflow server over the project's store on 127.0.0.1 (PORT=5000); prints the runs table's address
	@$(PY) -m sweep ui $(ARGS) --port $(call q,$(PORT))

dashboard: $(STAMP) ## optuna-dashboard on the study's storage on 127.0.0.1 (PORT=8080): live trials, epochs, history, importances
	@$(PY) -m sweep dashboard --port $(call q,$(if $(filter-out file,$(origin PORT)),$(PORT),8080)) $(ARGS)

report: $(STAMP) ## Self-contained HTML report of a study (STUDY=name), logged to its parent run
	@$(PY) -m sweep report $(if $(STUDY),search.study_name=$(call q,$(STUDY))) $(ARGS)

predict: $(STAMP) ## Predictions of the registered champion model (ARGS="--x 0.5 1.0", or "--csv FILE" for N-D inputs)
	@$(PY) -m sweep predict $(ARGS)

rerun: $(STAMP) ## Train run RUN_ID again from its MLflow record alone; compare every metric (TOL=rel. tolerance)
	@$(PY) -m sweep rerun $(call q,$(RUN_ID)) $(if $(TOL),--tolerance $(call q,$(TOL))) $(ARGS)

robust: $(STAMP) ## Rerun a study's TOP best trials with SEEDS new seeds each (STUDY=sine-mlp TOP=5 SEEDS=5)
	@$(PY) -m sweep robust $(call q,$(or $(STUDY),sine-mlp)) --top $(call q,$(or $(TOP),5)) --seeds $(call q,$(or $(SEEDS),5)) $(ARGS)

# Three processes on two cores: a third of the suite's time is waiting (servers starting,
# heartbeats going stale), which a third process fills (measured: 12 min against 18-21 on 2).
# worksteal: an idle process takes queued tests from a busy one, so no long test ends alone.
XDIST = -n $(call q,$(or $(TEST_WORKERS),3)) --dist worksteal

test: $(STAMP) ## The whole test suite (what CI runs), on TEST_WORKERS processes (3)
	$(PY) -m pytest $(XDIST)

test-fast: $(STAMP) ## The tests not marked slow, for quick iteration
	$(PY) -m pytest $(XDIST) -m "not slow"

bench: $(STAMP) ## Measure speed and search quality (fit vs loop, trial overhead, workers, memory, digits, samplers); ARGS="--only fit --seeds 2"
	@$(PY) -m benchmarks $(ARGS)

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP) ## ruff format and safe fixes
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

# Names go from find -print0 to a list file and xargs -0, never through the shell's splitting or
# globbing: exactly the listed entries go (`old notes`, `*`, `-x`, a newline are names, nothing
# more); the list shows control characters as `?`, as config.printable does.
clean: ## Delete this machine's local stores under mlruns/ (lists them, asks first); never server-artifacts/
	@[ -d mlruns ] || { echo "nothing to delete under mlruns/"; exit 0; }; \
	list=$$(mktemp) || exit 1; trap 'rm -f "$$list"' EXIT; \
	find mlruns -mindepth 1 -maxdepth 1 ! -name .gitkeep ! -name server-artifacts -print0 >"$$list"; \
	if [ ! -s "$$list" ]; then echo "nothing to delete under mlruns/"; exit 0; fi; \
	LC_ALL=C tr '\000\001-\037\177' '\n?' <"$$list"; \
	[ -d mlruns/server-artifacts ] && echo "(kept: mlruns/server-artifacts, the tracking server's artifacts)"; \
	read -p "delete the above? [y/N] " ok && [ "$$ok" = y ] && xargs -0 rm -rf -- <"$$list" || true
