# Ponte's stable entry points. Each target installs what it needs on a fresh Debian 12.
#   make test    the whole test suite (C: release, ASan+UBSan and simulated-GPU builds;
#                Python: pytest)
#   make bench   the benchmarks (C: bench/*.c; Python against numpy, MLX and PyTorch:
#                bench/bench_python.py; PONTE_BENCH_TORCH=0: without PyTorch)
#   make train   the main job (training the default example)
#   make test-gpu-sim-asan  the CUDA kernels on the simulator under ASan + UBSan (what
#                compute-sanitizer's memcheck does on a GPU; not in `make test`: ~25 minutes)
#   make install into PREFIX (default /usr/local)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX ?= /usr/local
BUILD ?= build
BUILD_ASAN ?= build-asan
BUILD_SIM ?= build-gpusim
BUILD_SIM_ASAN ?= build-simasan
CMAKE_FLAGS ?=
# CUDA architectures for the builds made here: the GPU of this machine when it has one
# ("native"), else sm_90 only, which checks that the CUDA sources compile without paying for
# four architectures (CMake's own default, for packaging, is sm_80, 86, 89 and 90).
HAVE_NVCC := $(shell command -v nvcc >/dev/null 2>&1 || test -x /usr/local/cuda/bin/nvcc && echo yes)
CUDA_ARCHS ?= $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo native || echo 90)
CUDA_FLAGS := $(if $(HAVE_NVCC),-DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCHS))
# libgomp's workers spin between parallel regions by default; on a machine shared with other
# work that spinning starves the threads doing real work (10x slower training was seen), so
# the entry points wait passively unless told otherwise.
export OMP_WAIT_POLICY ?= passive

.PHONY: all deps build test test-release test-asan test-gpu-sim test-gpu-sim-asan test-python bench train char-lm install clean

all: build

deps:
	@scripts/install-deps

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CUDA_FLAGS) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Host code under ASan+UBSan, without nvcc: sanitizers do not see device code (the kernels are
# checked on the simulator below and by compute-sanitizer in scripts/gpu-check).
$(BUILD_ASAN)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPONTE_SANITIZE=ON \
	  -DPONTE_BUILD_BENCH=OFF -DPONTE_CUDA=OFF $(CMAKE_FLAGS)

test-asan: $(BUILD_ASAN)/CMakeCache.txt
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1 PONTE_TEST_QUICK=1 ctest --output-on-failure -j $(JOBS)

# The CUDA backend's kernels on the simulated CUDA runtime (src/backend/cuda/sim): the whole C
# suite with PONTE_DEVICE=gpu (the simulator's own test and the CPU/GPU conformance test
# included; compiled functions through generated kernels, which the simulator builds with the
# host C++ compiler: PONTE_SIM_JIT=1), the conformance test again with threads in shuffled
# order, then pytest on the GPU (compiled functions through the fused kernels' interpreter).
$(BUILD_SIM)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_SIM) -DCMAKE_BUILD_TYPE=Release -DPONTE_GPU_SIM=ON \
	  -DPONTE_BUILD_BENCH=OFF -DPONTE_BUILD_EXAMPLES=OFF $(CMAKE_FLAGS)

test-gpu-sim: $(BUILD_SIM)/CMakeCache.txt
	cmake --build $(BUILD_SIM) -j $(JOBS)
	cd $(BUILD_SIM) && PONTE_DEVICE=gpu PONTE_SIM_JIT=1 PONTE_CACHE_DIR=$(abspath $(BUILD_SIM))/kernel-cache ctest --output-on-failure -j $(JOBS)
	cd $(BUILD_SIM) && PONTE_DEVICE=gpu PONTE_SIM_SHUFFLE=7 PONTE_GPU_STRICT=1 ./test_backends
	BUILD=$(BUILD_SIM) JOBS=$(JOBS) PONTE_DEVICE=gpu scripts/test-python

# The simulator's kernels under ASan + UBSan: device buffers are host allocations there, so an
# out-of-bounds access in a kernel is caught as on the CPU. Outside `make test` (CI's time).
$(BUILD_SIM_ASAN)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_SIM_ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPONTE_SANITIZE=ON \
	  -DPONTE_GPU_SIM=ON -DPONTE_BUILD_BENCH=OFF -DPONTE_BUILD_EXAMPLES=OFF $(CMAKE_FLAGS)

test-gpu-sim-asan: $(BUILD_SIM_ASAN)/CMakeCache.txt
	cmake --build $(BUILD_SIM_ASAN) -j $(JOBS)
	cd $(BUILD_SIM_ASAN) && PONTE_DEVICE=gpu PONTE_SIM_JIT=1 PONTE_GPU_STRICT=1 \
	  PONTE_CACHE_DIR=$(abspath $(BUILD_SIM_ASAN))/kernel-cache ASAN_OPTIONS=detect_leaks=1 \
	  PONTE_TEST_QUICK=1 ./test_backends
	cd $(BUILD_SIM_ASAN) && PONTE_DEVICE=gpu PONTE_SIM_JIT=1 \
	  PONTE_CACHE_DIR=$(abspath $(BUILD_SIM_ASAN))/kernel-cache ASAN_OPTIONS=detect_leaks=1 \
	  PONTE_TEST_QUICK=1 ctest --output-on-failure -j $(JOBS)

test-python: build
	BUILD=$(BUILD) JOBS=$(JOBS) scripts/test-python

test: test-release test-asan test-gpu-sim test-python

bench: build
	$(BUILD)/ponte_bench
	BUILD=$(BUILD) JOBS=$(JOBS) PONTE_BENCH_TORCH=$${PONTE_BENCH_TORCH:-1} scripts/python-run bench/bench_python.py

DATA := $(BUILD)/data/fashion-mnist
FASHION := /usr/share/datasets/fashion-mnist
TRAIN_ARGS ?=

# Debian's dataset-fashion-mnist ships the idx files gzipped; the example reads them raw.
$(DATA)/.ready: | deps
	@test -f $(FASHION)/train-images-idx3-ubyte.gz || scripts/install-deps dataset-fashion-mnist
	mkdir -p $(DATA)
	for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do \
	  gzip -dc $(FASHION)/$$f.gz > $(DATA)/$$f; done
	touch $@

train: build $(DATA)/.ready
	$(BUILD)/fashion_mnist --data $(DATA) --out $(BUILD)/fashion_mnist_out $(TRAIN_ARGS)

# A small character-level transformer (examples/char_lm.c) on Debian's fortunes: 300 steps,
# well under a minute on 2 cores. CHAR_LM_ARGS passes options (--steps, --device gpu, ...).
CHAR_LM_ARGS ?=

char-lm: build
	@test -d /usr/share/games/fortunes || scripts/install-deps fortunes-min
	$(BUILD)/char_lm $(CHAR_LM_ARGS)

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_SIM) $(BUILD_SIM_ASAN)
