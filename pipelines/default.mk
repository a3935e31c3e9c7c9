# The README's main job: Gemma-3-270M server, two SmolLM2-135M clients, ARC-Easy.
# A pipeline file is variables only; the Makefile holds the recipes.
NAME        := default
TASK        := arc-easy
SERVER      := gemma3-270m
CLIENT_MODELS := smollm2-135m smollm2-135m
SEED        := 42
