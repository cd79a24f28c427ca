#!/usr/bin/env python3
"""A small, independent Python reference of the reward pipeline's formulas, written from
../shared/spec/evaluators.md part B (openvalidators 1.2.0): running normalisation, the moving
average, the task-validator and blacklist masks, the diversity sigmoids with the bounded
history and the relevance bound. It writes worked examples (inputs and outputs) to
crates/ganglion-reward/tests/fixtures/reward_worked.json, which the crate's tests compare with.
Plain Python (no numpy, no torch), deterministic.

    python3 scripts/reward-reference.py

One documented departure from the original, also in the crate: the variance of a batch of one
reward is 0 (the original's torch.var gives NaN, which then stays in the running variance).
"""
import json, math, random, struct
from pathlib import Path

out = Path(__file__).resolve().parent.parent / "crates/ganglion-reward/tests/fixtures/reward_worked.json"
rng = random.Random(20230701)

# --- running normalisation ------------------------------------------------------------------
def normalize_sequence(batches, limit=3000):
    mean, var, count = 0.0, 0.0, 0
    outs = []
    for rewards in batches:
        n = len(rewards)
        if n > 0:
            m = sum(rewards) / n
            v = sum((r - m) ** 2 for r in rewards) / (n - 1) if n > 1 else 0.0
            wn, wo = n / (count + n), count / (count + n)
            diff = m - mean
            mean = wn * m + wo * mean
            var = wn * v + wo * var + wn * wo * diff * diff
            count = min(limit, count + n)
        z = [(r - mean) / math.sqrt(var) if var > 0 else (r - mean) for r in rewards]
        outs.append({"rewards": rewards, "normalized": [0.5 * (1 + math.erf(x / math.sqrt(2))) for x in z],
                     "mean": mean, "var": var, "count": count})
    return outs

norm_batches = [[1.0, 2.0, 3.0, 4.0], [10.0], [0.5, 0.5, 2.0], [], [-11.0, -3.5, -2.25, -1.0, -0.75]]
norm_batches += [[rng.gauss(-2.0, 0.7) for _ in range(50)] for _ in range(70)]  # passes N = 3000
normalization = normalize_sequence(norm_batches)

# --- moving average -------------------------------------------------------------------------
scores = [rng.random() for _ in range(16)]
initial_scores = list(scores)
updates = [([3, 7, 0], [1.0, 0.25, 0.0]), ([7, 15], [0.5, 0.9]), ([2], [0.0])]
ma_steps = []
for uids, rewards in updates:
    for u, r in zip(uids, rewards):
        scores[u] = 0.05 * r + 0.95 * scores[u]
    ma_steps.append({"uids": uids, "rewards": rewards, "scores": list(scores)})

# --- task validator ---------------------------------------------------------------------------
SUMMARY = ["Summary:", "Paraphrase:", "Paraphrasing:", "Paraphrased:"]
QUESTION = ["Question:", "Query:", "Q:"]
ANSWER = ["Answer:", "Response:", "A:", "Completion:"]
def task(name, c):
    lc = c.lower()
    a = any(k.lower() in lc for k in ANSWER)
    q = any(k.lower() in lc for k in QUESTION)
    s = any(k.lower() in lc for k in SUMMARY)
    summ, ques, ans = name == "augment", name.startswith("followup"), name.startswith("answer")
    if (summ or ques) and a: return 0.0
    if (summ or ans) and q: return 0.0
    if not summ and s: return 0.0
    return 1.0
texts = ["The bees dance to show where the flowers are.", "Summary: bees dance.", "Q: why do bees dance?",
         "What do bees eat?", "ANSWER: nectar", "The data: 42", "paraphrasing: the bees", "Response: none",
         "query: none", "Completion: yes", "", "Questions remain open.", "Bees; q:uestions"]
names = ["augment", "followup0", "followup3", "answer0", "answer2"]
task_cases = [{"name": n, "completion": t, "mask": task(n, t)} for n in names for t in texts]

# --- blacklist --------------------------------------------------------------------------------
questions, answers = ["What is the role of the queen?"], ["The queen lays eggs."]
prompt = "Context about bees."
def blacklist(c):
    if c in ["That is an excellent question."] or c in questions or c in answers: return 0.0
    if c == prompt: return 0.0
    return 1.0
bl_texts = ["That is an excellent question.", "What is the role of the queen?", "The queen lays eggs.",
            "Context about bees.", "Context about bees", "A different answer.", "that is an excellent question."]
blacklist_cases = {"prompt": prompt, "questions": questions, "answers": answers,
                   "cases": [{"completion": t, "mask": blacklist(t)} for t in bl_texts]}

# --- diversity --------------------------------------------------------------------------------
def unit(v):
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    # Rounded to float32, so that both sides start from the same numbers.
    return [struct.unpack("<f", struct.pack("<f", x / n))[0] for x in v]
def cos(a, b):
    d = sum(x * y for x, y in zip(a, b)); na = math.sqrt(sum(x * x for x in a)); nb = math.sqrt(sum(y * y for y in b))
    return 0.0 if na == 0 or nb == 0 else d / (na * nb)
def kth(e, others, k=2):
    d = sorted(1 - abs(cos(e, o)) for o in others)
    return d[k - 1] if len(d) >= k else 1.0
def batch_sig(d): return 1 / (1 + math.exp(-40 * d + 4))
def hist_sig(d): return 1 / (1 + math.exp(-1000 * d + 50))
dim = 6
base = [unit([rng.gauss(0, 1) for _ in range(dim)]) for _ in range(8)]
history = []
div_steps = []
for step in range(17):
    batch = []
    for i in range(40):
        if i % 13 == 5 and batch:
            batch.append(list(batch[-1]))  # a consecutive duplicate
        else:
            b = base[rng.randrange(len(base))]
            batch.append(unit([x + rng.gauss(0, 0.15) for x in b]))
    bat = [batch_sig(kth(e, batch)) for e in batch]
    if len(history) >= 502:
        past = history[500:]
        his = [hist_sig(kth(e, past)) for e in batch]
        mask = [b * h for b, h in zip(bat, his)]
    else:
        his, mask = None, bat
    uniq = [batch[0]] + [e for p, e in zip(batch, batch[1:]) if e != p]
    history = (history + uniq)[-15500:]
    div_steps.append({"embeddings": batch, "batch": bat, "history": his, "mask": mask, "history_len": len(history)})

doc = {"generated_by": "python3 scripts/reward-reference.py", "normalization": normalization,
       "moving_average": {"initial": initial_scores, "steps": ma_steps},
       "task_validator": task_cases, "blacklist": blacklist_cases, "diversity": div_steps}
out.write_text(json.dumps(doc, ensure_ascii=False) + "\n")
print(f"wrote {out}")
