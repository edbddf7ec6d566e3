# Thin convenience wrapper around CMake. Real build logic lives in CMakeLists.txt.
#   make deps    check (and, as root, install) the Debian packages the build needs
#   make models  fetch the demo/test models into models/ (see tools/fetch_models.sh)
#   make build   configure build/ (Release) and build everything
#   make test    deps + models + build, then run the test suite
#   make demo    generate a story with the depass CLI
#   make clean   remove build/

BUILD_DIR  ?= build
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE      ?= cmake
CTEST      ?= ctest
CMAKE_ARGS ?=
DEB_PACKAGES := libeigen3-dev catch2 nlohmann-json3-dev cmake g++ make

.PHONY: all deps models build test demo clean

all: build

deps:
	@if ! command -v dpkg >/dev/null 2>&1; then \
	  echo "deps: dpkg not found; make sure Eigen >= 3.4, Catch2 v2, nlohmann_json, CMake >= 3.21 and a C++17 compiler are installed"; \
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

test: deps models build
	$(CTEST) --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS)

demo: deps models build
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
