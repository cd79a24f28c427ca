#!/usr/bin/env python3
"""Reference tokenizations and chat-template renderings for tests/it/tokenizers.rs.

Every answer comes from a real third-party package, never from code written here:
  llama-cpp <gguf>        llama.cpp (llama-cpp-python, vocab only): stdin {"texts": [...],
                          "add_bos": bool, "special": bool} -> {"ids": [[...], ...]}
  llama-cpp-time <gguf>   the seconds llama.cpp takes to tokenize stdin's {"texts": [...]}
  gguf-to-json <gguf> <dir>
                          transformers' own GGUF tokenizer conversion, saved as
                          <dir>/tokenizer.json
  hf-encode <tokenizer.json>
                          Hugging Face tokenizers: stdin {"texts": [...]} -> {"ids": [...]}
                          (add_special_tokens=True)
  hf-dir <dir>            transformers' AutoTokenizer.from_pretrained on a model directory:
                          stdin {"texts": [...], "chats": [[messages], ...]} -> {"ids": [...]
                          (add_special_tokens=True), "chats": [apply_chat_template(tokenize=False,
                          add_generation_prompt=True), ...], "bos": str, "eos": str}
  chat <tokenizer.json>   transformers' apply_chat_template (tokenize=False): stdin
                          {"cases": [{"template", "bos", "eos", "messages",
                          "add_generation_prompt"}]} -> {"texts": [...]} (an error as
                          {"error": "..."} in place of the text)
"""
import json
import sys


def llama_cpp(path):
    from llama_cpp import Llama

    req = json.load(sys.stdin)
    llm = Llama(path, vocab_only=True, verbose=False)
    out = [llm.tokenize(t.encode("utf-8"), add_bos=req["add_bos"], special=req["special"]) for t in req["texts"]]
    json.dump({"ids": out}, sys.stdout)


def llama_cpp_time(path):
    """Seconds llama.cpp takes to tokenize stdin's {"texts": [...]} (special=True, add_bos=True),
    the vocabulary load excluded: the best of three."""
    import time

    from llama_cpp import Llama

    texts = [t.encode("utf-8") for t in json.load(sys.stdin)["texts"]]
    llm = Llama(path, vocab_only=True, verbose=False)
    best, count = float("inf"), 0
    for _ in range(3):
        start = time.perf_counter()
        count = sum(len(llm.tokenize(t, add_bos=True, special=True)) for t in texts)
        best = min(best, time.perf_counter() - start)
    json.dump({"seconds": best, "tokens": count}, sys.stdout)


def gguf_to_json(path, out_dir):
    """transformers' GGUF tokenizer conversion (integrations/gguf/gguf_tokenizer_mapping.py).

    Its metadata reader imports torch only to map tensors; the metadata is read here with the
    `gguf` package (llama.cpp's own reader) in the reader's output format instead.
    """
    import os
    import types

    from gguf import GGUFReader, GGUFValueType

    def read_gguf_metadata(gguf_path, string_arrays=()):
        reader = GGUFReader(gguf_path)
        metadata = {}
        for field in reader.fields.values():
            if field.types and field.types[0] == GGUFValueType.ARRAY:
                # As transformers' reader: numbers in full, strings only when asked for.
                if field.types[-1] != GGUFValueType.STRING:
                    metadata[field.name] = [field.parts[i][0].item() for i in field.data]
                elif field.name in string_arrays:
                    metadata[field.name] = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
                else:
                    metadata[field.name] = len(field.data)
            else:
                metadata[field.name] = field.contents()
        return metadata, ()

    stub = types.ModuleType("transformers.integrations.gguf.reader")
    stub.read_gguf_metadata = read_gguf_metadata
    sys.modules["transformers.integrations.gguf.reader"] = stub
    from transformers.integrations.gguf.gguf_tokenizer_mapping import convert_gguf_tokenizer, get_gguf_tokenizer

    architecture, tokenizer_dict, _config = get_gguf_tokenizer(path)
    backend, _ = convert_gguf_tokenizer(architecture, tokenizer_dict)
    os.makedirs(out_dir, exist_ok=True)
    backend.save(os.path.join(out_dir, "tokenizer.json"))
    json.dump({"architecture": architecture}, sys.stdout)


def hf_encode(path):
    from tokenizers import Tokenizer

    req = json.load(sys.stdin)
    tok = Tokenizer.from_file(path)
    json.dump({"ids": [tok.encode(t, add_special_tokens=True).ids for t in req["texts"]]}, sys.stdout)


def hf_dir(path):
    from transformers import AutoTokenizer

    req = json.load(sys.stdin)
    tok = AutoTokenizer.from_pretrained(path)
    json.dump({
        "ids": [tok.encode(t, add_special_tokens=True) for t in req["texts"]],
        "chats": [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in req["chats"]],
        "bos": tok.bos_token,
        "eos": tok.eos_token,
    }, sys.stdout)


def chat(path):
    from transformers import PreTrainedTokenizerFast

    req = json.load(sys.stdin)
    texts = []
    for case in req["cases"]:
        tok = PreTrainedTokenizerFast(tokenizer_file=path, bos_token=case["bos"], eos_token=case["eos"])
        tok.chat_template = case["template"]
        try:
            texts.append(tok.apply_chat_template(case["messages"], tokenize=False,
                                                 add_generation_prompt=case["add_generation_prompt"]))
        except Exception as e:  # the template's own raise_exception
            texts.append({"error": str(e)})
    json.dump({"texts": texts}, sys.stdout)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"llama-cpp": llama_cpp, "llama-cpp-time": llama_cpp_time, "gguf-to-json": gguf_to_json, "hf-encode": hf_encode, "hf-dir": hf_dir, "chat": chat}[cmd](*args)
