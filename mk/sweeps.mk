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
$(SWEEP_DATA): $(RUN)/settings.mk $(DATA_DEP) | $(PREPARE_DATA_PROGRAM)
	$(call SPLIT_TASK,$(SWEEP_SPLIT),$(EVAL_SIZE)) --out $(@D)
define sweep_rules
$(SWEEP)/lr-$(1)/adapter_config.json: $(SWEEP_TRAIN) | $(DISTILL_PROGRAM)
	$(DISTILL_CMD) $(DEVICE_FLAGS) --model $(call M,$(SWEEP_PARTY)) --data $$< --epochs $(PRIVATE_EPOCHS) --lr $(1) $(TRAIN_FLAGS) --out $$(@D)
$(SWEEP)/eval/lr-$(1).json: $(SWEEP)/lr-$(1)/adapter_config.json $(SWEEP_DATA) | $(EVALUATE_PROGRAM)
	$(EVALUATE_CMD) $(DEVICE_FLAGS) --model $(call M,$(SWEEP_PARTY)) --adapter $$(<D) --data $(SWEEP_DATA) --out $$@
endef
$(foreach lr,$(SWEEP_LRS),$(eval $(call sweep_rules,$(lr))))
$(SWEEP)/report.md: $(foreach lr,$(SWEEP_LRS),$(SWEEP)/eval/lr-$(lr).json) | $(REPORT_PROGRAM)
	$(REPORT_CMD) results $(foreach lr,$(SWEEP_LRS),--result Standalone-lr-$(lr),-,$(SWEEP_PARTY)=$(SWEEP)/eval/lr-$(lr).json) \
	  --out $(SWEEP)/report.parquet --paired $(SWEEP)/paired.parquet --markdown $@
sweep-lr: setup $(SWEEP)/report.md
	@tail -n +2 $(SWEEP)/report.md | sed -n '1,/^$$/p'; echo "Sweep of $(SWEEP_PARTY) on $(SWEEP_DATA): $(SWEEP)/"


# The KL error of storing top-K logits as f16 (knowledge files), on both real models.
measure-logit-storage: $(RUN)/models/gemma3-270m/config.json $(RUN)/models/smollm2-135m/config.json $(call PUBLIC,server) $(foreach c,$(CLIENTS),$(call PUBLIC,$(c)))
	cargo run --release --quiet --example logit_storage -- $(RUN)/models/gemma3-270m $(RUN)/tok/gemma3-270m/public.parquet $(TOP_K) 100
	cargo run --release --quiet --example logit_storage -- $(RUN)/models/smollm2-135m $(RUN)/tok/smollm2-135m/public.parquet $(TOP_K) 100

# The KD estimates of a top-K and of sampled draws against the dense KD, on SmolLM2 with
# client-1's private adapter as the teacher of the model as it comes (same tokenizer).
measure-kd-estimates: $(call PRIVATE,1,client-1)/adapter_config.json $(call PUBLIC,client-1)
	cargo run --release --quiet --example kd_estimates -- $(call M,client-1) $(call PRIVATE,1,client-1) $(call PUBLIC,client-1) $(TOP_K) 80 20


# `make teacher-curve PIPELINE=pipelines/teacher-curve.mk`: the regime experiments' second arm
# (results/README.md): the pipeline once per teacher model (CURVE_SERVERS), teacher strength
# (CURVE_SHARDS: train parts it was fine-tuned on, 0: as it comes) and student configuration
# (CURVE_CONFIGS, PUBLIC_LABELS:LAMBDA), each beside its noKD sibling. A teacher is trained and
# evaluated once, in its first configuration's run, which the others take it from
# (TEACHER_RUN); Zero-Shot once per teacher model. $(NAME)-curve/curve.{md,parquet,png} sets the
# student's KD gain beside the teacher's advantage (tools/report/teacher_curve.py).
# `make results/teacher-curve/arc-easy/curve.md` commits the same runs, each published as it
# finishes, as a cell's seed is (training logs, KD diagnostics, evaluations, seed.json).
CURVE_SERVERS ?= smollm2-135m gemma3-270m
CURVE_SHARDS  ?= 0 1 2 4
CURVE_CONFIGS ?= yes:0.9 yes:0 no:0
# A variant of a committed curve names it here (see CURVE_BESIDE_CMD).
CURVE_BESIDE  ?=
# A point of the curve is MODEL:PARTS:LABELS:LAMBDA; its run is $(NAME)-$(CURVE_POINT).
CURVE_POINTS   = $(foreach s,$(CURVE_SERVERS),$(foreach k,$(CURVE_SHARDS),$(foreach c,$(CURVE_CONFIGS),$(s):$(k):$(c))))
CURVE_FIELD    = $(word $(2),$(subst :, ,$(1)))
CURVE_POINT    = $(call CURVE_FIELD,$(1),1)-parts-$(call CURVE_FIELD,$(1),2)-labels-$(call CURVE_FIELD,$(1),3)-lambda-$(call CURVE_FIELD,$(1),4)
CURVE_NAME     = $(NAME)-$(call CURVE_POINT,$(1))
# The point whose run trains and evaluates a point's teacher: its first configuration.
CURVE_TEACHER  = $(call CURVE_FIELD,$(1),1):$(call CURVE_FIELD,$(1),2):$(firstword $(CURVE_CONFIGS))
CURVE_RUNS     = $(foreach p,$(CURVE_POINTS),$(RUNS)/$(call CURVE_NAME,$(p)))
CURVE_ZERO_SHOT = $(RUNS)/$(NAME)-$(1)-zero-shot
CURVE_MAKE     = $(MAKE) --no-print-directory PIPELINE=$(PIPELINE) RUNS=$(RUNS) ROUND=$(ROUND) SERVER=$(1)
# What finishes a point's run: its teacher model's Zero-Shot (under a lock: points run side
# by side under -j share it), then the run and its sibling.
CURVE_POINT_MAKE = $(if $(DRY_RUN),,mkdir -p $(RUNS); flock $(call CURVE_ZERO_SHOT,$(call CURVE_FIELD,$(1),1)).lock) $(call CURVE_MAKE,$(call CURVE_FIELD,$(1),1)) NAME=$(NAME)-$(call CURVE_FIELD,$(1),1)-zero-shot \
	  $(foreach m,$(sort $(call CURVE_FIELD,$(1),1) $(CLIENT_MODELS)),$(call ZERO_SHOT_IN,$(call CURVE_ZERO_SHOT,$(call CURVE_FIELD,$(1),1)),$(m))) && \
	  $(call CURVE_MAKE,$(call CURVE_FIELD,$(1),1)) $(RUNS)/$(call CURVE_NAME,$(1))/report.md NAME=$(call CURVE_NAME,$(1)) \
	  TEACHER_SHARDS=$(call CURVE_FIELD,$(1),2) PUBLIC_LABELS=$(call CURVE_FIELD,$(1),3) LAMBDA=$(call CURVE_FIELD,$(1),4) \
	  ZERO_SHOT_RUN=$(call CURVE_ZERO_SHOT,$(call CURVE_FIELD,$(1),1)) TEACHER_RUN=$(RUNS)/$(call CURVE_NAME,$(call CURVE_TEACHER,$(1)))
# The summary's Python: with matplotlib for the plot (PLOT=yes), else pyarrow alone.
CURVE_ENV      = $(if $(filter yes,$(PLOT)),$(PLOT_ENV),$(STAGE_ENV))
teacher-curve: $(CURVE_ENV)/.installed
	+$(foreach p,$(CURVE_POINTS),$(call CURVE_POINT_MAKE,$(p)) &&) true
	$(CURVE_ENV)/bin/python tools/report/teacher_curve.py $(RUNS)/$(NAME)-curve $(CURVE_RUNS)

CURVE_RESULTS   = $(RESULTS)/$(NAME)/$(TASK)
CURVE_PUBLISHED = $(foreach p,$(CURVE_POINTS),$(CURVE_RESULTS)/$(call CURVE_POINT,$(p)))
# A point published once its run has finished, after the point that trains its teacher.
define curve_point_rule
$(CURVE_RESULTS)/$(call CURVE_POINT,$(1))/report.parquet: | $(REPORT_PROGRAM) \
    $(if $(filter-out $(1),$(call CURVE_TEACHER,$(1))),$(CURVE_RESULTS)/$(call CURVE_POINT,$(call CURVE_TEACHER,$(1)))/report.parquet)
$(call publish_run,$(call CURVE_POINT_MAKE,$(1)),$(call CURVE_NAME,$(1)))
endef
$(foreach p,$(CURVE_POINTS),$(eval $(call curve_point_rule,$(p))))
$(CURVE_RESULTS)/curve.md: $(foreach d,$(CURVE_PUBLISHED),$(d)/report.parquet) | $(CURVE_ENV)/.installed
	$(CURVE_ENV)/bin/python tools/report/teacher_curve.py $(@D) $(CURVE_PUBLISHED)
	$(if $(CURVE_BESIDE),$(foreach p,$(CURVE_POINTS),$(call CURVE_BESIDE_CMD,$(call CURVE_POINT,$(p))) &&) true)
# A variant of a committed curve (CURVE_BESIDE: the curve it varies, e.g. sampled KD beside
# teacher-curve's top-K) sets each point's student beside the same point's student in that
# curve's committed copy, and both beside the point's noKD sibling, paired on the same samples
# (`report results`): <point>/beside/{report.md,report.parquet,paired.parquet}.
CURVE_STUDENT    = $(1)/FedMKT-round-1-client-1.json
CURVE_BESIDE_DIR = $(CURVE_RESULTS)/$(1)/beside
CURVE_BESIDE_CMD = $(REPORT_CMD) results --result $(NAME),1,client-1=$(call CURVE_STUDENT,$(CURVE_RESULTS)/$(1)) \
	  --result $(CURVE_BESIDE),1,client-1=$(call CURVE_STUDENT,$(RESULTS)/$(CURVE_BESIDE)/$(TASK)/$(1)) \
	  --result FedMKT-noKD,1,client-1=$(CURVE_RESULTS)/$(1)/FedMKT-noKD-round-1-client-1.json --subject $(NAME) \
	  --copy-into $(call CURVE_BESIDE_DIR,$(1)) --out $(call CURVE_BESIDE_DIR,$(1))/report.parquet \
	  --paired $(call CURVE_BESIDE_DIR,$(1))/paired.parquet --markdown $(call CURVE_BESIDE_DIR,$(1))/report.md
# From any pipeline: a committed curve is its pipeline's (pipelines/<curve>.mk), whose make
# decides (FORCE: a committed curve.md must not look up to date to a pipeline that knows none
# of its points).
COMMITTED_CURVES := teacher-curve teacher-curve-sampled teacher-curve-fallback-self
define curve_handover_rule
$(RESULTS)/$(1)/%: FORCE
	+$$(MAKE) --no-print-directory $$@ PIPELINE=pipelines/$(1).mk
endef
$(foreach c,$(filter-out $(NAME),$(COMMITTED_CURVES)),$(eval $(call curve_handover_rule,$(c))))
