# perfmem: `make demo` and `make test` each install what is missing, build, then run.
.PHONY: all deps build build-asan demo test test-release test-asan bench clean

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_FLAGS ?= --output-on-failure -j $(JOBS)
# Warnings are errors in every build made through this Makefile (and so in CI).
CMAKE_FLAGS ?= -DPERFMEM_WERROR=ON

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake --preset release $(CMAKE_FLAGS) >/dev/null
	cmake --build --preset release -j $(JOBS)

build-asan: deps
	cmake --preset asan $(CMAKE_FLAGS) >/dev/null
	cmake --build --preset asan -j $(JOBS)

# Runs each system's demo on built-in defaults (models and checkpoints made by perfmem itself).
demo: build
	@scripts/demo.sh build/release

test-release: build
	ctest --test-dir build/release $(CTEST_FLAGS)

# Sanitizer build: the whole suite again under ASan + UBSan.
test-asan: build-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir build/asan $(CTEST_FLAGS) -LE slow

test: test-release test-asan

bench: build
	@scripts/bench.sh build/release

clean:
	rm -rf build
