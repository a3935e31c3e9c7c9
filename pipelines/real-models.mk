# Settings shared by the pipelines on the real models (included by each; a pipeline's own
# lines after the include override these). The paper's runs use 7B/1B models and the full
# splits; these are seeded samples of each split, sized for a CPU.
TASK          := arc-easy
SERVER        := gemma3-270m
SEED          := 42
PUBLIC_SIZE   := 100
CLIENT_SIZE   := 50
EVAL_SIZE     := 100
CLIENT_LR     := 2e-4
SERVER_LR     := 1e-4
