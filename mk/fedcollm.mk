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

# What client $(2) sends in round $(1), and receives: its masked adapter and the protocol's
# messages (its public keys, its shares for the others, its signature, its reveal); the
# distilled SLM and what the server relays (the others' public keys and shares for it, the
# survivors), as report comms takes them: files joined by '+'.
COLLM_ID       = $(patsubst client-%,%,$(1))
COLLM_OTHERS   = $(filter-out $(call COLLM_ID,$(1)),$(CLIENT_IDS))
COLLM_SENT     = $(subst $(eval) ,+,$(call S,$(1))/masked/$(2).parquet $(call S,$(1))/$(2)/public.json \
                 $(foreach k,$(call COLLM_OTHERS,$(2)),$(call S,$(1))/shares/from-$(call COLLM_ID,$(2))/to-$(k).json) \
                 $(call S,$(1))/signatures/$(call COLLM_ID,$(2)).json $(call S,$(1))/reveal/$(call COLLM_ID,$(2)).json)
COLLM_RECEIVED = $(subst $(eval) ,+,$(call R,$(1))/server/slm-distilled/adapter_model.safetensors \
                 $(foreach k,$(call COLLM_OTHERS,$(2)),$(call S,$(1))/client-$(k)/public.json $(call S,$(1))/shares/from-$(k)/to-$(call COLLM_ID,$(2)).json) \
                 $(call S,$(1))/survivors.json)

# What FedMKT moves instead, for a client of the SLM's model: its knowledge set of the public
# set (the averaged SLM's, the same size) up, the LLM's down.
FEDMKT_INSTEAD = $(call R,$(1))/server/slm-knowledge.parquet,$(call R,$(1))/server/knowledge.parquet

# $(1) client, $(2) its number
define identity_rule
$(call ID,$(1))/verify-key.json: | $(AGGREGATE_PROGRAM)
	$(AGGREGATE_CMD) identity --party $(2) --out $$(@D)
endef

# $(1) round, $(2) client, $(3) its number: the client's steps of Figure 4 (Bonawitz et al.).
define fedcollm_client_rules
$(call S,$(1))/$(2)/public.json: $(call ID,$(2))/verify-key.json | $(AGGREGATE_PROGRAM)
	$(AGGREGATE_CMD) keygen --identity $(call ID,$(2)) --round $(1) --out $$(@D)

$(call S,$(1))/shares/from-$(3)/to-$(N_CLIENTS).json: $(call PUBLICS,$(1)) $(VERIFY_KEYS) | $(AGGREGATE_PROGRAM)
	$(AGGREGATE_CMD) share --keys $(call S,$(1))/$(2) --publics $(call PUBLICS,$(1)) --verify $(VERIFY_KEYS) \
	  $(if $(SECAGG_THRESHOLD),--threshold $(SECAGG_THRESHOLD)) --out $$(@D)

$(call S,$(1))/masked/$(2).parquet: $(call PRIVATE,$(1),$(2))/adapter_config.json $(if $(PARTY),$(call SHARES_TO,$(1),$(3)),$(call DEALT,$(1))) | $(AGGREGATE_PROGRAM)
	$(AGGREGATE_CMD) mask --keys $(call S,$(1))/$(2) --shares $(call SHARES_TO,$(1),$(3)) --adapter $$(<D) --out $$@

$(call S,$(1))/signatures/$(3).json: $(call S,$(1))/$(if $(PARTY),survivors.json,sum.parquet) | $(AGGREGATE_PROGRAM)
	$(AGGREGATE_CMD) confirm --keys $(call S,$(1))/$(2) --identity $(call ID,$(2)) --survivors $(call S,$(1))/survivors.json --out $$@

$(call S,$(1))/reveal/$(3).json: $(if $(PARTY),$(wildcard $(call S,$(1))/signatures/*.json),$(call SIGNATURES,$(1))) | $(AGGREGATE_PROGRAM)
	$(AGGREGATE_CMD) reveal --keys $(call S,$(1))/$(2) --survivors $(call S,$(1))/survivors.json --signatures $$^ \
	  --verify $(VERIFY_KEYS) --out $$@
endef

# $(1) round; the party `slm` is the averaged SLM, client-1's model (all clients hold the same one).
define fedcollm_server_rules
$(call S,$(1))/sum.parquet: $(foreach c,$(call PRESENT,$(1),$(CLIENTS)),$(call S,$(1))/masked/$(c).parquet) | $(AGGREGATE_PROGRAM)
	$(AGGREGATE_CMD) sum --masked $$^ --out $$@ --survivors $$(@D)/survivors.json

$(call R,$(1))/server/slm/adapter_config.json: $(call S,$(1))/sum.parquet $(foreach c,$(call PRESENT,$(1),$(CLIENTS)),$(call S,$(1))/reveal/$(patsubst client-%,%,$(c)).json) | $(AGGREGATE_PROGRAM)
	$(AGGREGATE_CMD) unmask --sum $$< --reveals $$(wordlist 2,$$(words $$^),$$^) --publics $(call PUBLICS,$(1)) --out $$(@D)

$(call R,$(1))/server/slm-knowledge.parquet: $(call R,$(1))/server/slm/adapter_config.json $(call PUBLIC,slm) | $(INFER_LOGITS_PROGRAM)
	$(INFER_LOGITS_CMD) $(DEVICE_FLAGS) --model $(call M,slm) --adapter $$(<D) --input $(call PUBLIC,slm) $(KNOWLEDGE_FLAGS) --out $$@

$(call R,$(1))/server/from-slm.parquet: $(call R,$(1))/server/slm-knowledge.parquet $(call MAP,$(call MODEL_OF,slm),$(SERVER)) $(call ALIGN_DEPS,slm,server) | $(ALIGN_PROGRAM)
	$(ALIGN_CMD) --knowledge $$< $(call ALIGN_FLAGS,slm,server) --out $$@

$(call R,$(1))/server/selected.parquet: $(call SERVER_LOCAL,$(1)) $(call R,$(1))/server/from-slm.parquet | $(SELECT_PROGRAM)
	$(SELECT_CMD) $(SELECT_FLAGS) --local $$< --candidates $$(word 2,$$^) --out $$@

$(call R,$(1))/server/slm-from-server.parquet: $(call R,$(1))/server/knowledge.parquet $(call MAP,$(SERVER),$(call MODEL_OF,slm)) $(call ALIGN_DEPS,server,slm) | $(ALIGN_PROGRAM)
	$(ALIGN_CMD) --knowledge $$< $(call ALIGN_FLAGS,server,slm) --out $$@

$(call R,$(1))/server/slm-selected.parquet: $(call R,$(1))/server/slm-knowledge.parquet $(call R,$(1))/server/slm-from-server.parquet | $(SELECT_PROGRAM)
	$(SELECT_CMD) $(SELECT_FLAGS) --local $$< --candidates $$(word 2,$$^) --out $$@

$(call R,$(1))/server/slm-distilled/adapter_config.json: $(call R,$(1))/server/slm-selected.parquet $(call R,$(1))/server/slm/adapter_config.json | $(DISTILL_PROGRAM)
	$(DISTILL_CMD) $(DEVICE_FLAGS) --model $(call M,slm) --adapter $(call R,$(1))/server/slm --data $(call PUBLIC,slm) --teacher $$< \
	  --lambda $(KD_LAMBDA) $(KD_FLAGS) --epochs $(DISTILL_EPOCHS) --lr $(CLIENT_LR) $(TRAIN_FLAGS) --out $$(@D)

$(call R,$(1))/eval/slm.json: $(call R,$(1))/server/slm-distilled/adapter_config.json $(EVAL_DATA) | $(EVALUATE_PROGRAM)
	$(call EVALUATE_PARTY,slm,$$(<D)) $$@

# A client sends its masked adapter and receives the distilled SLM adapter, beside FedMKT's.
$(call R,$(1))/comms.parquet: $(call R,$(1))/server/slm-distilled/adapter_config.json | $(REPORT_PROGRAM)
	$(REPORT_CMD) comms --top-k $(TOP_K) --out $$@ --markdown $$(@D)/comms.md $(foreach c,$(call PRESENT,$(1),$(CLIENTS)),--entry \
	  $(1),$(c),$(call COLLM_SENT,$(1),$(c)),$(call COLLM_RECEIVED,$(1),$(c)),$(call COMMS_ADAPTER,$(call PRIVATE,$(1),$(c))/adapter_model.safetensors),$(call PUBLIC,$(c)),$(call FEDMKT_INSTEAD,$(1)))
endef

# Round $(1) for the parties this make acts for (all of them unless PARTY is set): the
# clients' steps of the protocol and their private phases, then the server's.
define fedcollm_round
$(foreach k,$(patsubst client-%,%,$(call MINE,$(CLIENTS))),
$(call fedcollm_client_rules,$(1),client-$(k),$(k))
$(call PRIVATE_PHASE,$(1),client-$(k),$(call COLLM_START,$(1)))
)
$(if $(call MINE,server),$(call fedcollm_server_rules,$(1))
$(call llm_rules,$(1)))
endef

ifeq ($(METHOD),FedCoLLM)
PARTIES := server slm
$(foreach k,$(patsubst client-%,%,$(call MINE,$(CLIENTS))),$(eval $(call identity_rule,client-$(k),$(k))))
$(foreach n,$(ROUNDS),$(eval $(call fedcollm_round,$(n))))
endif
