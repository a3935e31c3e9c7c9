# The paper's heterogeneous setting (Table 1): clients own SLMs of different architectures
# and tokenizers. Paper: LLaMA2-7B server; GPT-2-xlarge, OPT-1.3B, Bloom-1.1B, Qwen1.5-1.8B
# clients; 4 clients, 1 to 5 rounds. Substituted with the models we have offline: Gemma-3-270M
# as the server's LLM, four clients alternating SmolLM2-135M (byte-level BPE, 49k) and
# Gemma-3-270M (SentencePiece, 262k) so that both directions of cross-tokenizer transfer occur
# among clients. Sizes: seeded samples of ARC-Easy, small enough for a CPU.
NAME          := heterogeneous
TASK          := arc-easy
SERVER        := gemma3-270m
CLIENT_MODELS := smollm2-135m gemma3-270m smollm2-135m gemma3-270m
SEED          := 42
PUBLIC_SIZE   := 100
CLIENT_SIZE   := 50
EVAL_SIZE     := 100
CLIENT_LR     := 2e-4
SERVER_LR     := 1e-4
BASELINES     := zero-shot standalone centralized
