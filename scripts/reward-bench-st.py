#!/usr/bin/env python3
"""sentence-transformers' all-MiniLM-L6-v2 throughput on the texts of the crate's
`throughput_figure` test (crates/ganglion-reward/tests/it/embeddings.rs), for comparison.

    scripts/bench-reward-venv && .venv-reward/bin/python scripts/reward-bench-st.py [threads]
"""
import os, sys, time
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
home = Path(os.environ.get("GANGLION_HOME") or Path.home() / ".ganglion")
model = SentenceTransformer(str(home / "models" / "all-MiniLM-L6-v2"), device="cpu")
vocab = ["bees", "dance", "flowers", "direction", "sun", "distance", "hive", "nectar"]
texts = [" ".join(vocab[(i + w * 3) % 8] for w in range(60 + (i * 7) % 61)) for i in range(64)]
model.encode(texts[:8], batch_size=32, normalize_embeddings=True)
best = float("inf")
for _ in range(3):
    start = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True)
    best = min(best, time.perf_counter() - start)
print(f"sentence-transformers {threads} threads: {len(texts)} texts in {best*1000:.0f} ms = {len(texts)/best:.1f} texts/s")
