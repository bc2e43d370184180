# The two commands the README names for a fresh machine (Debian, root or sudo):
#   make dissect   install, then dissect the bundled WebSocket tunnel capture
#   make test      install everything the tests use, then run the whole suite
# CI (.ci/run) runs `make test`.

PYTHON ?= python3
APT_PACKAGES := tshark tcpdump chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: dissect test install install-test system-deps

dissect: install
	mproxy dissect captures/websocket.pcap

test: install-test
	$(PYTHON) -m pytest

install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e .

install-test: system-deps
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test,fuzz]'

system-deps:
	@missing=""; for tool in tshark tcpdump editcap node npm chromium chromedriver; do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages for:$$missing"; \
	  echo "wireshark-common wireshark-common/install-setuid boolean false" | $(SUDO) debconf-set-selections; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES) \
	    $$(command -v node >/dev/null 2>&1 || echo nodejs) $$(command -v npm >/dev/null 2>&1 || echo npm) >/dev/null; \
	fi
