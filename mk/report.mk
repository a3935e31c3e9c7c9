# ---------------------------------------------------------------- the report
# The parties with rows in the report and the evaluation each row reads: FedCoLLM's clients
# all receive the distilled SLM, so each client's row of a round is the SLM's evaluation.
REPORT_PARTIES = $(PARTIES) $(if $(filter FedCoLLM,$(METHOD)),$(CLIENTS))
ROW_EVAL       = $(if $(and $(filter FedCoLLM,$(METHOD)),$(filter client-%,$(1))),slm,$(1))

# Each baseline: its files and its rows in the report (METHOD,ROUND,PARTY=FILE).
BASELINE_FILES_zero-shot   = $(foreach m,$(MODELS),$(call ZERO_SHOT,$(m)))
BASELINE_ROWS_zero-shot    = $(foreach p,$(REPORT_PARTIES),Zero-Shot,-,$(p)=$(call ZERO_SHOT,$(call MODEL_OF,$(p))))
BASELINE_FILES_standalone  = $(foreach c,$(CLIENTS),$(STANDALONE)/eval/$(c).json)
BASELINE_ROWS_standalone   = $(foreach c,$(CLIENTS),Standalone,-,$(c)=$(STANDALONE)/eval/$(c).json)
BASELINE_FILES_centralized = $(CENTRALIZED)/eval/server.json
BASELINE_ROWS_centralized  = Centralized,-,server=$(CENTRALIZED)/eval/server.json
BASELINE_FILES_fedavg      = $(foreach n,$(ROUNDS),$(call FEDAVG,$(n))/eval/average.json)
BASELINE_ROWS_fedavg       = $(foreach n,$(ROUNDS),$(foreach c,$(CLIENTS),FedAvg,$(n),$(c)=$(call FEDAVG,$(n))/eval/average.json))
BASELINE_FILES_nokd        = $(NOKD_EVALS)
BASELINE_ROWS_nokd         = $(foreach n,$(ROUNDS),$(foreach p,$(REPORT_PARTIES),$(METHOD)-noKD,$(n),$(p)=$(NOKD_RUN)/round-$(n)/eval/$(call ROW_EVAL,$(p)).json))
BASELINE_FILES_llm2slm     = $(LLM2SLM_EVALS) $(call ZERO_SHOT,$(SERVER))
BASELINE_ROWS_llm2slm      = $(foreach n,$(ROUNDS),LLM2SLM,$(n),server=$(call ZERO_SHOT,$(SERVER)) \
                               $(foreach p,$(CLIENTS),LLM2SLM,$(n),$(p)=$(LLM2SLM_RUN)/round-$(n)/eval/$(p).json))

baselines: setup $(foreach b,$(BASELINES),$(BASELINE_FILES_$(b)))

# The server of a federation (PARTY=server) reports from the evaluations its clients sent, and
# keeps the communication table (without the clients' adapter sizes); a client has neither.
ROUND_FILES = $(foreach n,$(ROUNDS),$(foreach p,$(call PRESENT,$(n),$(PARTIES)),$(call R,$(n))/eval/$(p).json) $(if $(filter client-%,$(PARTY)),,$(call R,$(n))/comms.parquet))
ROUND_ROWS  = $(foreach n,$(ROUNDS),$(foreach p,$(call PRESENT,$(n),$(REPORT_PARTIES)),$(METHOD_NAME),$(n),$(p)=$(call R,$(n))/eval/$(call ROW_EVAL,$(p)).json))

$(RUN)/report-$(ROUND).md: $(ROUND_FILES) $(BASELINE_FILES_zero-shot) | $(REPORT_PROGRAM)
	$(REPORT_CMD) results $(addprefix --result ,$(BASELINE_ROWS_zero-shot) $(ROUND_ROWS)) --out $(@:.md=.parquet) \
	  --paired $(@:.md=-paired.parquet) --markdown $@

round: setup $(RUN)/report-$(ROUND).md
	@echo; echo "$(NAME): $(ROUND) round(s) of $(METHOD) on $(TASK); acc / acc_norm (%) on $(EVAL_DATA):"; echo
	@tail -n +2 $(RUN)/report-$(ROUND).md
	@echo; echo "Files: $(RUN)/round-*/ (knowledge sets, alignments, selections, adapters, eval/), report $(RUN)/report-$(ROUND).{md,parquet}, communication $(RUN)/round-*/comms.md"

# The full report: rounds beside every baseline of the pipeline, communication per round, a plot.
$(RUN)/report.md: $(RUN)/report-$(ROUND).md $(foreach b,$(BASELINES),$(BASELINE_FILES_$(b))) $(KD_REPORT) | $(REPORT_PROGRAM)
	$(REPORT_CMD) results $(addprefix --result ,$(foreach b,$(BASELINES),$(BASELINE_ROWS_$(b))) $(ROUND_ROWS)) \
	  --out $(RUN)/report.parquet --paired $(RUN)/paired.parquet --markdown $(RUN)/results.md
	{ echo "# $(NAME): $(METHOD) on $(TASK), $(ROUND) round(s)"; echo; echo "acc / acc_norm (%) on $(EVAL_DATA)"; echo; \
	  tail -n +2 $(RUN)/results.md; echo; echo "## Communication per round"; echo; \
	  for n in $(ROUNDS); do tail -n +$$( [ $$n = 1 ] && echo 2 || echo 4 ) $(call R,$$n)/comms.md; done; \
	  $(if $(KD_REPORT),echo; echo "## What knowledge distillation did"; echo; tail -n +2 $(KD_REPORT);) \
	  echo; echo "![accuracy by round]($(notdir $(@:.md=.png)))"; } > $@.tmp && mv $@.tmp $@

$(RUN)/report.png: $(RUN)/report.md $(PLOT_ENV)/.installed
	$(PLOT_ENV)/bin/python tools/report/plot_rounds.py $(RUN)/report.parquet $@

report: setup $(RUN)/report.md $(RUN)/report.png
	@cat $(RUN)/report.md; echo; echo "Report: $(RUN)/report.{md,parquet,png}"

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
$(SEEDS_RUN)/report.md: $(SEED_REPORTS) | $(REPORT_PROGRAM)
	$(REPORT_CMD) results --reports $^ --out $(@D)/report.parquet --paired $(@D)/paired.parquet --markdown $@

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
$(TASKS_RUN)/report.md: $(TASK_REPORTS) | $(REPORT_PROGRAM)
	@mkdir -p $(@D)
	$(REPORT_CMD) tasks $(foreach t,$(TASKS),--report $(t)=$(RUNS)/$(NAME)-task-$(t)/report.parquet) --out $(@D)/report.parquet --markdown $@
tasks: $(TASKS_RUN)/report.md
	@tail -n +2 $<; echo; echo "Per task: $(TASK_REPORTS:/report.parquet=/report.{md,png})"

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
CELL_SETTINGS ?= one-to-one homogeneous heterogeneous one-to-one-unlabelled fedcollm
CELL_TASKS    ?= arc-easy arc-challenge csqa boolq
CELL_NAME      = $(if $(filter arc-easy,$(2)),$(1),$(1)-$(2))
TOOLS_COMMIT  ?= $(shell git describe --always --dirty --abbrev=7 2>/dev/null)
PUBLISH        = $(PYTHON) tools/report/publish_cell.py
CELL_PLOT_ENV  = $(if $(filter yes,$(PLOT)),$(PLOT_ENV)/.installed)
# make runs a recipe line that calls $(MAKE) even under -n; the rest of such a line is
# prefixed with DRY_RUN, the shell's no-op ":" under -n, so `make -n` shows it and writes nothing.
DRY_RUN        = $(if $(findstring n,$(firstword -$(MAKEFLAGS))),:)
# A finished run published into results/ ($$(@D)): its training logs, KD diagnostics and
# seed.json (tools/report/publish_cell.py), then its evaluations copied and its report remade
# from the copies. $(1): the make command that finishes the run; $(2): the run's name.
define publish_run
	start=$$$$(date +%s); resumed=$$$$(test -d $(RUNS)/$(2) && echo yes || echo no); \
	  $(1); \
	  $$(DRY_RUN) mkdir -p $$(@D); $$(DRY_RUN) $(PUBLISH) seed $(RUNS) $(2) $$(@D) $(TOOLS_COMMIT) $$$$(( $$$$(date +%s) - start )) $$$$resumed
	$(REPORT_CMD) results --reports $(RUNS)/$(2)/report.parquet --copy-into $$(@D) \
	  --out $$@ --paired $$(@D)/paired.parquet --markdown $$(@D)/report.md
endef
define cell_rule
$(RESULTS)/$(1)/$(2)/seed-%/report.parquet: | $(REPORT_PROGRAM)
$(call publish_run,$$(MAKE) --no-print-directory $(RUNS)/$(call CELL_NAME,$(1),$(2))-seed-$$*/report.parquet \
	  PIPELINE=pipelines/$(1).mk TASK=$(2) NAME=$(call CELL_NAME,$(1),$(2)) RUNS=$(RUNS),$(call CELL_NAME,$(1),$(2))-seed-$$*)

$(RESULTS)/$(1)/$(2)/report.md: $(foreach s,$(CELL_SEEDS),$(RESULTS)/$(1)/$(2)/seed-$(s)/report.parquet) | $(REPORT_PROGRAM) $(CELL_PLOT_ENV)
	$(PUBLISH) cell $$(@D) "make $$@ CELL_SEEDS='$(CELL_SEEDS)'" $(CELL_SEEDS)
	$(REPORT_CMD) results --reports $$^ --out $$(@D)/report.parquet --paired $$(@D)/paired.parquet --markdown $$@
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
	+$(foreach c,$(GRID_CELLS),$(MAKE) --no-print-directory $(call GRID_CELL,$(c)) &&) true

