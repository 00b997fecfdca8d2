# dedupstore: `make test` and `make demo` work on a fresh Debian machine (run as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pyenv keeps 3.12 and 3.13 off PATH; tox finds them once their bin dirs are on it.
PYENV_BINS := $(shell d=$$(pyenv root 2>/dev/null) && for v in "$$d"/versions/3.12* "$$d"/versions/3.13*; do [ -x "$$v/bin/python" ] && printf '%s:' "$$v/bin"; done)
TOX_ENVS := py311-django42,py312-django6,py313-django6

.PHONY: test demo bench lint types docs tox venv redis-server system-packages old-packages clean django-suite

test: venv redis-server old-packages lint types docs django-suite
	scripts/loopback-only $(BIN)/python -m pytest
	PATH="$(PYENV_BINS)$$PATH" $(BIN)/tox run -e $(TOX_ENVS) --skip-missing-interpreters=false

tox: venv redis-server
	PATH="$(PYENV_BINS)$$PATH" $(BIN)/tox run

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy over dedupstore/ (its settings are pyproject.toml's [tool.mypy]).
types: venv
	$(BIN)/mypy

# Sphinx, warnings as errors.
docs: venv
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html

# Django's own tests/file_storage and tests/file_uploads against DedupStorage, per reuse
# mode, checked against tests/django_suite/expected.toml. Fetches Django's sdist once
# into .cache/, then runs itself under scripts/loopback-only.
django-suite: venv redis-server
	$(BIN)/python -m tests.django_suite.run --redis $(DJANGO_SUITE_ARGS)

demo: venv redis-server
	scripts/loopback-only $(BIN)/python examples/demo/run_demo.py

# The peers are never dependencies: they go into a throwaway virtualenv of their own.
# A peer that does not install is reported by bench_peers.py, so failures here do not stop us.
PEERS := django-hashedfilenamestorage django-castor django-dedupe-backend

bench: venv redis-server
	test -x .venv-peers/bin/python || $(PYTHON) -m venv .venv-peers
	-.venv-peers/bin/python -m pip install --quiet -e . "django==5.2.*" $(PEERS)
	-.venv-peers/bin/python -m pip install --quiet --no-deps --ignore-requires-python django-image-toolkit
	scripts/loopback-only .venv-peers/bin/python benchmarks/bench_peers.py
	test -x .venv-dcs/bin/python || $(PYTHON) -m venv .venv-dcs
	-.venv-dcs/bin/python -m pip install --quiet "django==5.2.*" "appwrite==27.*" django-cloud-storages
	scripts/loopback-only $(BIN)/python benchmarks/bench_appwrite.py --quick --old-python .venv-dcs/bin/python
	scripts/loopback-only $(BIN)/python benchmarks/bench_cost_and_savings.py $(BENCH_ARGS)

venv: $(STAMP)

# django-cloud-storages in a throwaway virtualenv of its own (never a dependency): the
# parity tests run it against the same Appwrite test server. Installed here, outside the
# tests' loopback-only namespace; if it cannot be installed, those tests skip and say why.
old-packages: .venv-dcs/.installed

.venv-dcs/.installed:
	test -x .venv-dcs/bin/python || $(PYTHON) -m venv .venv-dcs
	-.venv-dcs/bin/python -m pip install --quiet "django==5.2.*" "appwrite==27.*" django-cloud-storages && touch $@

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Debian's redis-server, postgresql, chromium and chromedriver: the suite, the demo and the
# benchmarks start private instances on loopback (the packages' own services are never used).
system-packages:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian's$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v redis-server >/dev/null && command -v chromium >/dev/null

redis-server: system-packages

clean:
	rm -rf $(VENV) .venv-peers .venv-dcs .tox .pytest_cache .ruff_cache .hypothesis docs/_build .cache
