"""Interop check run by tests/interop.rs: the official `openai` client against `ganglion engine serve`.

Streams a chat completion with logprobs and a completion with logprobs, parses every chunk
with the client's own types, and prints one JSON summary line for the Rust test to check.
Usage: python interop_openai.py BASE_URL API_KEY MODEL
"""
import json
import sys

import openai


def main():
    base_url, api_key, model = sys.argv[1:4]
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=300)
    summary = {}

    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is 2+2?"}],
        max_tokens=12,
        temperature=0,
        seed=7,
        logprobs=True,
        top_logprobs=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, tokens, finish, usage = "", [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                text += choice.delta.content
            if choice.logprobs is not None and choice.logprobs.content:
                for lp in choice.logprobs.content:
                    assert len(lp.top_logprobs) == 3, lp
                    assert lp.logprob <= 0.0, lp
                    tokens.append(lp.token)
            if choice.finish_reason is not None:
                finish = choice.finish_reason
    assert usage is not None, "no usage chunk"
    assert usage.completion_tokens == len(tokens), (usage, len(tokens))
    summary["chat"] = {"text": text, "tokens": len(tokens), "finish": finish, "usage": usage.total_tokens}

    stream = client.completions.create(
        model=model,
        prompt="The capital of France is",
        max_tokens=6,
        temperature=0,
        logprobs=2,
        stream=True,
    )
    text, n, finish = "", 0, None
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.text
            if choice.logprobs is not None and choice.logprobs.tokens:
                n += len(choice.logprobs.tokens)
                assert all(isinstance(x, float) for x in choice.logprobs.token_logprobs)
            if choice.finish_reason is not None:
                finish = choice.finish_reason
    summary["completion"] = {"text": text, "tokens": n, "finish": finish}

    # Non-streaming with vLLM extensions, through the client's extra_body.
    resp = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=4,
        temperature=0,
        logprobs=True,
        extra_body={"return_tokens_as_token_ids": True, "prompt_logprobs": 1},
    )
    first = resp.choices[0].logprobs.content[0].token
    assert first.startswith("token_id:"), first
    extra = resp.model_extra or {}
    summary["extensions"] = {"first_token": first, "prompt_logprobs": len(extra.get("prompt_logprobs") or [])}

    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        summary["unknown_model"] = "accepted"
    except openai.NotFoundError as err:
        summary["unknown_model"] = err.status_code

    # A field the server does not implement is refused by name, not silently ignored.
    try:
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "x"}],
            max_tokens=2,
            response_format={"type": "json_object"},
        )
        summary["unsupported"] = "accepted"
    except openai.BadRequestError as err:
        summary["unsupported"] = {"status": err.status_code, "param": getattr(err, "param", None)}
    print("SUMMARY:" + json.dumps(summary))


if __name__ == "__main__":
    main()
