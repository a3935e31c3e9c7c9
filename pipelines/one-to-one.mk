# The paper's one-to-one setting (Table 1): one client. Paper: LLaMA2-7B server, one
# Sheared-LLaMA-1.3B client; the baseline LLM2SLM distils the frozen LLM into the SLM.
# Substituted: Gemma-3-270M server, one SmolLM2-135M client.
include pipelines/real-models.mk
include pipelines/paper-protocol.mk
NAME          := one-to-one
CLIENT_MODELS := smollm2-135m
BASELINES     := zero-shot standalone centralized llm2slm nokd
