# Arm 2's second variant (results/README.md): `select --fallback self` (a sample the student
# wins over the teacher is distilled towards the student's own top-K, as the authors' code
# does, instead of the paper's rule, which leaves it out of KD) at the point of the first
# variant, beside the same point's paper rule in results/teacher-curve/.
include pipelines/teacher-curve.mk
NAME            := teacher-curve-fallback-self
SELECT_FALLBACK := self
CURVE_SERVERS   := smollm2-135m
CURVE_SHARDS    := 4
CURVE_CONFIGS   := no:0
CURVE_BESIDE    := teacher-curve
