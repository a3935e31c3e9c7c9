# The tiny round with a client of each family we run beside llama and Gemma-3 (Hugging Face
# folders written by transformers, testdata/reference/tiny_families.py): a llama server and
# Mistral (sliding window 8), Qwen2 and Qwen3 clients, all with tiny-llama's tokenizer.
include pipelines/tiny.mk
NAME          := tiny-families
CLIENT_MODELS := tiny-mistral tiny-qwen2 tiny-qwen3
HF_tiny-mistral := testdata/models/tiny-mistral
HF_tiny-qwen2   := testdata/models/tiny-qwen2
HF_tiny-qwen3   := testdata/models/tiny-qwen3
