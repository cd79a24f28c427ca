#!/usr/bin/env python3
"""Regenerate tests/fixtures/smollm2_tokenizer.json: reference (text -> ids) vectors.

The reference is Hugging Face `tokenizers`, configured exactly like SmolLM2's own
tokenizer.json (byte-level BPE, pre-tokenizer Sequence[Digits(individual_digits=True),
ByteLevel(add_prefix_space=False, use_regex=True)], the control tokens as special added
tokens), with the vocabulary and merges read from the GGUF itself with the `gguf` package.
When `transformers` can load the GGUF too, its ids are cross-checked against the first
reference and the script fails on any disagreement.

Run it in a throwaway venv, never the project's:
    python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install tokenizers gguf transformers
    /tmp/tokvenv/bin/python crates/ganglion-engine/scripts/gen_tokenizer_fixture.py \
        ~/.ganglion/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        crates/ganglion-engine/tests/fixtures/smollm2_tokenizer.json
"""
import json
import os
import sys

import gguf
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

CASES = [
    "",
    "Hello, world!",
    "Hello world",
    " leading space",
    "trailing space ",
    "double  space and   triple",
    "tabs\tand\nnewlines\n\n\nand \n mixed \t\n",
    "The year 2024 has 365 days; pi is 3.14159.",
    "1234567890",
    " 42 apples and 7 pears",
    "I'm sure you'll see they're right, we've done it, he'd say, it's 'quoted'.",
    "DON'T SHOUT I'LL",
    "naïve café déjà vu — Straße Œuvre",
    "e\u0301 combining acute, a\u0308",
    "日本語のテキスト、中文文本。한국어",
    "Emoji: 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
    "Ελληνικά и русский текст",
    "मानक हिन्दी",
    "Ünïcödé ½ ² ③ Ⅻ",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "if (a != b && c >= 0) { x += 1; } // comment",
    "https://example.com/path?query=1&b=2#frag",
    "email@example.org, @user #hashtag $100 50% ~tilde^",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text after special<|im_end|>",
    "not special: <|im_start and <im_end|>",
    "<repo_name>ganglion<file_sep>src/main.rs",
    "     ",
    "\n",
    " \n ",
    "a\u00a0b non-breaking\u2003em space",
    "zero\u200bwidth joiner",
    "CamelCaseIdentifiersAndsnake_case_names",
    "....!!!???,,,;;;",
    "'s 't 're 've 'm 'll 'd",
    "x" * 64,
    "The quick brown fox jumps over the lazy dog. " * 3,
    "\u0000control\u0007chars\u001b[0m",
    "bytes without a token: \u0004 and \u0006 are dropped",
    "Ｆｕｌｌｗｉｄｔｈ ｃｈａｒａｃｔｅｒｓ",
    "mixed123numbers456in789words",
    "−5 minus sign vs -5 hyphen, 1e-10, 0x1F",
]


def field(reader, key):
    f = reader.fields[key]
    return f.contents()


def reference_tokenizer(path):
    reader = gguf.GGUFReader(path)
    tokens = field(reader, "tokenizer.ggml.tokens")
    merges = field(reader, "tokenizer.ggml.merges")
    types = field(reader, "tokenizer.ggml.token_type")
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3]
    tok.add_special_tokens(specials)
    return tok


def transformers_ids(path, texts):
    try:
        from transformers import AutoTokenizer
    except Exception as err:  # transformers is an optional cross-check
        print(f"transformers unavailable ({err}); skipping the cross-check", file=sys.stderr)
        return None
    try:
        t = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    except Exception as err:
        print(f"transformers could not load the GGUF ({err}); skipping the cross-check", file=sys.stderr)
        return None
    return [t.encode(s, add_special_tokens=False) for s in texts]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: gen_tokenizer_fixture.py MODEL.gguf OUT.json")
    path, out = sys.argv[1], sys.argv[2]
    tok = reference_tokenizer(path)
    cases = []
    for text in CASES:
        ids = tok.encode(text, add_special_tokens=False).ids
        # Bytes with no byte-level token (0x04, 0x06, … in SmolLM2) are dropped, as HF does
        # without an unknown token; every other text must round-trip.
        if not any(b in (0x04, 0x06, 0x13, 0x14, 0x16, 0x1D) for b in text.encode()):
            assert tok.decode(ids, skip_special_tokens=False) == text, text
        cases.append({"text": text, "ids": ids})
    cross = transformers_ids(path, CASES)
    if cross is not None:
        bad = [(c["text"], c["ids"], x) for c, x in zip(cases, cross) if c["ids"] != x]
        for text, a, b in bad:
            print(f"MISMATCH {text!r}\n tokenizers:   {a}\n transformers: {b}", file=sys.stderr)
        if bad:
            sys.exit(f"{len(bad)} cases disagree between tokenizers and transformers")
        print(f"transformers agrees on all {len(cases)} cases", file=sys.stderr)
    doc = {
        "source": "scripts/gen_tokenizer_fixture.py",
        "model": os.path.basename(path),
        "cases": cases,
    }
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
