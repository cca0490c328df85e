# wim — one Makefile for the engine, the CLI, the tests and the benchmarks.
#   make            build/wim and build/libwim.a
#   make test       build and run the whole suite (prints "N passed, N failed, N skipped")
#   make asan       the same suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make fuzz       each libFuzzer harness of tests/fuzz/ for FUZZ_SECONDS (clang)
#   make tour       every command of the guided tour (docs/TOUR.md)
#   make demo       the main job on the bundled default
#   make bench      benchmarks (bench/)
#   make bench-vs-llama  wim and llama.cpp side by side on the same GGUF files (bench/vs-llama.sh)
#   make bench-wim-overhead  WiM's cost over the llm baseline, per phase (bench/wim-overhead.sh)
#   make bench-serve-load  wim serve under 20 concurrent clients (bench/serve-load.sh)
#   make bench-loaded  idle and with other processes busy (bench/loaded.sh)
#   make model      retrain the bundled model data/wim-tiny/ (PyTorch: minutes on a GPU, 7–11 h on a CPU core; not in test or CI)
#   make deps       install the Debian packages the build needs (apt-get)

CC      ?= gcc
BUILD   ?= build
ARCH    := $(shell $(CC) -dumpmachine | cut -d- -f1)
SHARED  ?= ../shared
OPT     ?= -O2
CFLAGS  += -std=c11 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -fopenmp -D_GNU_SOURCE \
           -Isrc -Isimd -Ipaper-repro -MMD -MP
LDLIBS  += -lopenblas -lz -lm -fopenmp

ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
# make fuzz: clang, coverage for libFuzzer everywhere, the harnesses linked with libFuzzer
ifeq ($(SAN),fuzz)
CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
           -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
FUZZ_MAIN := -fsanitize=fuzzer
else
FUZZ_MAIN := tests/fuzz/replay.c
endif

# One file per ISA, each compiled with its own flags so one binary runs everywhere.
ifeq ($(ARCH),x86_64)
SIMD_SRC := $(filter-out simd/neon.c,$(wildcard simd/*.c))
else ifeq ($(ARCH),aarch64)
SIMD_SRC := $(filter-out simd/avx2.c simd/avxvnni.c simd/avx512vnni.c simd/amx.c,$(wildcard simd/*.c))
else
SIMD_SRC := $(filter-out simd/neon.c simd/avx2.c simd/avxvnni.c simd/avx512vnni.c simd/amx.c,$(wildcard simd/*.c))
endif
ISA_avx2       := -mavx2 -mfma -mf16c
ISA_avxvnni    := -mavx2 -mfma -mf16c -mavxvnni
ISA_avx512vnni := -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx512bf16 -mfma -mf16c
ISA_amx        := -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mfma -mf16c -mamx-tile -mamx-int8 -mamx-bf16
ISA_neon       := -march=armv8.2-a+dotprod+fp16

CLI_SRC  := src/cli.c $(wildcard src/cmd_*.c) $(wildcard src/serve_*.c)
LIB_SRC  := $(filter-out $(CLI_SRC),$(wildcard src/*.c)) $(SIMD_SRC)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
REPRO_SRC := $(wildcard paper-repro/*.c)
REPRO_OBJ := $(REPRO_SRC:%.c=$(BUILD)/%.o)
REPRO_LIB := $(BUILD)/librepro.a -lcjson
# libFuzzer harnesses (tests/fuzz/): replayed over their corpora by make test, run by make fuzz
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN  := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/fuzz/%)
FUZZ_SECONDS ?= 60
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all test asan fuzz tour demo bench bench-vs-llama bench-wim-overhead bench-serve-load bench-loaded model deps clean format
all: $(BUILD)/wim $(BUILD)/libwim.a

# test and demo first make sure the Debian packages are there (installing them as root,
# otherwise printing the apt-get command to run).
deps:
	@bash .ci/deps.sh

$(BUILD)/simd/%.o: simd/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ISA_$*) -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libwim.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# paper-repro (loaders, CWE generator, document builder, scorers) uses cJSON; the
# engine in libwim.a does not.
$(BUILD)/librepro.a: $(REPRO_OBJ)
	@rm -f $@
	ar rcs $@ $^

# wim serve: libmicrohttpd (HTTP), cJSON, threads; the page is embedded (.incbin)
$(BUILD)/src/serve_page.o: src/serve_page.html

$(BUILD)/wim: $(CLI_OBJ) $(BUILD)/libwim.a $(BUILD)/librepro.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(REPRO_LIB) $(BUILD)/libwim.a $(LDLIBS) -lmicrohttpd -lpthread

# test_faults: the engine's allocations and writes go through the test's failing wrappers
$(BUILD)/tests/test_faults: LDFLAGS += -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc \
                                       -Wl,--wrap=aligned_alloc,--wrap=fwrite

$(BUILD)/tests/%: tests/%.c $(BUILD)/libwim.a $(BUILD)/librepro.a tests/test.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(REPRO_LIB) $(BUILD)/libwim.a $(LDLIBS)

# a harness with replay.c (or libFuzzer's main); the server's parts that do not speak HTTP
SERVE_CORE := $(BUILD)/src/serve_request.o $(BUILD)/src/serve_jobs.o $(BUILD)/src/serve_docs.o
$(BUILD)/tests/fuzz/%: tests/fuzz/%.c tests/fuzz/replay.c tests/fuzz/fuzz.h $(SERVE_CORE) \
                       $(BUILD)/libwim.a $(BUILD)/librepro.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/fuzz $(LDFLAGS) -o $@ $< $(FUZZ_MAIN) $(SERVE_CORE) $(REPRO_LIB) \
	    $(BUILD)/libwim.a $(LDLIBS) -lpthread

$(BUILD)/bench/%: bench/%.c $(BUILD)/libwim.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libwim.a $(LDLIBS)

test: deps
	@$(MAKE) --no-print-directory $(BUILD)/wim $(TEST_BIN) $(FUZZ_BIN)
	@WIM_SHARED=$(SHARED) WIM_TEST_QUICK=$(WIM_TEST_QUICK) bash tests/run.sh $(BUILD)

# Each harness for FUZZ_SECONDS (default 60; FUZZ_RUNS=N stops at N executions) from its
# committed corpus, under clang's ASan +
# UBSan; new inputs go to build-fuzz/corpus/, findings to build-fuzz/crashes/ (copy one into
# tests/fuzz/crashes/NAME/ once fixed, and make test replays it from then on).
fuzz:
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang SAN=fuzz OPT=-O1 \
	    $(FUZZ_SRC:tests/fuzz/%.c=build-fuzz/tests/fuzz/%)
	@WIM_SHARED=$(SHARED) FUZZ_RUNS=$(FUZZ_RUNS) bash tests/fuzz/run.sh build-fuzz $(FUZZ_SECONDS)

# every command of docs/TOUR.md, on the bundled model and stories260K (also part of make test)
tour: $(BUILD)/wim
	@WIM_SHARED=$(SHARED) WIM_BIN=$(abspath $(BUILD))/wim bash tests/tour.sh

# WIM_TEST_QUICK trims the longest loops (same code paths) so the sanitizer run stays short.
asan:
	$(MAKE) BUILD=build-asan SAN=1 OPT=-O1 WIM_TEST_QUICK=1 test

demo:
	@bash .ci/deps.sh demo
	@$(MAKE) --no-print-directory $(BUILD)/wim
	@bash data/demo.sh $(BUILD)/wim

bench: $(BUILD)/wim $(BENCH_BIN)
	@bash bench/run.sh $(BUILD)

# wim beside llama.cpp (built once into build/peers) on the same files and threads
bench-vs-llama: $(BUILD)/wim
	@BUILD=$(BUILD) bash bench/vs-llama.sh

# idle and with other processes busy: the thread count and OpenMP's wait policy
bench-loaded: $(BUILD)/wim
	@BUILD=$(BUILD) bash bench/loaded.sh

# wim serve: 20 clients x 5 questions on documents read once (throughput, latency, RSS)
bench-serve-load: $(BUILD)/wim
	@BUILD=$(BUILD) bash bench/serve-load.sh

# what WiM costs on top of reading the document: llm, wim (branches), the paper's loop, a second question
bench-wim-overhead: $(BUILD)/wim
	@BUILD=$(BUILD) bash bench/wim-overhead.sh

model: $(BUILD)/wim
	@bash data/wim-tiny/make-model.sh $(BUILD)/wim

format:
	clang-format -i src/*.c src/*.h simd/*.c simd/*.h tests/*.c tests/*.h paper-repro/*.c paper-repro/*.h

clean:
	rm -rf build build-asan build-neon build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(REPRO_OBJ:.o=.d)
