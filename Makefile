# Thin convenience wrapper around CMake. Real build logic lives in CMakeLists.txt.
#   make deps    check (and, as root, install) the Debian packages the build needs
#   make models  fetch the demo/test models into models/ (see tools/fetch_models.sh)
#   make build   configure build/ (Release) and build everything
#   make cli     configure build/ like `make build`, build only the depass CLI
#   make test    deps + models + build, then run the test suite
#   make demo    build only the CLI, generate a story and attribute a prediction
#   make clean   remove build/
#   make sanitize  the test suite under ASan+UBSan in build-asan/ (docs/robustness.md)
#   make fuzz      build the libFuzzer harnesses (clang) in build-fuzz/ and run each for
#                  FUZZ_SECONDS (default 60); `make -j2 fuzz` runs two at a time

BUILD_DIR  ?= build
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE      ?= cmake
CTEST      ?= ctest
CMAKE_ARGS ?=
# The Python module (python/, DEPASS_BUILD_PYTHON) and its pytest suite; CMake uses
# Debian's /usr/bin/python3, where these install.
PYTHON_DEB_PACKAGES := pybind11-dev python3-dev python3-numpy python3-pytest python3-matplotlib
# Open MPI: sharded runs and their tests (docs/distributed.md; optional for the build).
MPI_DEB_PACKAGES := libopenmpi-dev openmpi-bin
# oneDNN: the bf16 mode's products (--precision bf16); optional like MPI.
ONEDNN_DEB_PACKAGES := libdnnl-dev
DEB_PACKAGES := libeigen3-dev catch2 nlohmann-json3-dev cmake g++ make $(PYTHON_DEB_PACKAGES) $(MPI_DEB_PACKAGES) \
	$(ONEDNN_DEB_PACKAGES)

.PHONY: all deps models build cli test demo clean sanitize fuzz fuzz-deps fuzz-build fuzz-corpus

all: build

deps:
	@if ! command -v dpkg >/dev/null 2>&1; then \
	  echo "deps: dpkg not found; make sure Eigen >= 3.4, Catch2 v2, nlohmann_json, CMake >= 3.21 and a C++17 compiler are installed (and pybind11, NumPy, pytest, matplotlib for the Python module)"; \
	  exit 0; \
	fi; \
	missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: installing$$missing"; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	  else \
	    echo "deps: missing packages:$$missing"; \
	    echo "deps: run:  sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	fi

models:
	@tools/fetch_models.sh

build: deps
	$(CMAKE) -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)
	$(CMAKE) --build $(BUILD_DIR) -j$(JOBS)

cli: deps
	$(CMAKE) -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)
	$(CMAKE) --build $(BUILD_DIR) -j$(JOBS) --target depass_cli

test: deps models build
	@# Tests run side by side (-j): one OpenMP thread each and no spin-waiting, or the
	@# threads of concurrent tests fight over the cores.
	DEPASS_REQUIRE_MODELS=1 OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive $(CTEST) --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS)

demo: deps models cli
	@test -x $(BUILD_DIR)/bin/depass || { echo "demo: $(BUILD_DIR)/bin/depass was not built (examples/depass/ missing?)"; exit 1; }
	$(BUILD_DIR)/bin/depass generate --model models/stories260K/stories260K.bin \
	  --tokenizer models/stories260K/tok512.bin --prompt "Once upon a time" --max-new 200
	@echo
	@echo "Which input tokens made the model predict the next word? (token-level DePass)"
	$(BUILD_DIR)/bin/depass tokens --model models/stories260K/stories260K.bin \
	  --tokenizer models/stories260K/tok512.bin \
	  --prompt "Once upon a time there was a little girl named Lily. She loved to play with her" \
	  --json $(BUILD_DIR)/demo-tokens.json

clean:
	rm -rf $(BUILD_DIR)

# --- robustness: sanitizers and fuzzing (issue #7, docs/robustness.md) ----------------------
ASAN_DIR   ?= build-asan
# ctest -E regex of tests left out of the sanitizer run, and test areas not built for it
# (reasons and what each costs in docs/robustness.md, "Sanitizers").
ASAN_EXCLUDE ?= ^cmake\.|^cli:example
ASAN_SKIP_AREAS ?= methods;gradients;families
ASAN_OPTIONS_DEFAULT := detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1
UBSAN_OPTIONS_DEFAULT := print_stacktrace=1:halt_on_error=1

# Tests and the CLI built with -fsanitize=address,undefined at -O1 with asserts (line
# tables only: -g1 gives the same stack traces, ~25% faster), then run. Benchmarks are
# timing programs, not tests; the example programs and the Python module use the same
# library code as the tests.
sanitize: deps models
	$(CMAKE) -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1" \
	  -DDEPASS_SANITIZE=ON -DDEPASS_BUILD_BENCHMARKS=OFF -DDEPASS_BUILD_PYTHON=OFF -DDEPASS_MPI=OFF \
	  -DDEPASS_BUILD_EXAMPLE_PROGRAMS=OFF "-DDEPASS_SKIP_TEST_AREAS=$(ASAN_SKIP_AREAS)" $(CMAKE_ARGS)
	$(CMAKE) --build $(ASAN_DIR) -j$(JOBS)
	ASAN_OPTIONS="$${ASAN_OPTIONS:-$(ASAN_OPTIONS_DEFAULT)}" \
	UBSAN_OPTIONS="$${UBSAN_OPTIONS:-$(UBSAN_OPTIONS_DEFAULT)}" OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive \
	  $(CTEST) --test-dir $(ASAN_DIR) --output-on-failure -j$(JOBS) -E '$(ASAN_EXCLUDE)'

FUZZ_DIR     ?= build-fuzz
FUZZ_CXX     ?= clang++
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= llama2c_checkpoint llama2c_tokenizer safetensors huggingface hf_tokenizer gguf
# Giant allocations, runaway memory and hangs are findings, not just slowness. max_len
# covers the largest real seed (2.6 MB): libFuzzer would otherwise cut seeds at 1 MB.
FUZZ_FLAGS   ?= -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -max_len=3000000
FUZZ_DEB_PACKAGES := clang libclang-rt-dev
FUZZ_SPLIT := \n\#@depass-fuzz-next-file@\#\n

# libFuzzer ships with clang's compiler-rt (Debian: libclang-rt-dev); installed as root
# when `clang++ -fsanitize=fuzzer` cannot link, like `make deps` does.
fuzz-deps:
	@probe=$$(mktemp -d); \
	printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' > $$probe/p.cpp; \
	if ! $(FUZZ_CXX) -fsanitize=fuzzer,address,undefined $$probe/p.cpp -o $$probe/p >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "fuzz-deps: $(FUZZ_CXX) -fsanitize=fuzzer does not link; installing $(FUZZ_DEB_PACKAGES)"; \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(FUZZ_DEB_PACKAGES) || { rm -rf $$probe; exit 1; }; \
	  else \
	    echo "fuzz-deps: $(FUZZ_CXX) -fsanitize=fuzzer does not link; run: sudo apt-get install -y $(FUZZ_DEB_PACKAGES)"; \
	    rm -rf $$probe; exit 1; \
	  fi; \
	fi; \
	rm -rf $$probe

fuzz-build: deps fuzz-deps
	$(CMAKE) -S . -B $(FUZZ_DIR) -DCMAKE_CXX_COMPILER=$(FUZZ_CXX) -DCMAKE_BUILD_TYPE=Debug \
	  "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g" -DDEPASS_BUILD_FUZZERS=ON -DDEPASS_BUILD_TESTS=OFF \
	  -DDEPASS_BUILD_EXAMPLES=OFF -DDEPASS_BUILD_BENCHMARKS=OFF -DDEPASS_BUILD_PYTHON=OFF -DDEPASS_INSTALL=OFF
	$(CMAKE) --build $(FUZZ_DIR) -j$(JOBS)

# Seed corpora: the committed synthetic seeds (tests/fuzz/seeds/) plus the real model files
# from the model directory ($$DEPASS_MODEL_MIRROR, else models/, else ../shared/models).
# Nothing from the mirror is committed; libFuzzer adds what it finds to these directories.
fuzz-corpus:
	@set -e; \
	mirror=""; \
	for d in "$${DEPASS_MODEL_MIRROR:-}" models ../shared/models; do \
	  if [ -n "$$d" ] && [ -f "$$d/stories260K/tok512.bin" ]; then mirror="$$d"; break; fi; \
	done; \
	c=$(FUZZ_DIR)/corpus; \
	for t in $(FUZZ_TARGETS); do mkdir -p $$c/$$t; cp tests/fuzz/seeds/$$t/* $$c/$$t/ 2>/dev/null || true; done; \
	if [ -z "$$mirror" ]; then echo "fuzz-corpus: no model directory found; synthetic seeds only"; exit 0; fi; \
	echo "fuzz-corpus: real seeds from $$mirror"; \
	s=$$mirror/stories260K; h=$$mirror/tinystories-656k; \
	cp $$s/stories260K.bin $$c/llama2c_checkpoint/real_stories260K.bin; \
	cp $$s/tok512.bin $$c/llama2c_tokenizer/real_tok512.bin; \
	cp $$h/model.safetensors $$c/safetensors/real_tinystories656k.safetensors; \
	{ cat $$h/config.json; printf '$(FUZZ_SPLIT)'; cat $$h/model.safetensors; } > $$c/huggingface/real_tinystories656k; \
	cp $$h/tokenizer.json $$c/hf_tokenizer/real_tinystories656k; \
	{ cat $$h/tokenizer.json; printf '$(FUZZ_SPLIT)'; cat $$h/tokenizer_config.json; } > $$c/hf_tokenizer/real_tinystories656k_with_config; \
	cp $$s/stories260K.gguf $$c/gguf/real_stories260K.gguf

fuzz-run-%: fuzz-build fuzz-corpus
	@mkdir -p $(FUZZ_DIR)/artifacts/$* $(FUZZ_DIR)/logs
	@echo "fuzz: $* for $(FUZZ_SECONDS)s (log: $(FUZZ_DIR)/logs/$*.log)"
	@$(FUZZ_DIR)/fuzz/fuzz_$* $(FUZZ_DIR)/corpus/$* -max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) \
	  $$(test -f tests/fuzz/dicts/$*.dict && echo -dict=tests/fuzz/dicts/$*.dict) \
	  -artifact_prefix=$(FUZZ_DIR)/artifacts/$*/ -print_final_stats=1 > $(FUZZ_DIR)/logs/$*.log 2>&1 \
	  || { tail -n 60 $(FUZZ_DIR)/logs/$*.log; echo "fuzz: $* FAILED: input saved in $(FUZZ_DIR)/artifacts/$*/"; exit 1; }
	@grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' $(FUZZ_DIR)/logs/$*.log | sed 's/^/fuzz: $*: /'

fuzz: $(addprefix fuzz-run-,$(FUZZ_TARGETS))
