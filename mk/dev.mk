# ---------------------------------------------------------------- build and test
build:
	$(CARGO) build --release --workspace --bins

# DEVICE=cuda runs the CUDA build's tools as they are (make build-cuda, or its pack unpacked
# on a GPU machine without Rust); a missing one is named, not built.
ifeq ($(DEVICE),cuda)
$(addprefix $(BIN)/,$(TOOLS)):
	@echo "$@: not there; make build-cuda, or unpack its pack into $(BIN)" >&2; exit 2
else
$(addprefix $(BIN)/,$(TOOLS)): build
endif

# The Flower and stage environments first: two tests would otherwise both install one.
# cargo-nextest, where it is installed, runs the tests of every binary side by side, twice as
# many at a time as there are cores: the slowest (Flower federations) mostly wait on their
# processes. Without it, cargo test (the workspace has no doc tests for nextest to miss).
NEXTEST = $(shell cargo nextest --version >/dev/null 2>&1 && echo yes)
test: build $(FLOWER_ENV)/.installed $(STAGE_ENV)/.installed
	$(if $(NEXTEST),$(CARGO) nextest run --release --workspace --test-threads $$(( 2 * $$(nproc) )),$(CARGO) test --release --workspace)


# ---------------------------------------------------------------- test data (run by hand)
testdata-fixtures: $(ASSETS)/olmo/.installed
	$(PYTHON) testdata/reference/cut_task_fixtures.py $(ASSETS)/olmo

# Tiny models of the families without a tiny GGUF, written by transformers (tiny_families.py).
TINY_FAMILIES := tiny-mistral tiny-qwen2 tiny-qwen3 tiny-gpt2 tiny-opt tiny-opt-350m tiny-bloom
# What our adapters of them adapt: the modules of golden_models.py's PEFT adapters, in each
# family's names (an attention projection of each kind and an MLP one).
OURS_TARGETS           = $(or $(OURS_TARGETS_$(1)),$(OURS_TARGETS_llama))
OURS_TARGETS_llama     := q_proj,v_proj,down_proj
OURS_TARGETS_tiny-gpt2 := c_attn,c_proj,c_fc
OURS_TARGETS_tiny-opt  := q_proj,v_proj,out_proj,fc2
OURS_TARGETS_tiny-opt-350m := $(OURS_TARGETS_tiny-opt)
OURS_TARGETS_tiny-bloom := query_key_value,dense,dense_4h_to_h
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
	$(PYTHON) testdata/reference/golden_select.py
	$(PYTHON) testdata/reference/golden_align.py
	$(PYTHON) testdata/reference/golden_aggregate.py
	$(PYTHON) testdata/reference/golden_report.py
	$(PYREF)/bin/python testdata/reference/tiny_families.py
	$(PYREF)/bin/python testdata/reference/tiny_ggufs.py
	$(PYREF)/bin/python testdata/reference/golden_models.py
	$(foreach m,tiny-llama tiny-gemma3 $(TINY_FAMILIES),$(BIN)/distill --model testdata/models/$(m) \
	  --data testdata/data/tokens/$(if $(filter tiny-gemma3,$(m)),$(m),tiny-llama)/arc-easy-eval.parquet --epochs 1 \
	  --lr 1e-2 --lora-r 4 --lora-alpha 8 --lora-targets $(call OURS_TARGETS,$(m)) --out testdata/models/$(m)-ours 2>/dev/null \
	  && rm testdata/models/$(m)-ours/training_log.parquet;)
	$(PYREF)/bin/python testdata/reference/golden_models.py --ours
	$(PYREF)/bin/python testdata/reference/golden_infer_logits.py
	$(PYREF)/bin/python testdata/reference/golden_evaluate.py
	$(PYREF)/bin/python testdata/reference/golden_distill.py

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

