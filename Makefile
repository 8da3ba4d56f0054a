#   troupe - `make run` and `make test` work on a machine with nothing
#   installed: each first installs the Debian packages that are missing
#   (scripts/install-deps.sh), then configures CMake in $(BUILD), builds,
#   and runs the main job or the whole test suite.
#
#   make run                  install, build, run the main job
#   make test                 install, build, run every test (CTest)
#   make test SANITIZE=address,undefined BUILD=build-asan
#   make test SANITIZE=thread BUILD=build-tsan
#   make fuzz [FUZZ_SECONDS=60]  short libFuzzer run of every target (clang)
#   make bench                the benchmarks and bench/RESULTS.md
#   make reliability          the long reliability runs and tests/RELIABILITY.md
#   make install [PREFIX=/usr/local]

BUILD ?= build
SANITIZE ?=
PREFIX ?= /usr/local
FUZZ_SECONDS ?= 60
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

#   Sanitizer builds skip the install test (it links plain programs
#   against the library); their environment (options, suppressions,
#   longer timeouts) is set per test in tests/CMakeLists.txt.
ifneq ($(SANITIZE),)
    CTEST_ARGS = -LE install --timeout 1800
endif

.PHONY: run test deps build configure fuzz bench reliability install clean

#   The main job: the example tree for 20 seconds (Ctrl-C stops it sooner).
run: build
	$(BUILD)/troupe run examples/main.yaml --for 20s --status

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

configure: deps
	cmake -S . -B $(BUILD) -DTROUPE_TESTS=ON -DTROUPE_SANITIZE=$(SANITIZE) $(CMAKE_ARGS) > /dev/null

deps:
	@scripts/install-deps.sh

fuzz:
	@scripts/install-deps.sh --fuzz
	tests/fuzz/run.sh $(FUZZ_SECONDS)

bench:
	bench/run

reliability: build
	BUILD=$(BUILD) scripts/reliability.sh

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf build build-asan build-tsan build-fuzz build-bench
