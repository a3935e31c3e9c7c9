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
$(if $(filter $(RUN),$(ZERO_SHOT_RUN)),$(foreach m,$(MODELS),$(eval $(call ZERO_SHOT,$(m)): $(EVAL_DATA) $(RUN)/models/$(m)/config.json | $(EVALUATE_PROGRAM) ; \
  $(EVALUATE_CMD) $(DEVICE_FLAGS) --model $(RUN)/models/$(m) --data $(EVAL_DATA) --out $$@)))
# Files another make made before this one started: a sibling's parent's (SIBLING_DEPS), a
# seed's zero-shot run's. An empty recipe for them lets `make -n`, where they are not made, go
# on past them.
MADE_ELSEWHERE := $(sort $(filter-out $(RUN),$(FIRST_PRIVATE_RUN) $(ZERO_SHOT_RUN) $(TEACHER_RUN)))
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

$(STANDALONE)/eval/$(1).json: $(call STANDALONE_ADAPTER,$(1))/adapter_config.json $(EVAL_DATA) | $(EVALUATE_PROGRAM)
	$(call EVALUATE_PARTY,$(1),$$(<D)) $$@
endef
$(foreach c,$(CLIENTS),$(eval $(call standalone_rules,$(c))))

CENTRAL_DATA := $(call PUBLIC,server) $(foreach c,$(CLIENTS),$(RUN)/tok/$(SERVER)/$(c).parquet)
$(CENTRALIZED)/server/adapter_config.json: $(CENTRAL_DATA) | $(DISTILL_PROGRAM)
	$(DISTILL_CMD) $(DEVICE_FLAGS) --model $(call M,server) $(addprefix --data ,$^) --epochs $(STANDALONE_EPOCHS) --lr $(SERVER_LR) $(TRAIN_FLAGS) --out $(@D)
$(CENTRALIZED)/eval/server.json: $(CENTRALIZED)/server/adapter_config.json $(EVAL_DATA) | $(EVALUATE_PROGRAM)
	$(call EVALUATE_PARTY,server,$(<D)) $@

# Its first round's client adapters are round 1's private phase.
FEDAVG = $(B)/fedavg/round-$(1)
FEDAVG_START  = $(if $(filter 1,$(1)),,$(call FEDAVG,$(call PREV,$(1)))/average)
FEDAVG_CLIENT = $(if $(filter 1,$(1)),$(call FIRST_PRIVATE,$(2)),$(call FEDAVG,$(1))/$(2))
define fedavg_rules
$(call FEDAVG,$(1))/average/adapter_config.json: $(foreach c,$(CLIENTS),$(call FEDAVG_CLIENT,$(1),$(c))/adapter_config.json) | $(AGGREGATE_PROGRAM)
	$(AGGREGATE_CMD) average --adapters $$(^D) --out $$(@D)

$(call FEDAVG,$(1))/eval/average.json: $(call FEDAVG,$(1))/average/adapter_config.json $(EVAL_DATA) | $(EVALUATE_PROGRAM)
	$(call EVALUATE_PARTY,client-1,$$(<D)) $$@
endef
# $(1) round: the average and its evaluation, and after round 1 each client's training from
# the round before's average.
define fedavg_round
$(call fedavg_rules,$(1))
$(if $(filter 1,$(1)),,$(foreach c,$(CLIENTS),
$(call shard_rule,$(call FEDAVG,$(1))/$(c),$(c),$(call FEDAVG_START,$(1)),$(PRIVATE_EPOCHS))
))
endef
$(foreach n,$(ROUNDS),$(eval $(call fedavg_round,$(n))))

# The ablation FedMKT without KD: the same rounds, data and schedule with λ = 1, so the
# knowledge sets still travel but no KD term trains: what knowledge transfer itself adds.
NOKD_RUN   := $(RUNS)/$(NAME)-nokd
NOKD_EVALS := $(foreach n,$(ROUNDS),$(foreach p,$(PARTIES),$(NOKD_RUN)/round-$(n)/eval/$(p).json))
# FedMKT's ablation is a method of its own; FedCoLLM's keeps its rules under another name.
NOKD_VARS  := $(if $(filter FedCoLLM,$(METHOD)),METHOD_NAME=FedCoLLM-noKD,METHOD=FedMKT-noKD)
SIBLING_DEPS := $(strip $(foreach c,$(CLIENTS),$(call FIRST_PRIVATE,$(c))/adapter_config.json $(if $(filter FedCoLLM,$(METHOD)),,$(call R,1)/$(c)/knowledge.parquet)) \
                $(call R,1)/server/local.parquet $(call ADAPTER_DEP,$(TEACHER_ADAPTER)) \
                $(if $(TEACHER_SHARDS),$(foreach n,$(ROUNDS),$(TEACHER_RUN)/round-$(n)/eval/server.json)))
SIBLING      := $(strip PIPELINE=$(PIPELINE) ROUND=$(ROUND) RUNS=$(RUNS) FIRST_PRIVATE_RUN=$(FIRST_PRIVATE_RUN) \
                $(if $(TEACHER_SHARDS),TEACHER_RUN=$(TEACHER_RUN)))
$(NOKD_EVALS) &: $(SIBLING_DEPS) FORCE
	$(MAKE) --no-print-directory $(NOKD_EVALS) $(SIBLING) NAME=$(NAME)-nokd $(NOKD_VARS) LAMBDA=1

# Its LLM is frozen: the server's row is Zero-Shot's evaluation, not evaluated again.
LLM2SLM_RUN   := $(RUNS)/$(NAME)-llm2slm
LLM2SLM_EVALS := $(foreach n,$(ROUNDS),$(foreach p,$(CLIENTS),$(LLM2SLM_RUN)/round-$(n)/eval/$(p).json) $(LLM2SLM_RUN)/round-$(n)/comms.parquet)
$(LLM2SLM_EVALS) &: $(SIBLING_DEPS) FORCE
	$(MAKE) --no-print-directory $(LLM2SLM_EVALS) $(SIBLING) NAME=$(NAME)-llm2slm METHOD=LLM2SLM SERVER_LEARNS=no

endif

