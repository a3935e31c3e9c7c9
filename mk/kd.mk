# ---------------------------------------------------------------- what KD did (make report, make kd)
# Per round, each party that distils (the server if it learns, every client): measure-kd of its
# adapter before its KD phase, after it, and the FedMKT-noKD adapter of the same round (when
# nokd is a baseline), against the teacher it distilled from on the public set (its selected
# targets) and against each sender's knowledge of KD_HELDOUT held-out samples (the sender's
# adapter that made the knowledge it sent). `report kd` turns them into kd.{parquet,md}, a
# section of report.md. FedMKT's and FedCoLLM's rounds (there the LLM and the averaged SLM
# distil into each other), of a single machine only.
ifeq ($(PARTY)$(filter-out FedMKT FedCoLLM,$(METHOD)),)
COLLM       = $(filter FedCoLLM,$(METHOD))
KD          = $(call R,$(1))/kd
KD_PARTIES  = $(if $(COLLM),server slm,$(if $(filter yes,$(SERVER_LEARNS)),server) $(call PRESENT,$(1),$(CLIENTS)))
KD_SENDERS  = $(if $(COLLM),$(filter-out $(2),server slm),$(if $(filter server,$(2)),$(call PRESENT,$(1),$(CLIENTS)),server))
# Every party that sends knowledge in round $(1).
KD_ALL_SENDERS = $(if $(COLLM),server slm,server $(call PRESENT,$(1),$(CLIENTS)))
KD_WHICH    = before after $(if $(filter nokd,$(BASELINES)),nokd)
KD_SETS     = public $(addprefix heldout-,$(call KD_SENDERS,$(1),$(2)))
KD_FILE     = $(call KD,$(1))/$(2)/$(3)-$(4).parquet
# The adapter party $(2) distils from in round $(1), the one it ends the round with, noKD's,
# and the one that made the knowledge it sent (FedCoLLM's SLM: the secure average, then the
# average distilled).
KD_ADAPTER_before = $(if $(filter server,$(2)),$(call START,$(1),server),$(if $(COLLM),$(call R,$(1))/server/slm,$(call PRIVATE,$(1),$(2))))
KD_ADAPTER_after  = $(call R,$(1))/$(if $(COLLM),server/$(if $(filter slm,$(2)),slm-distilled,adapter),$(2)/adapter)
KD_ADAPTER_nokd   = $(subst $(RUN)/,$(NOKD_RUN)/,$(call KD_ADAPTER_after,$(1),$(2)))
KD_SENT           = $(if $(filter server,$(2)),$(call SERVER_ADAPTER,$(1)),$(if $(COLLM),$(call R,$(1))/server/slm,$(call PRIVATE,$(1),$(2))))
# noKD's adapters are made by its own make (NOKD_EVALS), the others here.
KD_ADAPTER_DEP    = $(if $(filter nokd,$(3)),$(NOKD_EVALS),$(call ADAPTER_DEP,$(call KD_ADAPTER_$(3),$(1),$(2))))
# Each set's tokens and teacher: the public set against the selected targets; a sender's
# knowledge of the held-out samples, aligned into the party's vocabulary.
KD_TOKENS_public    = $(call PUBLIC,$(2))
KD_TEACHER_public   = $(call R,$(1))/$(if $(COLLM),server/$(if $(filter slm,$(2)),slm-)selected,$(2)/selected).parquet
KD_TOKENS_heldout   = $(call TOKENS,$(2),kd-heldout)
KD_TEACHER_heldout  = $(call KD,$(1))/$(2)/heldout-from-$(3).parquet

# $(1) round, $(2) party, $(3) set (public or heldout-<sender>), $(4) before, after or nokd.
define kd_measure_rule
$(call KD_FILE,$(1),$(2),$(3),$(4)): $(call KD_TEACHER_$(word 1,$(subst -, ,$(3))),$(1),$(2),$(patsubst heldout-%,%,$(3))) \
  $(call KD_TOKENS_$(word 1,$(subst -, ,$(3))),$(1),$(2)) $(call KD_ADAPTER_DEP,$(1),$(2),$(4)) | $(MEASURE_KD_PROGRAM)
	$(MEASURE_KD_CMD) $(DEVICE_FLAGS) --model $(call M,$(2)) $(call ADAPTER_FLAG,$(call KD_ADAPTER_$(4),$(1),$(2))) $(KD_FLAGS) \
	  --input $(call KD_TOKENS_$(word 1,$(subst -, ,$(3))),$(1),$(2)) --teacher $$< --out $$@
endef

# $(1) round, $(2) sender: its knowledge of the held-out samples; $(3) receiver: aligned into it.
define kd_heldout_knowledge_rule
$(call KD,$(1))/$(2)-heldout.parquet: $(call ADAPTER_DEP,$(call KD_SENT,$(1),$(2))) $(call TOKENS,$(2),kd-heldout) | $(INFER_LOGITS_PROGRAM)
	$(INFER_LOGITS_CMD) $(DEVICE_FLAGS) --model $(call M,$(2)) $(call ADAPTER_FLAG,$(call KD_SENT,$(1),$(2))) \
	  --input $(call TOKENS,$(2),kd-heldout) --top-k $(TOP_K) --out $$@
endef
define kd_heldout_aligned_rule
$(call KD_TEACHER_heldout,$(1),$(3),$(2)): $(call KD,$(1))/$(2)-heldout.parquet $(call MAP,$(call MODEL_OF,$(2)),$(call MODEL_OF,$(3))) \
  $(call ALIGN_DEPS,$(2),$(3),kd-heldout) | $(ALIGN_PROGRAM)
	$(ALIGN_CMD) --knowledge $$< $(call ALIGN_FLAGS,$(2),$(3),kd-heldout) --out $$@
endef

# $(1) round, $(2) party: its measures and the held-out teachers aligned into it (each rule's
# text on lines of its own: foreach joins with spaces).
define kd_party_rules
$(foreach set,$(call KD_SETS,$(1),$(2)),$(foreach w,$(KD_WHICH),
$(call kd_measure_rule,$(1),$(2),$(set),$(w))
))
$(foreach s,$(call KD_SENDERS,$(1),$(2)),
$(call kd_heldout_aligned_rule,$(1),$(s),$(2))
)
endef

# $(1) round: every sender's held-out knowledge, every distilling party's measures.
define kd_round
$(foreach s,$(call KD_ALL_SENDERS,$(1)),
$(call kd_heldout_knowledge_rule,$(1),$(s))
)
$(foreach p,$(call KD_PARTIES,$(1)),$(call kd_party_rules,$(1),$(p)))
endef
$(foreach n,$(ROUNDS),$(eval $(call kd_round,$(n))))

KD_FILES  = $(foreach n,$(ROUNDS),$(foreach p,$(call KD_PARTIES,$(n)),$(foreach set,$(call KD_SETS,$(n),$(p)),\
              $(foreach w,$(KD_WHICH),$(call KD_FILE,$(n),$(p),$(set),$(w))))))
# One --public or --held-out entry: round $(1), party $(2), teacher $(3), set $(4).
KD_ENTRY  = $(1),$(2),$(3)$(subst $(eval) ,,$(foreach w,$(KD_WHICH),$(comma)$(call KD_FILE,$(1),$(2),$(4),$(w))))
KD_REPORT = $(RUN)/kd.md
$(KD_REPORT): $(KD_FILES) | $(REPORT_PROGRAM)
	$(REPORT_CMD) kd $(foreach n,$(ROUNDS),$(foreach p,$(call KD_PARTIES,$(n)),--public $(call KD_ENTRY,$(n),$(p),$(call KD_TEACHER_public,$(n),$(p)),public) \
	  $(foreach s,$(call KD_SENDERS,$(n),$(p)),--held-out $(call KD_ENTRY,$(n),$(p),$(s),heldout-$(s))))) --out $(RUN)/kd.parquet --markdown $@
kd: setup $(KD_REPORT)
	@tail -n +2 $(KD_REPORT)
endif
