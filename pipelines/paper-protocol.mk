# The paper's protocol (App. D), shared by the paper pipelines (one-to-one, homogeneous,
# heterogeneous): included after real-models.mk, before a pipeline's own lines.
# Full splits: the train split cut into five equal parts (public set + four shards; PARTS,
# also for one-to-one), evaluated on ARC's labelled test splits (2,376 ARC-Easy / 1,172
# ARC-Challenge samples; validation is then for sweeps only), on the validation split of
# the other tasks (CommonsenseQA 1,221, BoolQ 3,270; RTE's 55 held-out samples are too few
# to conclude anything).
PUBLIC_SIZE   :=
CLIENT_SIZE   :=
EVAL_SIZE     :=
EVAL_SPLIT    := $(if $(filter arc-easy arc-challenge,$(TASK)),test,validation)
# Sweeps score on ARC's validation split; elsewhere (validation is the eval split) on 500
# train samples held out of every part before the five are cut.
ARC           := $(filter arc-easy arc-challenge,$(TASK))
HOLDOUT       := $(if $(ARC),,500)
SWEEP_SPLIT   := $(if $(ARC),validation,holdout)
# App. D.1: LoRA r 8, alpha 16, dropout 0.05; batch 4, AdamW (0.9, 0.95), warm-up 0.008,
# weight decay 0.1, grad norm 1.0 (distill's defaults); λ 0.9; one local epoch for both.
LAMBDA         := 0.9
PRIVATE_EPOCHS := 1
DISTILL_EPOCHS := 1
# The LLM's rate: the paper's is 2e-5 on ARC-E, 3e-5 on the other tasks. Gemma-3-270M needs
# more. `make sweep-lr SWEEP_PARTY=server PIPELINE=pipelines/one-to-one.mk SWEEP_LRS="2e-5 5e-5
# 1e-4 2e-4 4e-4"` (Standalone on the public set, seed 42, all 570 ARC-Easy validation
# samples) gave acc 56.8 / 57.7 / 59.8 / 60.4 / 60.5 %. Paired, 2e-4 beats 2e-5 by +3.5 pp
# [+1.2, +6.0] (McNemar p = 0.007, gold log-lik/byte +0.064) and ties 4e-4 (−0.2 pp, p = 1.0;
# −0.002 nats): 2e-4, where accuracy plateaus, on ARC-Easy. On ARC-Challenge (`TASK=arc-challenge
# SWEEP_LRS="3e-5 1e-4 2e-4 4e-4"`, all 299 validation samples; results/sweeps/one-to-one/
# arc-challenge/server-lr/) every rate is at chance (acc 25.4 / 26.1 / 26.1 / 24.7 %), and gold
# log-lik/byte (−0.675 / −0.632 / −0.623 / −0.623) plateaus at the same place: against 2e-4,
# 3e-5 −0.052 [−0.062, −0.042], 1e-4 −0.008 [−0.012, −0.004], 4e-4 +0.001 [−0.002, +0.003].
# 2e-4 on every task: CommonsenseQA and BoolQ have no sweep of their own (on the holdout
# split, ~1 CPU-hour a rate for CommonsenseQA's 1,848 public samples).
SERVER_LR     := 2e-4
# The SLM's rate: the paper gives its llama-family SLM (Sheared-LLaMA-1.3B, as SmolLM2 a llama)
# the LLM's rate, and other SLMs 3e-5..3e-4. SmolLM2-135M needs more: `make sweep-lr
# PIPELINE=pipelines/one-to-one.mk SWEEP_LRS="1e-4 2e-4 3e-4 5e-4 1e-3 2e-3 4e-3"` (Standalone
# on client-1's shard, seed 42, all 570 ARC-Easy validation samples; results/sweeps/one-to-one/
# arc-easy/client-lr/) gave acc 58.8 / 60.5 / 62.3 / 62.6 / 63.9 / 63.3 / 61.9 % and gold
# log-lik/byte −0.623 / −0.551 / −0.531 / −0.518 / −0.506 / −0.505 / −0.520. Paired against 1e-3
# (`report results --result Standalone-lr-<rate>,-,client-1=…/lr-<rate>.parquet … --subject
# Standalone-lr-1e-3`): 2e-4 −3.3 pp [−6.0, −0.7] (McNemar p = 0.018, −0.044 nats/byte),
# 5e-4 −1.2 pp (p = 0.25), 2e-3 −0.5 pp (p = 0.68, +0.001), 4e-3 −1.9 pp (p = 0.17, −0.014
# [−0.023, −0.005]): 1e-3, the peak of both metrics, applied to every method. (An earlier
# sweep on 100 samples had chosen 2e-4 at its edge.)
CLIENT_LR     := 1e-3
