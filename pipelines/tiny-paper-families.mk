# The tiny round with a client of each SLM family of the paper's heterogeneous setting
# (Table 1: GPT-2-xlarge, OPT-1.3B, Bloom-1.1B beside a LLaMA server): tiny random GPT-2, OPT
# and Bloom written by transformers (testdata/reference/tiny_families.py), Hugging Face
# folders linked into the run, all with tiny-llama's tokenizer; each client adapts its
# family's default modules (c_attn, q_proj/v_proj, query_key_value).
include pipelines/tiny.mk
NAME          := tiny-paper-families
CLIENT_MODELS := tiny-gpt2 tiny-opt tiny-bloom
HF_tiny-gpt2  := testdata/models/tiny-gpt2
HF_tiny-opt   := testdata/models/tiny-opt
HF_tiny-bloom := testdata/models/tiny-bloom
