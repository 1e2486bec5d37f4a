# spillway: build, test and run.  `make help` lists the targets.
#
# Everything builds into $(BUILD) (default build/): build/spillway, build/libspillway.a and one
# binary per test.  CUDA is used when nvcc is found (override with CUDA=0 or NVCC=/path/nvcc).

BUILD    ?= build
CC       ?= gcc
NVCC     ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
CUDA     ?= $(if $(NVCC),1,0)
SANITIZE ?=
OPT      ?= -O2

CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -ffp-contract=off -Wall -Wextra -Werror -g $(OPT) -fno-strict-aliasing -pthread -I.
CFLAGS   = $(CFLAGS_BASE) $(SANITIZE) $(EXTRA_CFLAGS)
LDLIBS   = -luring -lhwloc -ljansson -lxxhash -lonig -lutf8proc -lopenblas -lm -lpthread -ldl
LDFLAGS  = $(SANITIZE) -pthread

ifeq ($(CUDA),1)
# Ask nvcc where its headers and libraries are: nvcc may be a wrapper script outside the toolkit
# (CI has /usr/local/bin/nvcc) and toolkits put libraries in lib64/, lib/ or targets/*/lib.
CUDA_NVCC_DRY := $(shell $(NVCC) -dryrun -c -x cu /dev/null -o /dev/null 2>&1)
CUDA_INCDIR ?= $(firstword $(patsubst -I%,%,$(filter -I%,$(subst ",,$(CUDA_NVCC_DRY)))) \
                 $(patsubst %/bin/nvcc,%,$(NVCC))/include)
CUDA_LIBDIR ?= $(firstword $(patsubst -L%,%,$(filter-out %/stubs,$(filter -L%,$(subst ",,$(CUDA_NVCC_DRY))))) \
                 $(patsubst %/bin/nvcc,%,$(NVCC))/lib64)
CUDA_ARCHS ?= -gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_86,code=sm_86 \
              -gencode=arch=compute_89,code=sm_89 -gencode=arch=compute_90,code=sm_90
NVCCFLAGS  = -std=c++17 -O3 $(CUDA_ARCHS) -I. -DSW_HAVE_CUDA=1 -Xcompiler -Wall,-Wextra,-Werror,-fPIC \
             -Werror all-warnings --expt-relaxed-constexpr
CFLAGS    += -DSW_HAVE_CUDA=1 -I$(CUDA_INCDIR)
LDLIBS    += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublasLt -lcublas -lcudart -lstdc++
endif

MODULES  := core cpu optim io offload $(if $(filter 1,$(CUDA)),cuda)
LIB_SRC  := $(filter-out core/main.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
CU_SRC   := $(if $(filter 1,$(CUDA)),$(wildcard cuda/*.cu optim/*.cu))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_SRC:%.cu=$(BUILD)/%.cu.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SH  := $(wildcard tests/test_*.sh)
GPU_SRC  := $(wildcard tests/gpu/test_*.c)
GPU_BIN  := $(GPU_SRC:tests/gpu/%.c=$(BUILD)/tests/gpu/%)
GPU_SH   := $(wildcard tests/gpu/test_*.sh)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

.PHONY: all help info deps run test test-gpu asan fuzz bench clean
all: info $(BUILD)/spillway $(BUILD)/libspillway.a

help:
	@echo "make            build $(BUILD)/spillway and $(BUILD)/libspillway.a"
	@echo "make deps       install missing system packages (apt-get; sudo when not root)"
	@echo "make run        deps + build + fine-tune the embedded default model"
	@echo "make test       every CPU test (exit status is the verdict)"
	@echo "make test-gpu   every GPU test (skips cleanly without a GPU)"
	@echo "make asan       the same tests under AddressSanitizer + UBSan"
	@echo "make fuzz       libFuzzer targets for the safetensors and config parsers (FUZZ_SECONDS=60)"
	@echo "make bench      build the benchmarks in bench/"

info:
	@echo "spillway build: CC=$(CC) $$($(CC) -dumpfullversion 2>/dev/null), CUDA=$(CUDA)$(if $(filter 1,$(CUDA)), ($(NVCC))), BUILD=$(BUILD)$(if $(SANITIZE), SANITIZE=$(SANITIZE))"

deps:
	@bash tests/deps.sh

$(BUILD)/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.cu.o: %.cu $(wildcard */*.h) $(wildcard */*.cuh)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/libspillway.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/spillway: $(BUILD)/core/main.o $(BUILD)/libspillway.a
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libspillway.a tests/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/libspillway.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libspillway.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(BUILD)/libspillway.a $(LDFLAGS) $(LDLIBS)

test: all $(TEST_BIN)
	@SW_BIN=$(BUILD)/spillway bash tests/run.sh $(TEST_BIN) $(TEST_SH)

test-gpu: all $(GPU_BIN) $(BUILD)/tests/test_offload_exec_invariance
	@SW_BIN=$(BUILD)/spillway bash tests/run.sh --gpu $(GPU_BIN) $(GPU_SH)

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" CUDA=0 test

bench: all $(BENCH_BIN)

FUZZ_SECONDS ?= 60
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang CUDA=0 OPT=-O1 SANITIZE="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" build-fuzz/libspillway.a
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_LIBS="$(filter-out -lcublasLt -lcublas -lcudart -lstdc++,$(LDLIBS))" bash tests/fuzz/run.sh build-fuzz $(FUZZ_SRC)

run: deps all
	@bash tests/run_default.sh $(BUILD)/spillway

clean:
	rm -rf build build-asan build-fuzz
