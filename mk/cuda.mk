# ---------------------------------------------------------------- CUDA: make build-cuda, make check-cuda
# The CUDA 13.0 toolkit from PyPI's wheels (Debian has 11.8 only; the GPU machines' driver
# takes CUDA 13.0 PTX and rejects newer nvcc's), into a git-ignored folder: unversioned .so
# links beside the wheels' versioned libraries, and a stub libcuda.so (the driver's library,
# which no wheel has) to link against, with the real one's soname. The model tools are built
# with the cuda feature in target/, the whole workspace selected as in `make build`: its
# dependencies' features are then the CPU build's, and every one the cuda feature does not
# touch (parquet, arrow, tokenizers, syn, ...) is reused, not compiled a second time (built
# with -p for the three tools alone, cargo unifies features anew and recompiles ~85 crates).
# Cargo keeps both builds of a tool under target/release/deps and copies the one built last to
# target/release. The CUDA model tools are copied into target/cuda/release with the CPU build's
# other tools, then the CPU build is put back into target/release, also when the CUDA build fails (a
# CUDA binary does not start without the CUDA libraries, not even for --help). The pack holds
# target/cuda/release, stripped, for a GPU machine (unpack into the checkout's target/cuda/release).
CUDA_ENV    := $(ASSETS)/cuda
CUDA_HOME_DIR = $(abspath $(CUDA_ENV))/nvidia/cu13
CUDA_WHEELS := nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-runtime==13.0.96 \
               nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
CUDA_COMPUTE_CAP ?= 90
CUDA_MODEL_TOOLS := infer-logits evaluate distill measure-kd
CUDA_PACK   := $(CUDA_TARGET)/fedmkt-cuda.tar.xz

$(CUDA_ENV)/.installed:
	$(PIP) $(CUDA_ENV) $(CUDA_WHEELS)
	cd $(CUDA_HOME_DIR)/lib && for f in lib*.so.*; do ln -sfn $$f $${f%%.so.*}.so; done
	mkdir -p $(CUDA_HOME_DIR)/lib/stubs
	$(PYTHON) tools/cuda/stub_libcuda.py $(CUDA_HOME_DIR)/include $(CUDA_HOME_DIR)/lib/stubs/libcuda.c
	gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o $(CUDA_HOME_DIR)/lib/stubs/libcuda.so $(CUDA_HOME_DIR)/lib/stubs/libcuda.c
	touch $@

build-cuda: build $(CUDA_ENV)/.installed
	mkdir -p $(CUDA_TARGET)/release
	PATH=$(CUDA_HOME_DIR)/bin:$$PATH CUDA_HOME=$(CUDA_HOME_DIR) CUDA_COMPUTE_CAP=$(CUDA_COMPUTE_CAP) CUDAFORGE_THREADS=$$(nproc) \
	  $(CARGO) build --release --workspace --bins --features $(subst $(eval) ,$(comma),$(foreach t,$(CUDA_MODEL_TOOLS),$(t)/cuda)) \
	  && cp $(addprefix target/release/,$(CUDA_MODEL_TOOLS)) $(CUDA_TARGET)/release/; \
	  built=$$?; $(CARGO) build --release --workspace --bins && exit $$built
	cp $(addprefix target/release/,$(filter-out $(CUDA_MODEL_TOOLS),$(TOOLS))) $(CUDA_TARGET)/release/
	rm -rf $(CUDA_TARGET)/pack && mkdir -p $(CUDA_TARGET)/pack
	for t in $(TOOLS); do strip -o $(CUDA_TARGET)/pack/$$t $(CUDA_TARGET)/release/$$t; done
	tar -C $(CUDA_TARGET)/pack -cJf $(CUDA_PACK).tmp . && mv $(CUDA_PACK).tmp $(CUDA_PACK)
	@ls -l $(CUDA_TARGET)/pack; ls -l $(CUDA_PACK)

# On a GPU machine (PyTorch, transformers, peft there; no Rust): carry the pack and the bundle
# (the real tokenizers, each with the default run's public set, for the throughput figures)
# into a checkout, then `make check-cuda`; figures go to $(RUNS)/check-cuda/check-cuda.json.
CUDA_BUNDLE := $(CUDA_TARGET)/check-bundle.tar.xz
CUDA_BUNDLE_FILES = $(foreach m,smollm2-135m gemma3-270m,$(RUN)/models/$(m)/config.json $(RUN)/tok/$(m)/public.parquet)
cuda-bundle: $(CUDA_BUNDLE_FILES)
	rm -rf $(CUDA_TARGET)/bundle && mkdir -p $(CUDA_TARGET)/bundle/smollm2 $(CUDA_TARGET)/bundle/gemma3
	for m in smollm2 gemma3; do cp $(RUN)/models/$$m-*/tokenizer.json $(RUN)/tok/$$m-*/public.parquet $(CUDA_TARGET)/bundle/$$m/; done
	tar -C $(CUDA_TARGET)/bundle -cJf $(CUDA_BUNDLE).tmp . && mv $(CUDA_BUNDLE).tmp $(CUDA_BUNDLE)

check-cuda:
	mkdir -p $(CUDA_TARGET)/release $(CUDA_TARGET)/bundle
	tar -C $(CUDA_TARGET)/release -xJf $(CUDA_PACK)
	$(if $(wildcard $(CUDA_BUNDLE)),tar -C $(CUDA_TARGET)/bundle -xJf $(CUDA_BUNDLE))
	$(PYTHON) tools/cuda/check_cuda.py $(CUDA_TARGET)/release $(RUNS)/check-cuda $(if $(wildcard $(CUDA_BUNDLE)),$(CUDA_TARGET)/bundle)

