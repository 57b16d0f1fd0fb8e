# libsession build, test, demo and install.
#   make demo                 build, start the bundled server, run a C example against it
#   make test                 install missing test tools (as root, via apt-get), run every test,
#                             the C tests also under valgrind and AddressSanitizer
#   make install PREFIX=DIR   install the stripped libraries, header, session-server, pkg-config
#                             file and CMake package (DESTDIR=DIR stages; README.md, Installing)
#   make uninstall PREFIX=DIR remove what make install put there, listed in its manifest
#   make docs                 HTML API reference in build/docs/html (doxygen)
#   make test-python          the Python package's tests (python/), in a venv in build/python-venv
#   make python-wheel         a wheel of the Python package bundling the library, in build/python-dist
#   make header               regenerate include/session.h from src/ffi
#   make bench                benchmarks, written to docs/BENCHMARKS.md: libsession against raw
#                             tokio-tungstenite and libwebsockets, and next to Paho MQTT C and
#                             libmosquitto (with mosquitto), nats.c (with nats-server); then
#                             clusters against the single-process server, written to
#                             docs/CLUSTER-BENCHMARKS.md; installs what they need (as root, via apt-get)
#   make fuzz                 every fuzz target for FUZZ_SECONDS (default 600) each

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
STRIP ?= strip
# What a program linking libsession.a needs from the system, as
# `cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs` prints it
# (Rust's standard library's needs; the dependencies add none). For session.pc's Libs.private and
# the CMake package's libsession::static.
NATIVE_STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
CARGO ?= cargo
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
RELEASE := target/release
BUILD := build

.PHONY: all build header deps docs bench fuzz test test-rust test-c test-c-valgrind test-c-asan test-install test-docs test-python python-wheel demo install uninstall clean

all: build

# The library and the session-server binary (the workspace's two packages).
build:
	$(CARGO) build --release --workspace
	ln -sf libsession.so $(RELEASE)/libsession.so.0

header:
	SESSION_UPDATE_HEADER=1 $(CARGO) build --release

deps:
	sh scripts/install-deps.sh

test: deps build test-rust test-c test-install test-docs test-python test-c-valgrind test-c-asan

# The session tests run twice: with the tuned runtime, and with LIBSESSION_RUNTIME=plain (no
# poll windows, no parking; spin.rs measures the tuned mode's poll windows only).
test-rust:
	$(CARGO) test --release --workspace
	LIBSESSION_RUNTIME=plain $(CARGO) test --release -p libsession --test '*' -- --skip io_threads_poll_between_close_turns

# Configures examples-c in $(BUILD)/$(1) with the CMake options $(2), builds and runs it.
ctest_c = cmake -S examples-c -B $(BUILD)/$(1) -DSESSION_LIB_DIR=$(CURDIR)/$(RELEASE) $(2) && \
	cmake --build $(BUILD)/$(1) && ctest --test-dir $(BUILD)/$(1) --output-on-failure

test-c: build
	$(call ctest_c,examples-c)

# Every C program under valgrind memcheck: any memory error or definite leak fails the test.
VALGRIND := valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	--suppressions=$(CURDIR)/examples-c/valgrind.supp \
	--show-leak-kinds=definite
test-c-valgrind: build
	$(call ctest_c,examples-c-valgrind,-DEXAMPLE_LAUNCHER="$(VALGRIND)" -DRACE_ITERATIONS=200 -DTEST_TIMEOUT=300)

# Every C program built with -fsanitize=address, against the library built with
# -Zsanitizer=address by the nightly toolchain.
test-c-asan: build
	sh scripts/asan.sh $(BUILD)/examples-c-asan

test-install: build
	sh scripts/check-install.sh

# The API reference builds, and its main page and the header's page name session_create.
test-docs: docs
	grep -q session_create $(BUILD)/docs/html/index.html
	grep -q session_create $(BUILD)/docs/html/session_8h.html
	@echo "docs check: $(BUILD)/docs/html/index.html"

# The HTML API reference in $(BUILD)/docs/html: include/session.h's doc comments, README.md as
# the main page, docs/*.md as related pages (docs/Doxyfile; doxygen installed when missing).
docs:
	sh scripts/install-deps.sh docs
	rm -rf $(BUILD)/docs/html
	mkdir -p $(BUILD)/docs
	(cat docs/Doxyfile; echo "PROJECT_NUMBER = $(VERSION)"; echo "OUTPUT_DIRECTORY = $(BUILD)/docs") | doxygen -

# The Python package: a virtual environment with pytest and hatchling (from PyPI), the package
# used in place against the built library; its tests start the bundled server and tinyproxy,
# and build the wheel and install it into a fresh virtual environment.
PYTHON ?= python3
PYTHON_VENV := $(BUILD)/python-venv
$(PYTHON_VENV)/.ready:
	$(PYTHON) -m venv $(PYTHON_VENV)
	$(PYTHON_VENV)/bin/pip install --quiet pytest hatchling
	touch $@

test-python: build $(PYTHON_VENV)/.ready
	cd python && LIBSESSION_LIBRARY=$(CURDIR)/$(RELEASE)/libsession.so ../$(PYTHON_VENV)/bin/python -m pytest -ra

python-wheel: build $(PYTHON_VENV)/.ready
	rm -rf $(BUILD)/python-dist
	$(PYTHON_VENV)/bin/pip wheel --quiet --no-deps --no-build-isolation -w $(BUILD)/python-dist ./python
	ls -l $(BUILD)/python-dist

# Benchmarks: libsession against raw TCP, raw tokio-tungstenite and libwebsockets, and next to
# Paho MQTT C, libmosquitto and nats.c, written to docs/BENCHMARKS.md; clusters (nats-server,
# nodes, haproxy) against the single-process server, written to docs/CLUSTER-BENCHMARKS.md.
bench: build
	sh scripts/install-deps.sh bench
	$(CARGO) bench --bench bench
	$(CARGO) bench -p session-server --bench cluster

# Fuzzing with cargo-fuzz (installed when missing) and the nightly toolchain: each target of
# fuzz/fuzz_targets for FUZZ_SECONDS, starting from the committed corpus in fuzz/corpus/TARGET.
# New inputs go to target/fuzz-corpus, crashes to fuzz/artifacts; a crash, once fixed, is added
# to fuzz/corpus so that `make test` replays it.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= $(basename $(notdir $(wildcard fuzz/fuzz_targets/*.rs)))
fuzz:
	command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	for t in $(FUZZ_TARGETS); do \
	    mkdir -p target/fuzz-corpus/$$t && \
	    $(CARGO) +nightly fuzz run $$t $(CURDIR)/target/fuzz-corpus/$$t $(CURDIR)/fuzz/corpus/$$t -- \
	        -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || exit 1; \
	done

demo: build
	sh scripts/demo.sh $(RELEASE)

# What goes where, and the manifest that uninstall reads: scripts/install.sh.
INSTALL_ENV = PREFIX='$(PREFIX)' LIBDIR='$(LIBDIR)' INCLUDEDIR='$(INCLUDEDIR)' BINDIR='$(BINDIR)' \
	DATADIR='$(DATADIR)' DESTDIR='$(DESTDIR)' VERSION='$(VERSION)' RELEASE='$(RELEASE)' STRIP='$(STRIP)' \
	NATIVE_STATIC_LIBS='$(NATIVE_STATIC_LIBS)'

install: build
	$(INSTALL_ENV) sh scripts/install.sh install

uninstall:
	$(INSTALL_ENV) sh scripts/install.sh uninstall

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
