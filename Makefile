# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= data/homeserver.yaml
# A real Synapse, for the federation interop tests (tests/interop/synapse.py):
# its own virtualenv, so its dependencies never mix with ours.
SYNAPSE_VENV := .synapse-venv
SYNAPSE_VERSION := 1.163.2

.PHONY: run test lint clean sytest webclient chromium

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(SYNAPSE_VENV)/.installed:
	$(PYTHON) -m venv $(SYNAPSE_VENV)
	$(SYNAPSE_VENV)/bin/pip install --quiet 'matrix-synapse==$(SYNAPSE_VERSION)' psycopg2-binary
	touch $@

$(CONFIG): | $(VENV)/.installed
	$(BIN)/homeserver init --server-name localhost --config $(CONFIG)

# The web client (webclient/, docs/web-client.md): npm ci from the committed
# lockfile, then vite build into webclient/dist, which the server serves at /.
# Without Node.js 20.19+ it is skipped and the server says how to build it.
WEBCLIENT := webclient
WEBCLIENT_SOURCES := $(shell find $(WEBCLIENT)/src $(WEBCLIENT)/public -type f 2>/dev/null) \
	$(wildcard $(WEBCLIENT)/index.html $(WEBCLIENT)/vite.config.ts $(WEBCLIENT)/tsconfig.json)
NODE_OK = command -v npm >/dev/null && node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)'
$(WEBCLIENT)/node_modules/.installed: $(WEBCLIENT)/package.json $(WEBCLIENT)/package-lock.json
	@if $(NODE_OK); then \
		cd $(WEBCLIENT) && npm ci --no-audit --no-fund && touch node_modules/.installed; \
	else echo "Node.js 20.19+ with npm not found: the web client is not built (the server runs without it)"; fi
$(WEBCLIENT)/dist/index.html: $(WEBCLIENT)/node_modules/.installed $(WEBCLIENT_SOURCES)
	@if $(NODE_OK) && test -e $(WEBCLIENT)/node_modules/.installed; then \
		cd $(WEBCLIENT) && npm run build; fi
webclient: $(WEBCLIENT)/dist/index.html

run: $(VENV)/.installed $(CONFIG) webclient
	$(BIN)/homeserver run --config $(CONFIG)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check homeserver synapse_compat tests scripts bench
	$(BIN)/mypy homeserver synapse_compat scripts

# matrix-appservice from npm, the second application service framework of
# tests/appservice/ (its test is skipped where npm is missing)
NODE_DIR := tests/appservice/node
$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(NODE_DIR) && npm ci --no-audit --no-fund --silent && touch node_modules/.installed; \
	else echo "npm not found: tests/appservice/test_node_appservice.py will be skipped"; fi

# oidc-provider from npm, the real OpenID provider of tests/sso/ (its tests
# are skipped where npm is missing)
SSO_NODE_DIR := tests/sso/node
$(SSO_NODE_DIR)/node_modules/.installed: $(SSO_NODE_DIR)/package.json $(SSO_NODE_DIR)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(SSO_NODE_DIR) && npm ci --no-audit --no-fund --silent && touch node_modules/.installed; \
	else echo "npm not found: tests/sso/test_oidc.py will be skipped"; fi

# PYTEST_ARGS="-k profile -x" narrows a run; the suite runs on both engines either way.
# The tests are shared between two processes file by file (pytest-xdist; a
# file's module-scoped set-up, a real Synapse or an S3 server, is made once):
# about 18 minutes instead of about 40 here. PYTEST_WORKERS=0 runs them in
# this one process.
PYTEST_WORKERS ?= 2
# matrix-js-sdk's SlidingSync, with the Node.js 22 it needs (tests/sync/test_js_sliding_sync.py)
SYNC_NODE_DIR := tests/sync/node
$(SYNC_NODE_DIR)/node_modules/.installed: $(SYNC_NODE_DIR)/package.json $(SYNC_NODE_DIR)/package-lock.json
	@if command -v npm >/dev/null; then \
		cd $(SYNC_NODE_DIR) && npm ci --no-audit --no-fund --silent && touch node_modules/.installed; \
	else echo "npm not found: tests/sync/test_js_sliding_sync.py will be skipped"; fi

# tests/webclient/ drives the built client in Debian's Chromium: installed
# here when missing and we may (root with apt-get); the tests fail, not skip,
# where Chromium or the built client is missing. HS_CHROMIUM names another
# Chromium or Chrome binary.
chromium:
	@if [ -z "$$HS_CHROMIUM" ] && ! test -x /usr/bin/chromium; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
			|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; \
		else echo "Chromium not found: tests/webclient will fail; install it with apt-get install chromium"; fi; \
	fi

test: lint $(SYNAPSE_VENV)/.installed $(NODE_DIR)/node_modules/.installed \
		$(SYNC_NODE_DIR)/node_modules/.installed $(SSO_NODE_DIR)/node_modules/.installed \
		webclient chromium
	HS_SYNAPSE_PYTHON=$(SYNAPSE_VENV)/bin/python \
		$(BIN)/python scripts/with_postgres.py $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# SyTest, the Matrix project's integration suite, as a ratchet against the
# checked-in list of tests still expected to fail (conformance/README.md).
CONFORMANCE ?= $(firstword $(wildcard ../shared/conformance /work/shared/conformance))
SYTEST_OUT ?= /tmp/sytest/homeserver.tap
SYTEST_RUN = $(CONFORMANCE)/sytest-plugin/run-sytest.sh --install-deps --homeserver-cmd $(BIN)/homeserver \
	--impl-name synapse --blacklist $(CONFORMANCE)/synapse-blacklist.txt
sytest: $(VENV)/.installed
	@test -n "$(CONFORMANCE)" || { echo "no conformance kit: set CONFORMANCE=path/to/conformance"; exit 2; }
	rm -f $(SYTEST_OUT) $(SYTEST_OUT).retry
	$(SYTEST_RUN) --output $(SYTEST_OUT) $(SYTEST_ARGS) || true
	$(BIN)/python scripts/sytest_ratchet.py $(SYTEST_OUT) conformance/expected-failures.txt \
		--retry $(SYTEST_RUN)

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) *.egg-info
