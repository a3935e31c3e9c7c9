# FedCoLLM on the tiny test models with three clients and a secure-aggregation threshold of 2,
# so that one client may drop out of a round (the federation test of the dropout path).
include pipelines/tiny.mk
NAME             := tiny-fedcollm
METHOD           := FedCoLLM
CLIENT_MODELS    := tiny-gemma3 tiny-gemma3 tiny-gemma3
SECAGG_THRESHOLD := 2
