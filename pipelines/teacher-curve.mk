# The regime experiments' second arm (results/README.md, `make teacher-curve`): how much a
# SmolLM2 client with about 100 private samples gains from a frozen teacher, by the teacher's
# advantage over it. The teacher (SERVER: SmolLM2, the same tokenizer, or Gemma-3, across
# tokenizers) is fine-tuned on TEACHER_SHARDS train parts that no client holds (mk/teacher.mk)
# and then frozen; the client distils from its knowledge of the public set after its private
# phase, against the same schedule without KD (FedMKT-noKD). The paper's protocol otherwise
# (one-to-one.mk: ARC's test split, the swept rates), with the train split cut in six parts
# (public set, the client's part, four for the teachers).
include pipelines/one-to-one.mk
NAME           := teacher-curve
PARTS          := 6
CLIENT_SIZE    := 100
SERVER_LEARNS  := no
TEACHER_SHARDS ?= 1
BASELINES      := zero-shot nokd
# A SmolLM2 teacher trains at the client's swept rate, Gemma-3 at its own (one-to-one.mk).
SERVER_LR       = $(if $(filter smollm2-135m,$(SERVER)),1e-3,2e-4)
