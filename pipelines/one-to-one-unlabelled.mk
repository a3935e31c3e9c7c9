# The regime experiments' first arm (issue 35): the one-to-one setting with an unlabelled
# public set. Every party knows the public questions alone (tokenize --unlabelled), at every
# position, and its public-set phase trains on the other side's knowledge alone (λ = 0);
# DualMinCE compares the parties' losses on the question text. FedMKT-noKD then trains the
# same schedule on the question text's own loss (λ = 1), LLM2SLM distils the frozen LLM alone.
# The labelled one-to-one cell (results/one-to-one/arc-easy) is the comparison with labels.
include pipelines/one-to-one.mk
NAME          := one-to-one-unlabelled
PUBLIC_LABELS := no
