# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test install lint

$(STAMP): pyproject.toml setup.py $(wildcard src/trapsim/service/rpc/*.proto)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The dashboard tests drive Debian's Chromium (Playwright never downloads a browser here).
# Without it they skip, and fail under CI=true.
$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || \
	  ($(SUDO) apt-get update -q && \
	   $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) || \
	  echo "chromium not installed: the dashboard tests will skip (and fail under CI=true)"

install: $(STAMP) $(CHROMIUM)

run: $(STAMP)
	$(BIN)/trapsim run $(ARGS)

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
