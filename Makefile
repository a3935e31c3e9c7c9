# fedmkt: chains the tools into FedMKT rounds. Recipes only call tools; every step is a file.
#   make test                      build everything and run the test suite (downloads only flwr and pyarrow, pinned)
#   make setup                     fetch real models and data into assets/, import and prepare them
#   make round ROUND=N [PIPELINE=pipelines/NAME.mk]
#   make report | seeds SEEDS="1 2 3" | tasks TASKS="arc-easy boolq" | sweep-lr   full reports
#   make round SELECT=examples/select_margin.py   any stage swapped for another program (mk/settings.mk)
#   make results/<setting>/<task>/report.md | results/teacher-curve/<task>/curve.md   committed cells
#   make testdata                  regenerate testdata/ (seeded; outputs are committed)
#   make <files> PARTY=server|client-k   one party's files only (a node of a federation; see PARTY)
#   make check-real                acceptance checks on the real models and data
#   make check-real-models         real models against PyTorch + transformers (installs them)
#   make bench                     benchmarks, each printing its ratio against a baseline
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:

include mk/settings.mk   # the pipeline, its defaults, the stages

.PHONY: all kd measure-kd-estimates build build-cuda cuda-bundle check-cuda test setup round federation report seeds grid tasks sweep-lr teacher-curve baselines measure-logit-storage FORCE testdata testdata-fixtures check-real check-real-models bench bench-infer bench-vocab bench-distill bench-eval gemm-rate clean
all: build


comma := ,

# Each concern in its own file, in the order a round needs them.
include mk/dev.mk         # build, test, testdata, checks on the real assets
include mk/setup.mk       # real models and data, the run's settings, tokens, vocabulary maps
include mk/round.mk       # a FedMKT round, in Algorithm 1's order
include mk/teacher.mk     # a frozen teacher of graded strength (TEACHER_SHARDS)
include mk/fedcollm.mk    # a FedCoLLM round (METHOD=FedCoLLM): secure aggregation, KD both ways
include mk/baselines.mk   # Zero-Shot, Standalone, Centralized, FedAvg, FedMKT-noKD, LLM2SLM
include mk/kd.mk          # what KD did: measure-kd before and after each KD phase
include mk/report.mk      # the report, seeds, tasks, committed cells under results/
include mk/sweeps.mk      # learning-rate sweeps and measurements
include mk/federation.mk  # every party its own Flower node
include mk/cuda.mk        # the CUDA build and its check on a GPU machine
include mk/bench.mk       # benchmarks against PyTorch
