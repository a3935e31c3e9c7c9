"""Golden values for fedmkt's statistics (tools/fedmkt/src/stats.rs) from scipy and numpy.

McNemar's exact test is scipy's two-sided exact binomial test on the discordant pairs;
percentiles are numpy's default (linear) interpolation. Writes testdata/golden/stats.json.
"""
import json
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

PAIRS = [(0, 1), (1, 5), (3, 3), (7, 19), (12, 30), (40, 41), (100, 140), (250, 300), (0, 60), (600, 700)]
VALUES = [0.3, -1.2, 4.5, 2.0, 2.0, 0.0, 7.25, -3.5, 1.0, 9.0, 0.5]

out = {
    "mcnemar": [{"b": b, "c": c, "p": binomtest(b, b + c, 0.5).pvalue} for b, c in PAIRS],
    "percentile": {"values": VALUES, "q": [2.5, 50.0, 97.5],
                   "result": [float(np.percentile(VALUES, q)) for q in (2.5, 50.0, 97.5)]},
}
path = Path(__file__).resolve().parents[1] / "golden" / "stats.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print(f"wrote {path}")
