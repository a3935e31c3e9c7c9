# The paper's heterogeneous setting (Table 1): clients own SLMs of different architectures
# and tokenizers. Paper: LLaMa2-7B server; GPT-2-xlarge, OPT-1.3B, Bloom-1.1B, LLaMa2-1.3B
# clients. Substituted with the models we have offline: Gemma-3-270M as the server's LLM,
# four clients alternating SmolLM2-135M (byte-level BPE, 49k) and Gemma-3-270M
# (SentencePiece, 262k), so that transfer crosses tokenizers in both directions. Every
# client trains at CLIENT_LR (paper-protocol.mk: swept for SmolLM2), the Gemma-3 clients too;
# a sweep of a Gemma-3 client (results/sweeps/heterogeneous/arc-easy/client-2-lr) finds 1e-3
# and 2e-4 no different on validation.
include pipelines/real-models.mk
include pipelines/paper-protocol.mk
NAME          := heterogeneous
CLIENT_MODELS := smollm2-135m gemma3-270m smollm2-135m gemma3-270m
BASELINES     := zero-shot standalone centralized nokd
# The paper reports this setting over rounds: three unless ROUND is given (the cell in
# results/heterogeneous/ reports rounds 1–3).
ROUND         ?= 3
