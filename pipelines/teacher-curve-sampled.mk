# Arm 2's first variant (results/README.md): sampled KD at the same K (TEACHER_SAMPLING=yes:
# TOP_K draws from the teacher's distribution instead of its top-K) at one point of the curve,
# the strongest teacher (SmolLM2 on 4 parts) and the student with no labels at λ = 0, beside
# the same point's top-K in results/teacher-curve/.
include pipelines/teacher-curve.mk
NAME             := teacher-curve-sampled
TEACHER_SAMPLING := yes
CURVE_SERVERS    := smollm2-135m
CURVE_SHARDS     := 4
CURVE_CONFIGS    := no:0
CURVE_BESIDE     := teacher-curve
