#!/usr/bin/env python3
"""Writes crates/ganglion-reward/tests/fixtures/minilm_golden.json: sentence-transformers'
embeddings of a fixed set of texts with all-MiniLM-L6-v2 (the model directory installed by
scripts/install-minilm), the reference the crate's candle BERT is tested against.

Run (PyTorch is a multi-gigabyte install, kept in its own venv):
    scripts/bench-reward-venv && scripts/install-minilm
    .venv-reward/bin/python scripts/reward-golden.py
"""
import json, os, sys
from pathlib import Path

import sentence_transformers
import tokenizers
import torch
from sentence_transformers import SentenceTransformer

root = Path(__file__).resolve().parent.parent
home = Path(os.environ.get("GANGLION_HOME") or Path.home() / ".ganglion")
model_dir = home / "models" / "all-MiniLM-L6-v2"
out = root / "crates/ganglion-reward/tests/fixtures/minilm_golden.json"

long_text = " ".join(
    f"Sentence number {i} talks about the river, the bank of the river and the money in the bank."
    for i in range(60)
)
texts = [
    "The quick brown fox jumps over the lazy dog.",
    "A fast auburn fox leaps above a sleepy hound.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Question: What is the capital of France?\nAnswer: Paris is the capital of France.",
    "Summary: the context describes how bees communicate the location of flowers by dancing.",
    "",
    "a",
    "!!!???...",
    "UPPER CASE AND lower case ARE THE SAME FOR AN UNCASED MODEL",
    "Ünïcödé àccents, 中文字符, emoji 🚀 and the Greek letter λ.",
    "  leading and trailing whitespace\t\n  ",
    "keyword keyword keyword keyword keyword keyword keyword keyword keyword keyword",
    "The mitochondria is the powerhouse of the cell; it produces ATP through oxidative phosphorylation.",
    "In 1969, Apollo 11 landed on the Moon and Neil Armstrong became the first person to walk on it.",
    "I cannot answer that question.",
    "To bake bread, mix flour, water, salt and yeast, knead the dough, let it rise, then bake it at 220 °C.",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    long_text,
]

model = SentenceTransformer(str(model_dir), device="cpu")
emb = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
tok = model.tokenizer
doc = {
    "generated_by": "scripts/reward-golden.py",
    "command": ".venv-reward/bin/python scripts/reward-golden.py",
    "sentence_transformers": sentence_transformers.__version__,
    "torch": torch.__version__,
    "tokenizers": tokenizers.__version__,
    "max_seq_length": model.max_seq_length,
    "cases": [
        {
            "text": t,
            "token_ids": tok(t, truncation=True, max_length=model.max_seq_length)["input_ids"],
            "embedding": [float(f"{x:.8g}") for x in e.tolist()],
        }
        for t, e in zip(texts, emb)
    ],
}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
print(f"wrote {out} ({len(texts)} texts)", file=sys.stderr)
