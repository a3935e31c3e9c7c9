# FedCoLLM (the sibling paper): homogeneous clients fine-tune one SLM on their shards, the
# server learns only the weighted sum of their LoRA adapters (secure aggregation: X25519 pair
# masks, self masks, Shamir shares; 3 of 4 clients suffice to unmask), then the LLM and the
# averaged SLM distil into each other on the public set, and the distilled SLM goes back to
# every client. Paper: LLaMA2-7B / GPT-2 family; substituted: Gemma-3-270M server, four
# SmolLM2-135M clients, ARC-Easy samples. Differs from the paper in one point: both KD
# directions keep only the samples where the teacher beats the student (DualMinCE, as FedMKT).
include pipelines/real-models.mk
# The paper's protocol (five parts, ARC's whole test split, the swept rates), as the FedMKT cells:
# `make results/fedcollm/arc-easy/report.md` commits it as a cell.
include pipelines/paper-protocol.mk
NAME          := fedcollm
METHOD        := FedCoLLM
CLIENT_MODELS := smollm2-135m smollm2-135m smollm2-135m smollm2-135m
SECAGG_THRESHOLD := 3
BASELINES     := zero-shot standalone centralized fedavg nokd
