# The paper's homogeneous setting (Table 1): every client owns the same SLM, so FedAvg of
# their adapters is a baseline. Paper: LLaMA2-7B server, four LLaMA2-1.3B (Sheared) clients.
# Substituted: Gemma-3-270M server, four SmolLM2-135M clients; ARC-Easy samples.
NAME          := homogeneous
TASK          := arc-easy
SERVER        := gemma3-270m
CLIENT_MODELS := smollm2-135m smollm2-135m smollm2-135m smollm2-135m
SEED          := 42
PUBLIC_SIZE   := 100
CLIENT_SIZE   := 50
EVAL_SIZE     := 100
CLIENT_LR     := 2e-4
SERVER_LR     := 1e-4
BASELINES     := zero-shot standalone centralized fedavg
