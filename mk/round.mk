# ---------------------------------------------------------------- a FedMKT round (the paper's Algorithm 1)
# Round n, party P: files under $(RUN)/round-n/P/. A client's model is its word of CLIENT_MODELS.
# Round n+1 starts from round n's adapters; the server's own losses in round n+1 are its
# knowledge set of round n (same model, adapter and public set: no need to infer twice).
CLIENTS  := $(addprefix client-,$(shell seq 1 $(N_CLIENTS)))
ROUNDS   := $(shell seq 1 $(ROUND))
# The round before round $(1) (0 before the first).
PREV      = $(words $(wordlist 2,$(1),$(ROUNDS)))
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
  --receiver-tokenizer $(call M,$(2))/tokenizer.json --strategy $(ALIGN_STRATEGY) --sender $(1)
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
# The server's adapter in round $(1): its own if it learns, else a frozen teacher's (TEACHER_SHARDS).
SERVER_ADAPTER = $(if $(filter yes,$(SERVER_LEARNS)),$(call R,$(1))/server/adapter,$(TEACHER_ADAPTER))
TEACHER_RUN    ?= $(RUN)
TEACHER_ADAPTER = $(if $(filter-out 0,$(TEACHER_SHARDS)),$(TEACHER_RUN)/teacher/shards-$(TEACHER_SHARDS))
# Non-empty when a frozen teacher's run is another one: its evaluation is copied from there.
TEACHER_ELSEWHERE = $(and $(TEACHER_SHARDS),$(filter-out $(RUN),$(TEACHER_RUN)))
SERVER_LOCAL   = $(if $(filter 1,$(1)),$(call R,1)/server/local.parquet,$(call R,$(call PREV,$(1)))/server/knowledge.parquet)

# ClientUpdate1 (Algorithm 1, lines 22–29): each client fine-tunes its adapter on its private
# shard, then computes its knowledge S_k of the public set and uploads it.
#
# Client $(2) trains on its private shard into adapter folder $(1), from adapter $(3) (none:
# a fresh one), for $(4) epochs: the private phase of a round, Standalone and FedAvg.
# The private phase of round 1 (a fresh adapter, PRIVATE_EPOCHS on the shard) is the same
# training in every method that starts from it, so it is trained once: FedAvg's first round
# and a one-round Standalone use it, and a sibling pipeline (FedMKT-noKD, LLM2SLM) takes its
# parent's (FIRST_PRIVATE_RUN) instead of training the same adapter again.
define shard_rule
$(1)/adapter_config.json: $(RUN)/tok/$(call MODEL_OF,$(2))/$(2).parquet $(call ADAPTER_DEP,$(3)) | $(DISTILL_PROGRAM)
	$(DISTILL_CMD) $(DEVICE_FLAGS) --model $(call M,$(2)) $(call ADAPTER_FLAG,$(3)) --data $$< \
	  --epochs $(4) --lr $(CLIENT_LR) $(TRAIN_FLAGS) --out $$(@D)
endef

FIRST_PRIVATE_RUN ?= $(RUN)
FIRST_PRIVATE      = $(FIRST_PRIVATE_RUN)/round-1/$(1)/private
PRIVATE            = $(if $(filter 1,$(1)),$(call FIRST_PRIVATE,$(2)),$(call R,$(1))/$(2)/private)
# The private phases this run trains itself, as "round:client" (round 1's only without a parent).
OWN_PRIVATE        = $(foreach n,$(if $(filter $(RUN),$(FIRST_PRIVATE_RUN)),$(ROUNDS),$(wordlist 2,$(words $(ROUNDS)),$(ROUNDS))),$(addprefix $(n):,$(CLIENTS)))
# The private phase of client $(2) in round $(1), where this run trains it, from adapter $(3).
PRIVATE_PHASE      = $(if $(filter $(1):$(2),$(OWN_PRIVATE)),$(call shard_rule,$(call R,$(1))/$(2)/private,$(2),$(3),$(PRIVATE_EPOCHS)))
# Round 1's knowledge sets and the LLM's own losses come from the private adapters and the
# base models alone, which a sibling shares with its parent. Non-empty when round $(1) is
# such a round of a sibling:
SHARED_FROM_PARENT = $(and $(filter 1,$(1)),$(filter-out $(RUN),$(FIRST_PRIVATE_RUN)))
# The file $(2) (a path under the run) copied from run $(1)'s, not made again: a sibling's
# from its parent's, a frozen teacher's evaluation from the run that trained it.
define copied_from
$(RUN)/$(2): $(1)/$(2)
	mkdir -p $$(@D) && cp $$< $$@.tmp && mv $$@.tmp $$@
endef

# An evaluation $(2) (its summary .json and predictions .parquet) copied from run $(1)'s.
define copied_evaluation
$(RUN)/$(2).json $(RUN)/$(2).parquet &: $(1)/$(2).json $(1)/$(2).parquet
	mkdir -p $$(@D) && cp $(1)/$(2).parquet $(RUN)/$(2).parquet.tmp && cp $(1)/$(2).json $(RUN)/$(2).json.tmp \
	  && mv $(RUN)/$(2).parquet.tmp $(RUN)/$(2).parquet && mv $(RUN)/$(2).json.tmp $(RUN)/$(2).json
endef

# `evaluate` of party $(1)'s model with adapter folder $(2) (none: the model as it comes).
EVALUATE_PARTY = $(EVALUATE_CMD) $(DEVICE_FLAGS) --model $(call M,$(1)) $(call ADAPTER_FLAG,$(2)) --data $(EVAL_DATA) --out

define client_knowledge_rule
$(call R,$(1))/$(2)/knowledge.parquet: $(call PRIVATE,$(1),$(2))/adapter_config.json $(call PUBLIC,$(2)) | $(INFER_LOGITS_PROGRAM)
	$(INFER_LOGITS_CMD) $(DEVICE_FLAGS) --model $(call M,$(2)) --adapter $$(<D) --input $(call PUBLIC,$(2)) $(KNOWLEDGE_FLAGS) --out $$@
endef

# $(1) round, $(2) client (each rule's text on lines of its own: foreach joins with spaces).
define client_update1

$(call PRIVATE_PHASE,$(1),$(2),$(call START,$(1),$(2)))
$(if $(call SHARED_FROM_PARENT,$(1)),$(call copied_from,$(FIRST_PRIVATE_RUN),round-1/$(2)/knowledge.parquet),$(call client_knowledge_rule,$(1),$(2)))

endef

# The server (lines 9–17): aligns what each client sent into its vocabulary, chooses per
# sample between its own and the clients' knowledge by DualMinCE, distils into the LLM's
# adapter (R epochs), then computes its own knowledge S_0 of the public set. Its own losses
# come in round 1 from the LLM before it learns anything, later from the round before's S_0
# (same model, adapter and public set). Then its evaluation (without an adapter if it does
# not learn).
define llm_local_rule
$(call R,1)/server/local.parquet: $(call PUBLIC,server) | $(INFER_LOGITS_PROGRAM)
	$(INFER_LOGITS_CMD) $(DEVICE_FLAGS) --model $(call M,server) --input $$< $(KNOWLEDGE_FLAGS) --out $$@
endef

# $(1) round: the LLM's steps, FedCoLLM's too.
define llm_rules
$(if $(filter 1,$(1)),$(if $(call SHARED_FROM_PARENT,1),$(call copied_from,$(FIRST_PRIVATE_RUN),round-1/server/local.parquet),$(call llm_local_rule)))

$(call R,$(1))/server/adapter/adapter_config.json: $(call R,$(1))/server/selected.parquet $(call ADAPTER_DEP,$(call START,$(1),server)) | $(DISTILL_PROGRAM)
	$(DISTILL_CMD) $(DEVICE_FLAGS) --model $(call M,server) $(call ADAPTER_FLAG,$(call START,$(1),server)) --data $(call PUBLIC,server) --teacher $$< \
	  --lambda $(KD_LAMBDA) $(KD_FLAGS) --epochs $(DISTILL_EPOCHS) --lr $(SERVER_LR) $(TRAIN_FLAGS) --out $$(@D)

$(call R,$(1))/server/knowledge.parquet: $(call ADAPTER_DEP,$(call SERVER_ADAPTER,$(1))) $(call PUBLIC,server) | $(INFER_LOGITS_PROGRAM)
	$(INFER_LOGITS_CMD) $(DEVICE_FLAGS) --model $(call M,server) $(call ADAPTER_FLAG,$(call SERVER_ADAPTER,$(1))) --input $(call PUBLIC,server) $(KNOWLEDGE_FLAGS) --out $$@

$(if $(TEACHER_ELSEWHERE),$(call copied_evaluation,$(TEACHER_RUN),round-$(1)/eval/server),$(call llm_eval_rule,$(1)))
endef

define llm_eval_rule
$(call R,$(1))/eval/server.json: $(call ADAPTER_DEP,$(call SERVER_ADAPTER,$(1))) $(call M,server)/config.json $(EVAL_DATA) | $(EVALUATE_PROGRAM)
	$(call EVALUATE_PARTY,server,$(call SERVER_ADAPTER,$(1))) $$@
endef

# $(1) round, $(2) client: what it sent, in the server's vocabulary.
define server_alignment_rule

$(call R,$(1))/server/from-$(2).parquet: $(call R,$(1))/$(2)/knowledge.parquet $(call MAP,$(call MODEL_OF,$(2)),$(SERVER)) $(call ALIGN_DEPS,$(2),server) | $(ALIGN_PROGRAM)
	$(ALIGN_CMD) --knowledge $$< $(call ALIGN_FLAGS,$(2),server) --out $$@

endef

# $(1) round.
define server_update
$(foreach c,$(CLIENTS),$(call server_alignment_rule,$(1),$(c)))

$(call R,$(1))/server/selected.parquet: $(call SERVER_LOCAL,$(1)) $(foreach c,$(call PRESENT,$(1),$(CLIENTS)),$(call R,$(1))/server/from-$(c).parquet) | $(SELECT_PROGRAM)
	$(SELECT_CMD) $(SELECT_FLAGS) --local $$< --candidates $$(wordlist 2,$$(words $$^),$$^) --out $$@
$(call llm_rules,$(1))
endef

# ClientUpdate2 (lines 31–39): each client aligns the server's S_0 into its vocabulary,
# chooses per sample by DualMinCE, distils into its adapter (E more epochs), and is evaluated.
# $(1) round, $(2) client.
define client_update2

$(call R,$(1))/$(2)/from-server.parquet: $(call R,$(1))/server/knowledge.parquet $(call MAP,$(SERVER),$(call MODEL_OF,$(2))) $(call ALIGN_DEPS,server,$(2)) | $(ALIGN_PROGRAM)
	$(ALIGN_CMD) --knowledge $$< $(call ALIGN_FLAGS,server,$(2)) --out $$@

$(call R,$(1))/$(2)/selected.parquet: $(call R,$(1))/$(2)/knowledge.parquet $(call R,$(1))/$(2)/from-server.parquet | $(SELECT_PROGRAM)
	$(SELECT_CMD) $(SELECT_FLAGS) --local $$< --candidates $$(word 2,$$^) --out $$@

$(call R,$(1))/$(2)/adapter/adapter_config.json: $(call R,$(1))/$(2)/selected.parquet $(call PRIVATE,$(1),$(2))/adapter_config.json | $(DISTILL_PROGRAM)
	$(DISTILL_CMD) $(DEVICE_FLAGS) --model $(call M,$(2)) --adapter $(call PRIVATE,$(1),$(2)) --data $(call PUBLIC,$(2)) --teacher $$< \
	  --lambda $(KD_LAMBDA) $(KD_FLAGS) --epochs $(DISTILL_EPOCHS) --lr $(CLIENT_LR) $(TRAIN_FLAGS) --out $$(@D)

$(call R,$(1))/eval/$(2).json: $(call R,$(1))/$(2)/adapter/adapter_config.json $(EVAL_DATA) | $(EVALUATE_PROGRAM)
	$(call EVALUATE_PARTY,$(2),$$(<D)) $$@

endef

# What each client sent (its knowledge set; nothing when the server does not learn) and
# received (the server's knowledge set), beside its adapter's size and the paper's estimate.
# $(1) round.
define comms_rule
$(call R,$(1))/comms.parquet: $(foreach c,$(call PRESENT,$(1),$(CLIENTS)),$(call COMMS_ADAPTER_DEP,$(call R,$(1))/$(c)/adapter/adapter_config.json) $(call SENT_KNOWLEDGE,$(1),$(c))) $(call R,$(1))/server/knowledge.parquet | $(REPORT_PROGRAM)
	$(REPORT_CMD) comms --top-k $(TOP_K) --out $$@ --markdown $$(@D)/comms.md $(foreach c,$(call PRESENT,$(1),$(CLIENTS)),--entry \
	  $(1),$(c),$(or $(call SENT_KNOWLEDGE,$(1),$(c)),-),$(call R,$(1))/server/knowledge.parquet,$(call COMMS_ADAPTER,$(call R,$(1))/$(c)/adapter/adapter_model.safetensors),$(call PUBLIC,$(c)))
endef

# Round $(1) for the parties this make acts for (all of them unless PARTY is set).
define fedmkt_round
$(foreach c,$(call MINE,$(CLIENTS)),$(call client_update1,$(1),$(c)))
$(if $(call MINE,server),$(call server_update,$(1))
$(call comms_rule,$(1)))
$(foreach c,$(call MINE,$(CLIENTS)),$(call client_update2,$(1),$(c)))
endef

ifneq ($(METHOD),FedCoLLM)
PARTIES := server $(CLIENTS)
$(foreach n,$(ROUNDS),$(eval $(call fedmkt_round,$(n))))
endif
