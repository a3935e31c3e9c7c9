# The pipeline (PIPELINE, a file of pipelines/), what it may leave out, and what follows from it.
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
# The name a run's rows carry in the report (a FedCoLLM ablation keeps METHOD's rules).
METHOD_NAME    ?= $(METHOD)
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
# How align matches a sender's tokens to a receiver's: offsets or dtw (align --strategy). Runs
# record it under its earlier name, ALIGN (settings.mk, the cells' cell.json); ALIGN is now the
# align stage's program.
ALIGN_STRATEGY ?= offsets
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
# TEACHER_SHARDS=k (with SERVER_LEARNS=no): the frozen server is a teacher of graded strength,
# its adapter fine-tuned on k train parts that are no client's (mk/teacher.mk); 0: the model
# as it comes. Empty (the default): the server as the method has it.
TEACHER_SHARDS ?=
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

# ---------------------------------------------------------------- the stages
# Every tool the recipes call goes through its variable, so any stage can be swapped for a
# program that reads the same flags and files and writes the same files (tools/FORMATS.md):
#   make round SELECT=examples/select_margin.py NAME=margin
# A program ending in .py runs under the stages' Python (pyarrow, installed into STAGE_ENV on
# first use). A swapped stage is one of the run's settings (SWAPPED_STAGES in settings.mk), so
# swapping one, or putting the tool back, redoes the run.
STAGES := PREPARE_DATA:prepare-data IMPORT_GGUF:import-gguf TOKENIZE:tokenize INFER_LOGITS:infer-logits \
          EVALUATE:evaluate VOCAB_MAP:vocab-map ALIGN:align SELECT:select DISTILL:distill MEASURE_KD:measure-kd \
          AGGREGATE:aggregate REPORT:report
STAGE_ENV := $(ASSETS)/stages
# $(1) the stage's variable, $(2) its tool: the program (the tool unless swapped), the command
# line that runs it and what must exist before it runs.
define stage_variables
$(1) ?= $$(BIN)/$(2)
$(1)_CMD     = $$(if $$(filter %.py,$$($(1))),$$(STAGE_ENV)/bin/python )$$($(1))
$(1)_PROGRAM = $$($(1))$$(if $$(filter %.py,$$($(1))), $$(STAGE_ENV)/.installed)
endef
ifneq ($(filter offsets dtw,$(ALIGN)),)
$(error ALIGN '$(ALIGN)': ALIGN is the align stage's program; the strategy is ALIGN_STRATEGY=$(ALIGN))
endif
STAGE_VAR  = $(word 1,$(subst :, ,$(1)))
STAGE_TOOL = $(word 2,$(subst :, ,$(1)))
$(foreach s,$(STAGES),$(eval $(call stage_variables,$(call STAGE_VAR,$(s)),$(call STAGE_TOOL,$(s)))))
# The stages set to another program than their tool, as VAR=program.
SWAPPED_STAGES := $(strip $(foreach s,$(STAGES),$(if $(filter-out $(BIN)/$(call STAGE_TOOL,$(s)),$($(call STAGE_VAR,$(s)))),$(call STAGE_VAR,$(s))=$($(call STAGE_VAR,$(s))))))
STAGE_FOUND     = $(if $(filter %.py,$(1)),$(wildcard $(1)),$(shell command -v $(1)))
$(foreach s,$(STAGES),$(if $(filter 1,$(words $($(call STAGE_VAR,$(s))))),,\
  $(error $(call STAGE_VAR,$(s)) '$($(call STAGE_VAR,$(s)))': one program, a path or a command (see mk/settings.mk))))
$(foreach s,$(SWAPPED_STAGES),$(if $(call STAGE_FOUND,$(word 2,$(subst =, ,$(s)))),,\
  $(error $(word 1,$(subst =, ,$(s))) '$(word 2,$(subst =, ,$(s)))': no such program)))
