#!/usr/bin/env python3
"""sentence-transformers' all-MiniLM-L6-v2 throughput, for comparison with ours.

    scripts/bench-reward-venv && .venv-reward/bin/python scripts/reward-bench-st.py [threads]
        [--texts FILE] [--repeats N] [--json]

With --texts (a JSON list of strings; `ganglion bench reward` writes its corpus texts there)
those texts are embedded, else the texts of the crate's `throughput_figure` test
(crates/ganglion-reward/tests/it/embeddings.rs). Batches of 32, normalised, as the
validator embeds them; best of --repeats runs after a warm-up batch.
"""
import argparse, json, os, sys, time
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer

parser = argparse.ArgumentParser()
parser.add_argument("threads", nargs="?", type=int, default=2)
parser.add_argument("--texts")
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--json", action="store_true")
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)
home = Path(os.environ.get("GANGLION_HOME") or Path.home() / ".ganglion")
model = SentenceTransformer(str(home / "models" / "all-MiniLM-L6-v2"), device="cpu")
if args.texts:
    texts = json.loads(Path(args.texts).read_text())
else:
    vocab = ["bees", "dance", "flowers", "direction", "sun", "distance", "hive", "nectar"]
    texts = [" ".join(vocab[(i + w * 3) % 8] for w in range(60 + (i * 7) % 61)) for i in range(64)]
model.encode(texts[:8], batch_size=32, normalize_embeddings=True)
best = float("inf")
for _ in range(max(1, args.repeats)):
    start = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True)
    best = min(best, time.perf_counter() - start)
if args.json:
    print(json.dumps({"threads": torch.get_num_threads(), "texts": len(texts), "seconds": best,
                      "texts_per_s": len(texts) / best, "torch": torch.__version__}))
else:
    print(f"sentence-transformers {args.threads} threads: {len(texts)} texts in {best*1000:.0f} ms = {len(texts)/best:.1f} texts/s")
