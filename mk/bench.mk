# ---------------------------------------------------------------- benchmarks (not tests)
bench: bench-infer bench-vocab bench-distill bench-eval

# Beside bench-infer and bench-distill, the roofline (tests/bench/roofline.py): the matmul
# rate at the model's shapes, ours (gemm_rate) and PyTorch's BLAS, in the same run.
GEMM_RATE := target/release/examples/gemm_rate
gemm-rate:
	$(CARGO) build --release --quiet --example gemm_rate
bench-infer: build gemm-rate $(PYREF)/.installed $(RUN)/tok/smollm2-135m/public.parquet
	$(PYREF)/bin/python tests/bench/bench_infer.py $(RUN)/models/smollm2-135m $(RUN)/tok/smollm2-135m/public.parquet \
	  $(BIN)/infer-logits --samples 256 --threads 2 --gemm-rate $(GEMM_RATE)
bench-vocab: $(RUN)/models/gemma3-270m/config.json $(RUN)/models/smollm2-135m/config.json
	cargo run --release --quiet --example bench_vocab -- $(patsubst %/config.json,%/tokenizer.json,$^) 300

# KD teachers for bench-distill: the public set's knowledge of Gemma-3 (262k vocabulary) and
# of SmolLM2 itself (49k), both aligned into SmolLM2's tokens.
BENCH := $(RUN)/bench
$(BENCH)/%.knowledge.parquet: $(RUN)/tok/%/public.parquet | build
	@mkdir -p $(BENCH)
	$(BIN)/infer-logits $(DEVICE_FLAGS) --model $(RUN)/models/$* --input $< --top-k 16 --out $@
$(BENCH)/%_to_smollm2-135m.parquet: $(RUN)/models/%/config.json $(RUN)/models/smollm2-135m/config.json | build
	@mkdir -p $(BENCH)
	$(BIN)/vocab-map --from $(RUN)/models/$*/tokenizer.json --to $(RUN)/models/smollm2-135m/tokenizer.json --out $@
$(BENCH)/aligned-%.parquet: $(BENCH)/%.knowledge.parquet $(BENCH)/%_to_smollm2-135m.parquet $(RUN)/tok/smollm2-135m/public.parquet
	$(BIN)/align --sender-tokens $(RUN)/tok/$*/public.parquet --knowledge $< --receiver-tokens $(RUN)/tok/smollm2-135m/public.parquet \
	  --map $(BENCH)/$*_to_smollm2-135m.parquet --sender-tokenizer $(RUN)/models/$*/tokenizer.json \
	  --receiver-tokenizer $(RUN)/models/smollm2-135m/tokenizer.json --out $@

bench-distill: build gemm-rate $(PYREF)/.installed $(BENCH)/aligned-gemma3-270m.parquet $(BENCH)/aligned-smollm2-135m.parquet
	$(PYREF)/bin/python tests/bench/bench_distill.py $(RUN)/models/smollm2-135m $(RUN)/tok/smollm2-135m/public.parquet \
	  $(BIN)/distill $(BENCH)/aligned-gemma3-270m.parquet $(BENCH)/aligned-smollm2-135m.parquet --samples 48 --threads 2 \
	  --gemm-rate $(GEMM_RATE)

# `evaluate` now beside `evaluate` built from BENCH_EVAL_BASE (by default the commit before
# contexts were shared between choices; any other, e.g. the last before an optimisation, with
# BENCH_EVAL_BASE=<commit>; built once, from `git archive`, in its own target folder) and beside
# transformers' forward per choice, on the task's whole validation split (BENCH_EVAL_MODELS).
BENCH_EVAL_BASE    ?= 66a6998
BENCH_EVAL_SAMPLES ?= 570
BENCH_EVAL_MODELS  ?= smollm2-135m gemma3-270m
BENCH_EVAL_BIN     := $(BENCH)/evaluate-$(BENCH_EVAL_BASE)
$(BENCH_EVAL_BIN)/evaluate:
	mkdir -p $(@D)/src && git archive $(BENCH_EVAL_BASE) | tar -x -C $(@D)/src
	$(CARGO) build --release --quiet -p evaluate --manifest-path $(@D)/src/Cargo.toml --target-dir $(@D)/target
	cp $(@D)/target/release/evaluate $@
$(BENCH)/validation/eval.parquet: $(DATA_DEP) | $(BIN)/prepare-data
	$(BIN)/prepare-data --task $(TASK) --source $(DATA_SOURCE) --clients 1 --eval-split validation --seed $(SEED) --out $(@D)

bench-eval: build gemm-rate $(PYREF)/.installed $(BENCH_EVAL_BIN)/evaluate $(BENCH)/validation/eval.parquet \
            $(RUN)/models/smollm2-135m/config.json $(RUN)/models/gemma3-270m/config.json
	for m in $(BENCH_EVAL_MODELS); do $(PYREF)/bin/python tests/bench/bench_eval.py $(RUN)/models/$$m \
	  $(BENCH)/validation/eval.parquet $(BIN)/evaluate $(BENCH_EVAL_BIN)/evaluate --samples $(BENCH_EVAL_SAMPLES) --threads 2 \
	  --baseline-label "evaluate at $(BENCH_EVAL_BASE)" --gemm-rate $(GEMM_RATE); done

clean:
	rm -rf $(RUN)
