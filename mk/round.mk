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

