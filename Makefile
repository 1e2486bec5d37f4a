# spillway: build, test and run.  `make help` lists the targets.
#
# Everything builds into $(BUILD) (default build/): build/spillway, build/libspillway.a and one
# binary per test.  CUDA is used when nvcc is found (override with CUDA=0 or NVCC=/path/nvcc).
# Quiet by default: the compiler's command lines are hidden (its warnings and errors are not);
# V=1 shows them.

BUILD    ?= build
CC       ?= gcc
NVCC     ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
CUDA     ?= $(if $(NVCC),1,0)
SANITIZE ?=
OPT      ?= -O2
V        ?= 0
Q        := $(if $(filter 1,$(V)),,@)
NPROC    := $(shell nproc 2>/dev/null || echo 2)

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
# Kernels are compiled for the GPUs this machine has (nvidia-smi's compute capabilities, e.g.
# 8.6 -> sm_86), because every architecture costs a full pass over cuda/*.cu (about 20 s of a
# 2-core machine's build each). With no GPU present (a CI runner, a laptop) they are still
# compiled, for ONE architecture, sm_80: the oldest the kernels support (bf16 mma.sync), so
# every kernel is still checked by the compiler. CUDA_ARCHS=... overrides both, e.g.
# CUDA_ARCHS='-gencode=arch=compute_90a,code=sm_90a' (add one -gencode per architecture; on an H100/H200
# use sm_90a: with plain sm_90 the Hopper attention kernels compile empty and the older ones run).
CUDA_GPU_CAPS := $(sort $(subst .,,$(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null)))
# sm_90 (H100/H200) is built as sm_90a: the Hopper attention kernels need its wgmma instructions.
CUDA_ARCH_SFX_90 := a
# CI (CI=true, no GPU) also builds sm_90a, so that the Hopper-only kernels are compiled too.
CUDA_ARCHS ?= $(if $(CUDA_GPU_CAPS),$(foreach a,$(CUDA_GPU_CAPS),-gencode=arch=compute_$(a)$(CUDA_ARCH_SFX_$(a)),code=sm_$(a)$(CUDA_ARCH_SFX_$(a))),\
                 -gencode=arch=compute_80,code=sm_80$(if $(filter true 1,$(CI)), -gencode=arch=compute_90a$(comma)code=sm_90a))
CUDA_ARCH_WHY := $(if $(filter command line environment,$(origin CUDA_ARCHS)),CUDA_ARCHS given,$(if \
                 $(CUDA_GPU_CAPS),the GPUs present,no GPU found: sm_80 so every kernel compiles$(if $(filter true 1,$(CI)), and sm_90a in CI for the Hopper-only ones)))
NVCCFLAGS  = -std=c++17 -O3 $(CUDA_ARCHS) -I. -DSW_HAVE_CUDA=1 -Xcompiler -Wall,-Wextra,-Werror,-fPIC \
             -Werror all-warnings --expt-relaxed-constexpr
CFLAGS    += -DSW_HAVE_CUDA=1 -I$(CUDA_INCDIR)
LDLIBS    += -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublasLt -lcublas -lcudart -lstdc++
endif

MODULES  := core cpu optim io offload $(if $(filter 1,$(CUDA)),cuda)
LIB_SRC  := $(filter-out core/main.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
CU_SRC   := $(if $(filter 1,$(CUDA)),$(wildcard cuda/*.cu optim/*.cu))
# the CUDA objects first: they take longest, so with -j they start while the C files compile
LIB_OBJ  := $(CU_SRC:%.cu=$(BUILD)/%.cu.o) $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SH  := $(wildcard tests/test_*.sh)
GPU_SRC  := $(wildcard tests/gpu/test_*.c)
GPU_BIN  := $(GPU_SRC:tests/gpu/%.c=$(BUILD)/tests/gpu/%)
GPU_SH   := $(wildcard tests/gpu/test_*.sh)
# test-gpu PART=1, 2 or 3: the list in three parts, for machines lent in calls of at most ten
# minutes (part 1, all but the sanitizer: about 390 s on an H100; part 2: the sanitizer over the
# default kernels; part 3: over the attention tests' other backward forms); no PART: all of it
GPU_SAN1 := tests/gpu/test_cuda_sanitize.sh
GPU_SAN2 := tests/gpu/test_cuda_sanitize_attn.sh
GPU_RUN  := $(if $(filter 2,$(PART)),$(GPU_SAN1),$(if $(filter 3,$(PART)),$(GPU_SAN2),$(GPU_BIN) \
            $(if $(filter 1,$(PART)),$(filter-out $(GPU_SAN1) $(GPU_SAN2),$(GPU_SH)),$(GPU_SH))))
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

comma := ,

.PHONY: all help info deps run test test-gpu asan fuzz bench clean
all: info $(BUILD)/spillway $(BUILD)/libspillway.a

help:
	@echo "make            build $(BUILD)/spillway and $(BUILD)/libspillway.a"
	@echo "make deps       install missing system packages (apt-get; sudo when not root)"
	@echo "make run        deps + build + fine-tune the embedded default model into runs/"
	@echo "make test       every CPU test (exit status is the verdict)"
	@echo "make test-gpu   every GPU test (skips cleanly without a GPU); PART=1, 2 or 3: one of its three parts"
	@echo "make asan       the same tests under AddressSanitizer + UBSan"
	@echo "make fuzz       libFuzzer targets for the safetensors and config parsers (FUZZ_SECONDS=60)"
	@echo "make bench      build the benchmarks in bench/"
	@echo "V=1             show the compiler's command lines"

info:
	@echo "spillway build: CC=$(CC) $$($(CC) -dumpfullversion 2>/dev/null), CUDA=$(CUDA)$(if $(filter 1,$(CUDA)), ($(NVCC))), BUILD=$(BUILD)$(if $(SANITIZE), SANITIZE=$(SANITIZE))"
	$(if $(filter 1,$(CUDA)),@echo "spillway build: CUDA kernels for $(patsubst code=%,%,$(filter code=%,$(subst $(comma), ,$(CUDA_ARCHS)))) ($(CUDA_ARCH_WHY))")

deps:
	@bash tests/deps.sh

$(BUILD)/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.cu.o: %.cu $(wildcard */*.h) $(wildcard */*.cuh)
	@mkdir -p $(dir $@)
	$(Q)$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/libspillway.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/spillway: $(BUILD)/core/main.o $(BUILD)/libspillway.a
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libspillway.a tests/check.h
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $< -o $@ $(BUILD)/libspillway.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libspillway.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $< -o $@ $(BUILD)/libspillway.a $(LDFLAGS) $(LDLIBS)

test: all $(TEST_BIN)
	@SW_BIN=$(BUILD)/spillway bash tests/run.sh $(TEST_BIN) $(TEST_SH)

test-gpu: all $(GPU_BIN) $(BUILD)/tests/test_offload_exec_invariance $(BUILD)/tests/test_offload_exec_clip \
          $(BUILD)/tests/test_offload_keep $(BUILD)/tests/test_offload_lora_golden
	@SW_BIN=$(BUILD)/spillway bash tests/run.sh --gpu $(GPU_RUN)

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" CUDA=0 test

bench: all $(BENCH_BIN)

FUZZ_SECONDS ?= 60
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang CUDA=0 OPT=-O1 SANITIZE="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" build-fuzz/libspillway.a
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_LIBS="$(filter-out -lcublasLt -lcublas -lcudart -lstdc++,$(LDLIBS))" bash tests/fuzz/run.sh build-fuzz $(FUZZ_SRC)

# deps first, then the build on every core (a plain `make run` would otherwise compile serially;
# a -jN given to make is kept)
run:
	@bash tests/deps.sh
	@$(MAKE) --no-print-directory $(if $(findstring -j,$(MAKEFLAGS)),,-j$(NPROC)) all
	@bash tests/run_default.sh $(BUILD)/spillway

clean:
	rm -rf build build-asan build-fuzz
