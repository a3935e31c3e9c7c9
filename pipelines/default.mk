# The README's main job: one FedMKT round with real models on CPU in about 15 minutes on
# 2 cores. Gemma-3-270M is the server's LLM, two SmolLM2-135M-Instruct clients hold private
# ARC-Easy shards. The paper (Table 1, heterogeneous) uses LLaMA2-7B with four 1–2B SLMs and
# the full splits. A pipeline file is variables only; the Makefile holds the recipes.
include pipelines/real-models.mk
NAME          := default
CLIENT_MODELS := smollm2-135m smollm2-135m
PUBLIC_SIZE   := 200
CLIENT_SIZE   := 100
EVAL_SIZE     := 120
BASELINES     := zero-shot standalone centralized nokd
