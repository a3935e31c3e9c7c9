# ---------------------------------------------------------------- frozen teachers of graded strength (TEACHER_SHARDS)
# The regime experiments' teacher-advantage curve (results/README.md): the server does not
# learn (SERVER_LEARNS=no) and is a teacher fine-tuned beforehand on TEACHER_SHARDS parts of
# the train split that are no client's, so that its advantage over the student comes from
# data the student never sees. Those parts come from the same seeded cut as the run's own
# (the same SEED and PARTS): cut with every part a shard, parts 2.. are the clients' in order,
# and the teacher takes the TEACHER_SHARDS after the last client's. Its adapter is trained
# once, in the run that asks for it, and shared with the run's siblings (TEACHER_RUN).
ifneq ($(TEACHER_SHARDS),)
ifeq ($(call WHOLE_NUMBER,$(TEACHER_SHARDS))$(filter 0,$(TEACHER_SHARDS)),)
$(error TEACHER_SHARDS '$(TEACHER_SHARDS)': give a whole number of train parts, 0 or more)
endif
ifneq ($(SERVER_LEARNS),no)
$(error TEACHER_SHARDS '$(TEACHER_SHARDS)': a teacher is frozen; set SERVER_LEARNS=no)
endif
TEACHER_SHARD_IDS := $(if $(filter-out 0,$(TEACHER_SHARDS)),$(shell seq $$(( $(N_CLIENTS) + 1 )) $$(( $(N_CLIENTS) + $(TEACHER_SHARDS) ))))
ifneq ($(shell [ $$(( $(N_CLIENTS) + $(TEACHER_SHARDS) + 1 )) -le $(PARTS) ] && echo ok),ok)
$(error TEACHER_SHARDS '$(TEACHER_SHARDS)': with $(N_CLIENTS) client(s) and PARTS $(PARTS), at most $$(( $(PARTS) - 1 - $(N_CLIENTS) )) parts are no client's)
endif
TEACHER_DATA := $(RUN)/data/$(TASK)-teacher
TEACHER_TOKENS = $(foreach i,$(TEACHER_SHARD_IDS),$(RUN)/tok/$(SERVER)/teacher-client-$(i).parquet)
ifeq ($(TEACHER_RUN)$(PARTY),$(RUN))
# Every part a shard (its eval set left at one sample: it is not used).
$(TEACHER_DATA)/eval.parquet: $(RUN)/settings.mk $(DATA_DEP) | $(PREPARE_DATA_PROGRAM)
	$(call SPLIT_TASK,$(EVAL_SPLIT),1,$(shell echo $$(( $(PARTS) - 1 )))) --out $(@D)

$(RUN)/tok/$(SERVER)/teacher-%.parquet: $(TEACHER_DATA)/eval.parquet $(RUN)/models/$(SERVER)/config.json | $(TOKENIZE_PROGRAM)
	$(TOKENIZE_CMD) --tokenizer $(RUN)/models/$(SERVER)/tokenizer.json --input $(TEACHER_DATA)/$*.parquet --out $@

$(TEACHER_ADAPTER)/adapter_config.json: $(TEACHER_TOKENS) | $(DISTILL_PROGRAM)
	$(DISTILL_CMD) $(DEVICE_FLAGS) --model $(call M,server) $(addprefix --data ,$^) --epochs $(PRIVATE_EPOCHS) --lr $(SERVER_LR) $(TRAIN_FLAGS) --out $(@D)
endif
endif
