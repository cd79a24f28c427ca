"""Reference logits from llama.cpp (llama-cpp-python) for tests/it/gemma3.rs.

usage: llama_cpp_logits.py MODEL.gguf REQUEST.json OUT_DIR

REQUEST.json: {"prompts": [[text, first], ...], "greedy": n}. For prompt i, writes
OUT_DIR/i.f32: the log-softmax of the logits at positions first.., (positions, vocab)
little-endian float32; and prints one JSON line per prompt: {"tokens": [ids, BOS first],
"first": first, "greedy": [n ids chosen by argmax], "margins": [top-1 minus top-2 logit at each greedy step]}.
Tokenizing here keeps the Rust test independent of our own tokenizer.
"""
import json
import os
import sys

import numpy as np
from llama_cpp import Llama

model, request, out_dir = sys.argv[1:4]
req = json.load(open(request))
llm = Llama(model_path=model, logits_all=True, n_ctx=608, n_batch=608, n_threads=2, verbose=False, seed=0)
for i, (text, first) in enumerate(req["prompts"]):
    tokens = llm.tokenize(text.encode(), add_bos=True, special=False)
    first = first if first >= 0 else max(0, len(tokens) + first)  # negative: the last -first
    llm.reset()
    llm.eval(tokens)
    logits = np.array(llm.scores[first : len(tokens)], dtype=np.float64)
    m = logits.max(axis=1, keepdims=True)
    logprobs = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    logprobs.astype("<f4").tofile(os.path.join(out_dir, f"{i}.f32"))
    greedy, margins = [], []
    row = llm.scores[len(tokens) - 1]
    for _ in range(req["greedy"]):
        top2 = np.partition(row, -2)[-2:]
        greedy.append(int(np.argmax(row)))
        margins.append(float(top2[1] - top2[0]))
        llm.eval([greedy[-1]])
        row = llm.scores[llm.n_tokens - 1]
    print(json.dumps({"tokens": tokens, "first": first, "greedy": greedy, "margins": margins}), flush=True)
