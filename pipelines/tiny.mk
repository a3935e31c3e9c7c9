# The round on the tiny test models of testdata/ (seconds, no download): the end-to-end
# test of `make test` runs it. A llama-architecture server, two clients of the other
# architecture and tokenizer (tiny Gemma-3), the ARC-Easy test fixture.
NAME          := tiny
TASK          := arc-easy
SERVER        := tiny-llama
CLIENT_MODELS := tiny-gemma3 tiny-gemma3
SEED          := 7
DATA_SOURCE   := testdata/data/olmo
DATA_DEP      :=
GGUF_tiny-llama  := testdata/models/tiny-llama.gguf
GGUF_tiny-gemma3 := testdata/models/tiny-gemma3.gguf
TOP_K         := 4
PRIVATE_EPOCHS := 2
DISTILL_EPOCHS := 2
CLIENT_LR     := 1e-2
SERVER_LR     := 1e-2
BATCH_SIZE    := 2
