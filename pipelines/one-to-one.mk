# The paper's one-to-one setting (Table 1): one client. Paper: LLaMA2-7B server, one
# LLaMA2-1.3B client; baseline LLM2SLM distils the frozen LLM into the SLM. Substituted:
# Gemma-3-270M server, one SmolLM2-135M client; ARC-Easy samples.
NAME          := one-to-one
TASK          := arc-easy
SERVER        := gemma3-270m
CLIENT_MODELS := smollm2-135m
SEED          := 42
PUBLIC_SIZE   := 100
CLIENT_SIZE   := 100
EVAL_SIZE     := 100
CLIENT_LR     := 2e-4
SERVER_LR     := 1e-4
BASELINES     := zero-shot standalone centralized llm2slm
