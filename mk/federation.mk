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
	$(REPORT_CMD) wire --wire $(FEDERATION_DIR)/wire.json $(foreach n,$(ROUNDS),--comms $(FEDERATION_DIR)/server/runs/$(NAME)/round-$(n)/comms.parquet) \
	  --out $(FEDERATION_DIR)/comms.parquet --markdown $(FEDERATION_DIR)/comms.md
	@cat $(FEDERATION_DIR)/comms.md

