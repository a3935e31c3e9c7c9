# The README's main job: one FedMKT round with real models on CPU in about 15 minutes on
# 2 cores. Gemma-3-270M is the server's LLM, two SmolLM2-135M-Instruct clients hold private
# ARC-Easy shards. The paper (Table 1, heterogeneous) uses LLaMA2-7B with four 1–2B SLMs and
# the full splits; the sizes here are a seeded sample of each split, small enough for a CPU.
# A pipeline file is variables only; the Makefile holds the recipes.
NAME          := default
TASK          := arc-easy
SERVER        := gemma3-270m
CLIENT_MODELS := smollm2-135m smollm2-135m
SEED          := 42
PUBLIC_SIZE   := 200
CLIENT_SIZE   := 100
EVAL_SIZE     := 120
TOP_K         := 16
LAMBDA        := 0.9
PRIVATE_EPOCHS := 1
DISTILL_EPOCHS := 1
CLIENT_LR     := 2e-4
SERVER_LR     := 1e-4
BASELINES     := zero-shot standalone centralized
