# edgeloop: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need (scripts/bootstrap, Debian packages only), build and run.

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all bootstrap configure build test unit-test blackbox-test asan-test demo bench bench-lake \
	bench-train bench-nab bench-tabular bench-queue bench-hub format clean

all: build

bootstrap:
	@scripts/bootstrap

# Debug info is line tables only (-g1): enough for symbolised stack traces and profiles, and it
# compiles about 30 % faster than full -g (26.3 s -> 18.0 s for src/serving/deployment.cc), which
# keeps a fresh `make test` within its 30 minutes on 2 cores. Pass CMAKE_ARGS to change it.
LINE_TABLES = -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" -DCMAKE_CXX_FLAGS_DEBUG="-g1"

configure: bootstrap
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEDGELOOP_WERROR=ON \
	  -DEDGELOOP_BUILD_TESTS=ON -DEDGELOOP_BUILD_BENCH=ON $(LINE_TABLES) $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Every test: unit tests and black-box tests on the release build, then the unit tests again
# under AddressSanitizer + UndefinedBehaviorSanitizer.
# (builds the binary and the unit tests only; `make build` also builds the benchmarks)
test: configure
	cmake --build $(BUILD) -j $(JOBS) --target edgeloop unit_tests
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory asan-test

unit-test: configure
	cmake --build $(BUILD) -j $(JOBS) --target edgeloop unit_tests
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -L unit

blackbox-test: configure
	cmake --build $(BUILD) -j $(JOBS) --target edgeloop unit_tests
	ctest --test-dir $(BUILD) --output-on-failure -L blackbox

asan-test: bootstrap
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DEDGELOOP_SANITIZE=ON \
	  -DEDGELOOP_WERROR=ON -DEDGELOOP_BUILD_BENCH=OFF $(LINE_TABLES) $(CMAKE_ARGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS) --target unit_tests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -L unit

# The whole loop on this machine (`edgeloop up`, docs/up.md): prints the URLs; Ctrl-C stops it.
demo: build
	scripts/demo $(BUILD)/edgeloop

# bench/serve: edgeloop against FastAPI, Flask, nginx and the in-process compute floor.
bench: build
	bench/serve/run --edgeloop $(BUILD)/edgeloop

# The other benchmarks; each runs its peer or limit in the same run and prints ratios.
bench-lake: build
	bench/lake/run --edgeloop $(BUILD)/edgeloop

bench-train: build
	bench/train/run --edgeloop $(BUILD)/edgeloop

bench-nab: build
	bench/nab/run $(BUILD)

bench-tabular: build
	bench/anomaly_tabular/run --tool $(BUILD)/bench/anomaly_tabular_tool

bench-queue: build
	bench/queue/run --bench $(BUILD)/bench/queue_bench

bench-hub: build
	EDGELOOP_BIN=$(BUILD)/edgeloop bench/hub/run

format:
	git ls-files '*.cc' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
