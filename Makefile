# pathsteer — two commands for a newcomer: `make demo` and `make test`.
# Each installs what it needs by itself (Debian packages, .venv, BPF objects); a second run is quick.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
ARCH        := $(shell uname -m)
CLANG       ?= clang
BPF_CFLAGS  := -O2 -g -target bpf -Wall -Werror -I/usr/include/$(ARCH)-linux-gnu -Ibpf
BPF_OBJDIR  := src/pathsteer/bpf/objects
BPF_SRCS    := $(wildcard bpf/*.bpf.c)
BPF_OBJS    := $(patsubst bpf/%.bpf.c,$(BPF_OBJDIR)/%.bpf.o,$(BPF_SRCS))
BPF_HDRS    := $(wildcard bpf/*.h)
PREFIX      ?= /opt/pathsteer
UNITDIR     ?= /etc/systemd/system
CONFDIR     ?= /etc/pathsteer
DEB_PKGS    := clang llvm libbpf-dev bpftool iproute2 nftables iperf3 iputils-ping hping3 netsniff-ng prometheus chromium chromium-driver haproxy bird2 frr
PYTEST_ARGS ?=

.PHONY: all deps venv bpf test test-unit test-kernel test-lab demo bench soak install install-systemd stage uninstall clean

all: venv bpf

# Debian packages: installed only when one is missing, so a second run costs nothing.
deps: .deps.stamp
.deps.stamp: Makefile
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@touch $@

venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements.txt requirements-dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pathsteer needs Python 3.11 or newer")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@# The lab tools (src/pathsteer_lab: lab, demo, lab-run helpers) are not in the package (see
	@# `install`); the dev venv imports them from src/ through this .pth file.
	echo "$(CURDIR)/src" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/pathsteer_lab-dev.pth"
	@touch $@

bpf: deps $(BPF_OBJS)
$(BPF_OBJDIR)/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) | $(BPF_OBJDIR)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@
$(BPF_OBJDIR):
	mkdir -p $@

test: deps venv bpf
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

test-unit: venv
	$(PY) -m pytest -q $(PYTEST_ARGS) tests/unit
test-kernel: deps venv bpf
	$(PY) -m pytest -q $(PYTEST_ARGS) tests/kernel
test-lab: deps venv bpf
	$(PY) -m pytest -q $(PYTEST_ARGS) tests/lab

demo: deps venv bpf
	$(PY) -m pathsteer_lab.demo

bench: deps venv bpf
	$(PY) -m bench $(BENCH)

# Soak/chaos run (docs/testing.md, "Soak"): a compressed day (1 minute = 1 simulated hour) per data plane;
# default 30 minutes of each plane into soak-out/; e.g. SOAK_ARGS="--minutes 5 --plane bpf --seed 3".
SOAK_ARGS ?=
soak: deps venv bpf
	$(PY) -m bench.soak $(SOAK_ARGS)

# Production install, the daemon only: a self-contained virtualenv under $(PREFIX) and
# /usr/local/bin/pathsteer. The lab tools (src/pathsteer_lab) stay out twice over: pyproject.toml
# packages only `pathsteer` (include = pathsteer*), and what pip builds is a fresh copy of just
# pyproject.toml and src/pathsteer (`stage`, in a temporary directory), so neither the lab nor a
# stale build/ left by an older layout can reach the installed tree (tests/unit/test_layout.py).
install: deps bpf
	$(PYTHON) -m venv $(PREFIX)
	$(PREFIX)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	stage=$$(mktemp -d) && trap 'rm -rf "$$stage"' EXIT && $(call stage_to,$$stage) && \
	  $(PREFIX)/bin/pip install -q --disable-pip-version-check --no-deps --force-reinstall "$$stage"
	ln -sf $(PREFIX)/bin/pathsteer /usr/local/bin/pathsteer
	@echo "installed: /usr/local/bin/pathsteer -> $(PREFIX)/bin/pathsteer"
	@$(MAKE) --no-print-directory install-systemd

# The systemd unit (docs/systemd.md): contrib/systemd/pathsteer.service with @PREFIX@ and
# @CONFDIR@ filled in, into $(DESTDIR)$(UNITDIR); the example config into $(CONFDIR) only when
# there is no config yet (never overwritten); `systemctl daemon-reload` only on a system that
# runs systemd (/run/systemd/system, as sd_booted(3) tells) and without DESTDIR. Not enabled or
# started: that waits for a real config (`systemctl enable --now pathsteer`).
install-systemd:
	mkdir -p "$(DESTDIR)$(UNITDIR)"
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@CONFDIR@|$(CONFDIR)|g' contrib/systemd/pathsteer.service \
	  > "$(DESTDIR)$(UNITDIR)/pathsteer.service.tmp"
	chmod 0644 "$(DESTDIR)$(UNITDIR)/pathsteer.service.tmp"
	mv -f "$(DESTDIR)$(UNITDIR)/pathsteer.service.tmp" "$(DESTDIR)$(UNITDIR)/pathsteer.service"
	install -D -m 0644 docs/systemd.md "$(DESTDIR)$(PREFIX)/share/doc/pathsteer/systemd.md"
	@if [ -e "$(DESTDIR)$(CONFDIR)/pathsteer.yaml" ]; then \
	  echo "kept: $(DESTDIR)$(CONFDIR)/pathsteer.yaml (not overwritten)"; \
	else \
	  install -D -m 0640 contrib/pathsteer.yaml "$(DESTDIR)$(CONFDIR)/pathsteer.yaml" && \
	  echo "installed: $(DESTDIR)$(CONFDIR)/pathsteer.yaml (an example: edit it, then systemctl enable --now pathsteer)"; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed: $(DESTDIR)$(UNITDIR)/pathsteer.service"

# The source tree `install` builds from: pyproject.toml and src/pathsteer (with the BPF objects
# `make bpf` put there), nothing else; `make stage STAGE=DIR` (a new or empty DIR) shows it.
stage_to = mkdir -p "$(1)/src" && cp pyproject.toml "$(1)/" && \
	tar -C src --exclude=__pycache__ -cf - pathsteer | tar -C "$(1)/src" -xf -
stage:
	@test -n "$(STAGE)" || { echo "make stage STAGE=DIR" >&2; exit 2; }
	$(call stage_to,$(STAGE))

# Stops and disables the unit first (where systemd runs); the config and /var/lib/pathsteer stay.
uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl disable --now pathsteer.service 2>/dev/null || true; fi
	rm -f "$(DESTDIR)$(UNITDIR)/pathsteer.service"
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	rm -f /usr/local/bin/pathsteer
	rm -rf $(PREFIX)
	@echo "kept: $(CONFDIR)/pathsteer.yaml and /var/lib/pathsteer (remove them by hand)"

clean:
	rm -rf $(BPF_OBJDIR) build src/*.egg-info .pytest_cache
