# The two commands the README names for a fresh machine (Debian or Ubuntu, root or sudo):
#   make dissect   install mproxy-scapy, then dissect the bundled WebSocket tunnel capture
#   make test      install the system tools and the test extras too, build the Wireshark matrix's
#                  Debian roots (make wireshark-matrix: tests/wireshark/matrix.py; as root, a few minutes
#                  once per machine, then cached in ~/.cache/mproxy-scapy), then run the whole suite
# Where they install: an active virtual environment as it is; otherwise the project environment
# .venv, made from PYTHON (python3 by default; tools/devenv.py says how). Nothing is installed
# into the system's Python (no --break-system-packages, no sudo pip). CI (.ci/run) runs `make test`.
#
#   make test PYTHON=python3.13          .venv made from that interpreter (made again when it changes)
#   make test PYTEST_ARGS='-m "not slow"'
#   . .venv/bin/activate                 afterwards: mproxy, python -m pytest, ... (or .venv/bin/mproxy)

ifeq ($(origin PYTHON),undefined)
PYTHON := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV)/bin/python,python3)
PYTHON_FROM := $(if $(VIRTUAL_ENV),venv,default)
else
PYTHON_FROM := given
endif
VENV ?= .venv
PYTEST_ARGS ?=

# System packages the tests use, as command:package pairs: `make system-deps` installs the
# packages of the commands that are missing (looked for in /usr/sbin too: debootstrap is there,
# off a user's PATH), and only those: a machine with Node.js from elsewhere (NodeSource's nodejs
# carries npm) must not be asked to take Debian's npm, which conflicts with it.
APT_TOOLS := tshark:tshark editcap:tshark tcpdump:tcpdump node:nodejs npm:npm chromium:chromium \
	chromedriver:chromium-driver firefox-esr:firefox-esr openssl:openssl debootstrap:debootstrap \
	capsh:libcap2-bin

NO_PYTHON_default := no python3 on this machine: install it (apt-get install python3) and run make again, \
or name an interpreter: make PYTHON=/path/to/python3
NO_PYTHON_given := PYTHON=$(PYTHON) is not a command: name a Python 3.11 or newer, e.g. make PYTHON=/usr/bin/python3
NO_PYTHON_venv := the active virtual environment $(VIRTUAL_ENV) has no bin/python: deactivate it or make it \
again, or name an interpreter: make PYTHON=/path/to/python3

# One line and stop when PYTHON cannot run or is older than 3.11; then tools/devenv.py sets up
# the environment and runs the command after `--` in it.
SETUP = command -v '$(PYTHON)' >/dev/null 2>&1 || { echo "mproxy-scapy: error: $(NO_PYTHON_$(PYTHON_FROM))" >&2; exit 1; }; \
	version=$$('$(PYTHON)' -c 'import sys; print("%d.%d" % sys.version_info[:2]); sys.exit(sys.version_info < (3, 11))' \
	  2>/dev/null); status=$$?; \
	[ -n "$$version" ] || { echo "mproxy-scapy: error: $(PYTHON) is not a Python interpreter: name one with \
make PYTHON=/path/to/python3" >&2; exit 1; }; \
	[ $$status = 0 ] || { echo "mproxy-scapy: error: $(PYTHON) is Python $$version; mproxy-scapy needs 3.11 or newer: \
install one (Debian 12 and 13 have it as python3) and name it: make PYTHON=/path/to/python3" >&2; exit 1; }; \
	'$(PYTHON)' tools/devenv.py --venv '$(VENV)'

.PHONY: dissect test install install-test system-deps wireshark-matrix

dissect:
	@$(SETUP) -- mproxy dissect captures/websocket.pcap

test: system-deps wireshark-matrix
	@$(SETUP) --extras test --optional-extra fuzz -- python -m pytest $(PYTEST_ARGS)

install:
	@$(SETUP)

install-test:
	@$(SETUP) --extras test --optional-extra fuzz

wireshark-matrix: system-deps
	@$(SETUP) -- python tests/wireshark/matrix.py build

system-deps:
	@missing=""; for pair in $(APT_TOOLS); do tool=$${pair%%:*}; package=$${pair#*:}; \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$tool >/dev/null 2>&1 && continue; \
	  case " $$missing " in *" $$package "*) ;; *) missing="$$missing $$package";; esac; done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	else echo "mproxy-scapy: error: the tests need these packages: run as root: apt-get install$$missing" >&2; exit 1; fi; \
	echo "mproxy-scapy: the tests need$$missing: installing them with apt-get" >&2; \
	log=$$(mktemp); \
	echo "wireshark-common wireshark-common/install-setuid boolean false" | $$sudo debconf-set-selections; \
	{ $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } \
	  >"$$log" 2>&1 || { echo "mproxy-scapy: error: apt-get could not install$$missing ($$(grep '^E:' "$$log" \
	  | tail -1)): check the network and the apt sources, then run make again (log: $$log)" >&2; exit 1; }; \
	rm -f "$$log"
