# The paper's homogeneous setting (Table 1): every client owns the same SLM, so FedAvg of
# their adapters is a baseline. Paper: LLaMA2-7B server, four Sheared-LLaMA-1.3B clients.
# Substituted: Gemma-3-270M server, four SmolLM2-135M clients.
include pipelines/real-models.mk
include pipelines/paper-protocol.mk
NAME          := homogeneous
CLIENT_MODELS := smollm2-135m smollm2-135m smollm2-135m smollm2-135m
BASELINES     := zero-shot standalone centralized fedavg nokd
