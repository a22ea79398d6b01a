#!/usr/bin/env python3
"""The Quantized Influence Measure's oracle (Tests/LQRAGTests/QIMTests).

The reference formula in numpy, as Rangan & Yin's published chatbot computes it
(`quantize_to_kbit` and `quantized_influence(arr1, arr2, k)`, called with the prompt's embedding as
arr1 and a passage's as arr2): both vectors quantized to k levels by
round((v - min) / (max - min) * (k - 1)) (numpy's round: half to even); for each distinct level u of
the query's levels, S the coordinates at u and y the passage's levels, the score is
sum_u (mean(y[S]) - mean(y))**2 * |S|**2 / (len(y) * std(y)), std with ddof 0. The inputs are float64
arrays of float32 values, as the reference receives lists of Python floats.

Where the reference divides by zero (a constant vector: max == min, or a passage whose levels are all
equal: std 0) its value is not finite; those cases carry "guarded": true and the value lqlora defines
(a constant vector is all level 0; std 0 scores 0), computed here from that definition.

Usage: python3 scripts/make-qim-fixtures.py   (numpy; with all-MiniLM-L6-v2 under models/ and
  sentence-transformers importable, also real embeddings of a question and its candidates;
  .venv-st from scripts/make-embedding-fixtures.py has both)
Writes Tests/LQRAGTests/Fixtures/qim.json: cases of {name, k, query, passage, score, swapped, guarded},
`swapped` being the score with the two vectors exchanged (so a test can tell which one is d_q).
"""
import json
import os
import warnings

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "Tests", "LQRAGTests", "Fixtures", "qim.json")
MINILM = os.path.join(ROOT, "models", "all-MiniLM-L6-v2")


def levels(v, k):
    lo, hi = v.min(), v.max()
    return np.round((v - lo) / (hi - lo) * (k - 1)).astype(int)


def reference(query, passage, k):
    """The published formula; not finite where it divides by zero."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        x, y = levels(query, k), levels(passage, k)
        y_bar = np.mean(y)
        terms = [(np.mean(y[x == u]) - y_bar) ** 2 * len(y[x == u]) ** 2 for u in np.unique(x)]
        return float(np.sum(terms) / (len(y) * np.std(y)))


def guarded(query, passage, k):
    """lqlora's definition where the reference divides by zero."""
    def lv(v):
        return np.zeros(len(v), dtype=int) if v.max() == v.min() else levels(v, k)
    x, y = lv(query), lv(passage)
    if np.std(y) == 0:
        return 0.0
    terms = [(np.mean(y[x == u]) - np.mean(y)) ** 2 * len(y[x == u]) ** 2 for u in np.unique(x)]
    return float(np.sum(terms) / (len(y) * np.std(y)))


def case(name, query, passage, k=16):
    q = np.asarray(query, dtype=np.float32).astype(np.float64)
    p = np.asarray(passage, dtype=np.float32).astype(np.float64)
    score, swapped = reference(q, p, k), reference(p, q, k)
    needs_guard = not np.isfinite(score) or q.max() == q.min() or p.max() == p.min()
    if needs_guard:
        score, swapped = guarded(q, p, k), guarded(p, q, k)
    return {"name": name, "k": k, "query": [float(v) for v in q], "passage": [float(v) for v in p],
            "score": score, "swapped": swapped, "guarded": bool(needs_guard)}


def main():
    rng = np.random.default_rng(0)
    cases = []
    for i in range(3):
        q = rng.standard_normal(384).astype(np.float32)
        # Passages from near the query to unrelated.
        p = (q * (1 - i / 2) + rng.standard_normal(384) * (i / 2 + 0.1)).astype(np.float32)
        cases.append(case(f"normal 384 #{i}", q / np.linalg.norm(q), p / np.linalg.norm(p)))
    cases.append(case("small, 7 coordinates", [0.3, -1.2, 2.5, 0.0, 0.7, -0.4, 1.1], [1.0, 0.2, -0.3, 2.2, 0.1, 0.9, -1.5]))
    cases.append(case("uniform 64, k 8", rng.uniform(-1, 1, 64), rng.uniform(-1, 1, 64), k=8))
    cases.append(case("uniform 100, k 4", rng.uniform(0, 1, 100), rng.uniform(0, 1, 100), k=4))
    # Exact halves at k = 3: (1 - 0) / 4 * 2 = 0.5 rounds to 0 (half to even), 3/4 * 2 = 1.5 to 2.
    cases.append(case("halves, k 3", [0, 1, 3, 4, 2, 1, 3], [4, 3, 1, 0, 1, 2, 3], k=3))
    cases.append(case("halves swapped, k 3", [4, 3, 1, 0, 1, 2, 3], [0, 1, 3, 4, 2, 1, 3], k=3))
    cases.append(case("identical", [0.5, -0.25, 1.0, 0.125, -1.0, 0.75], [0.5, -0.25, 1.0, 0.125, -1.0, 0.75]))
    cases.append(case("constant passage (std 0)", [0.1, 0.9, -0.4, 0.3], [0.25, 0.25, 0.25, 0.25]))
    cases.append(case("constant query", [0.5, 0.5, 0.5, 0.5], [0.1, 0.9, -0.4, 0.3]))
    cases.append(case("levels of one value but the extremes", [0, 1, 1, 1, 2], [0, 5, 5, 5, 10], k=16))

    real = []
    try:
        from sentence_transformers import SentenceTransformer
        if os.path.exists(os.path.join(MINILM, "model.safetensors")):
            model = SentenceTransformer(MINILM, device="cpu")
            question = "When was Rome founded?"
            passages = ["Rome was founded, according to legend, in 753 BC by Romulus.",
                        "Rome is the capital city of Italy.",
                        "Paris is the capital and most populous city of France.",
                        "The quick brown fox jumps over the lazy dog."]
            e = model.encode([question] + passages, convert_to_numpy=True).astype(np.float32)
            real = [case(f"all-MiniLM-L6-v2: {question!r} vs {p!r}", e[0], e[i + 1]) for i, p in enumerate(passages)]
    except ImportError:
        pass
    if not real:
        print("make-qim-fixtures: no all-MiniLM-L6-v2 cases (model or sentence-transformers missing)")
    cases += real

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"numpy": np.__version__, "cases": cases}, f)
        f.write("\n")
    print(f"make-qim-fixtures: {len(cases)} cases -> {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
