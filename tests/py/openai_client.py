"""Drives a brainmesh gateway with the official `openai` package, as an app developer would.

usage: openai_client.py BASE_URL API_KEY MODEL [--concurrent N] [--kill-miner-mid-stream DIR,DIR...]

Checks, in order: model listing, a plain chat completion, the same prompt streamed (same greedy
text, OpenAI's chunk sequence), a text completion, a bad key (401), an unknown model (404), a
prompt over the context window (400), and N concurrent requests all answered; with
--kill-miner-mid-stream (the miners' data dirs, whose node.json names peer id and pid), a
streamed answer whose miner is killed with SIGKILL mid-stream must still arrive whole. Prints one JSON
line with what it saw (including each answer's receipt id header) and exits non-zero with a
message on the first failed check.
"""

import argparse
import asyncio
import json
import os
import signal
import sys

import openai
from openai import AsyncOpenAI, OpenAI

PROMPT = [{"role": "user", "content": "Name three colours."}]


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def expect_error(exc_type, status, code, fn):
    try:
        fn()
    except exc_type as e:
        check(e.status_code == status, f"expected HTTP {status}, got {e.status_code}: {e}")
        body = e.body if isinstance(e.body, dict) else {}
        check(body.get("code") == code, f"expected error code {code!r}, got {e.body!r}")
        check(isinstance(body.get("message"), str) and body["message"], f"error without a message: {e.body!r}")
        return {"status": e.status_code, "code": body.get("code"), "type": body.get("type")}
    check(False, f"expected {exc_type.__name__} ({status} {code})")


def sampling_features(client, args):
    """n, seeds, logprobs (chat and completions, streamed and not), prompt lists, echo, logit_bias
    and penalties through a real mesh. Returns how many receipts the answered requests made."""
    receipts = 0
    # n samples with a seed: one choice per sample, in order; choice 0 is what n=1 gives.
    kw = dict(model=args.model, messages=PROMPT, max_tokens=8, temperature=0.9, seed=1234)
    two = client.chat.completions.create(n=2, **kw)
    one = client.chat.completions.create(n=1, **kw)
    receipts += 3
    check([c.index for c in two.choices] == [0, 1], f"choices {two.choices}")
    check(one.choices[0].message.content == two.choices[0].message.content,
          f"seeded n=1 {one.choices[0].message.content!r} != choice 0 of n=2 {two.choices[0].message.content!r}")
    check(two.usage.completion_tokens > one.usage.completion_tokens, f"usage of n=2 {two.usage} vs n=1 {one.usage}")
    # Streamed, the same two seeded samples arrive under their indexes.
    texts = {0: "", 1: ""}
    for c in client.chat.completions.create(n=2, stream=True, **kw):
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
    receipts += 2
    check([texts[0], texts[1]] == [c.message.content for c in two.choices], f"streamed n=2 {texts} vs {two.choices}")

    # Chat logprobs: one entry per completion token, top_logprobs most likely first, greedy
    # picks the first of them; streamed they are the same.
    kw = dict(model=args.model, messages=PROMPT, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
    lp = client.chat.completions.create(**kw)
    content = lp.choices[0].logprobs.content
    check(len(content) == lp.usage.completion_tokens, f"{len(content)} logprobs for {lp.usage.completion_tokens} tokens")
    for e in content:
        check(e.logprob <= 0 and len(e.top_logprobs) == 3, f"entry {e}")
        tops = [t.logprob for t in e.top_logprobs]
        check(tops == sorted(tops, reverse=True), f"top_logprobs not sorted: {tops}")
        check(abs(e.logprob - tops[0]) < 1e-6 and e.token == e.top_logprobs[0].token, f"greedy token not the top: {e}")
        check(bytes(e.bytes).decode("utf-8", "replace") == e.token, f"bytes {e.bytes} vs token {e.token!r}")
    streamed = [e for c in client.chat.completions.create(stream=True, **kw)
                if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    receipts += 2
    check([(e.token, round(e.logprob, 4)) for e in streamed] == [(e.token, round(e.logprob, 4)) for e in content],
          "streamed logprobs differ from the plain ones")

    # Completions: the legacy shape, a list of prompts (one choice each, in order), echo.
    prompts = ["The sky is", "Water is"]
    comp = client.completions.create(model=args.model, prompt=prompts, max_tokens=5, temperature=0, logprobs=2)
    receipts += 2
    check([c.index for c in comp.choices] == [0, 1], f"choices {comp.choices}")
    for i, c in enumerate(comp.choices):
        alone = client.completions.create(model=args.model, prompt=prompts[i], max_tokens=5, temperature=0)
        receipts += 1
        check(c.text == alone.choices[0].text, f"prompt {i}: {c.text!r} in a list, {alone.choices[0].text!r} alone")
        l = c.logprobs
        check(len(l.tokens) == len(l.token_logprobs) == len(l.top_logprobs) == len(l.text_offset), f"{l}")
        check(all(len(t) >= 1 for t in l.top_logprobs), f"top_logprobs {l.top_logprobs}")
        check(l.text_offset[0] == 0, f"text_offset {l.text_offset}")
    echo = client.completions.create(model=args.model, prompt=prompts[0], max_tokens=3, temperature=0, echo=True)
    receipts += 1
    check(echo.choices[0].text.startswith(prompts[0]), f"echo {echo.choices[0].text!r}")

    # logit_bias -100 on the greedy first token: another first token (its id from the model's
    # own tokenizer).
    from transformers import AutoTokenizer

    d, name = os.path.split(os.path.abspath(args.reference_gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    first = content[0]
    ids = tok.encode(first.token, add_special_tokens=False)
    check(len(ids) == 1, f"first token {first.token!r} encodes to {ids}")
    banned = client.chat.completions.create(model=args.model, messages=PROMPT, max_tokens=6, temperature=0,
                                            logprobs=True, logit_bias={str(ids[0]): -100})
    receipts += 1
    check(banned.choices[0].logprobs.content[0].token != first.token,
          f"logit_bias -100 on {ids[0]} left the first token {first.token!r}")
    pen = client.chat.completions.create(model=args.model, messages=PROMPT, max_tokens=12, temperature=0,
                                         frequency_penalty=2.0, presence_penalty=2.0)
    receipts += 1
    check(pen.choices[0].message.content, "empty answer with penalties")
    return receipts


def obj(props, required=None):
    return {"type": "object", "properties": props, "required": required or list(props), "additionalProperties": False}


STR, INT, NUM, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}

# Twenty schema/prompt pairs for structured outputs.
SCHEMAS = [
    ("Is Paris the capital of France?", obj({"answer": BOOL})),
    ("How many legs does a spider have?", obj({"legs": INT})),
    ("What colour is the sky on a clear day?", obj({"colour": {"enum": ["blue", "green", "red", "yellow"]}})),
    ("Rate the movie Titanic from 1 to 5.", obj({"stars": {"enum": [1, 2, 3, 4, 5]}})),
    ("Give the boiling point of water in Celsius.", obj({"celsius": NUM})),
    ("Name a fruit.", obj({"fruit": STR})),
    ("Describe a cat: its name and age.", obj({"name": STR, "age": INT})),
    ("List two primary colours.", obj({"colours": {"type": "array", "items": STR, "minItems": 2, "maxItems": 2}})),
    ("Is the number 7 even?", obj({"even": BOOL, "number": INT})),
    ("Pick a weekday.", obj({"day": {"enum": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]}})),
    ("Give a point on a map.", obj({"lat": NUM, "lon": NUM})),
    ("Classify the sentiment of: I love this game!", obj({"sentiment": {"enum": ["positive", "negative", "neutral"]}})),
    ("Describe a sword in a fantasy game.", obj({"name": STR, "damage": INT, "magic": BOOL})),
    ("Give three small numbers.", obj({"numbers": {"type": "array", "items": INT, "minItems": 3, "maxItems": 3}})),
    ("Who wrote Hamlet?", obj({"author": STR})),
    ("Describe a player character.", obj({"class": {"enum": ["warrior", "mage", "rogue"]}, "level": INT})),
    ("What is 2 + 2?", obj({"result": INT})),
    ("Is water wet?", {"anyOf": [obj({"yes": BOOL}), obj({"no": BOOL})]}),
    ("Give an inventory with one item.", obj({"items": {"type": "array", "maxItems": 1, "minItems": 1,
                                                         "items": obj({"item": STR, "count": INT})}})),
    ("Say whether it is raining, or null if unknown.", obj({"raining": {"type": ["boolean", "null"]}})),
]


def structured_features(client, args):
    """response_format json_schema on twenty schema/prompt pairs (every answer must parse and
    validate with jsonschema), json_object, and tools (auto, required, a named function), plain
    and streamed. Returns how many receipts the answered requests made."""
    import jsonschema

    async def run():
        aclient = AsyncOpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=args.timeout)

        async def one(i, prompt, schema):
            stream = i % 2 == 1
            kw = dict(model=args.model, messages=[{"role": "user", "content": prompt + " Answer in JSON."}],
                      max_tokens=160, temperature=0 if i % 3 else 0.7, seed=i,
                      response_format={"type": "json_schema", "json_schema": {"name": f"s{i}", "schema": schema,
                                                                              "strict": True}})
            if stream:
                text, finish = "", None
                async for c in await aclient.chat.completions.create(stream=True, **kw):
                    if c.choices:
                        text += c.choices[0].delta.content or ""
                        finish = c.choices[0].finish_reason or finish
            else:
                r = await aclient.chat.completions.create(**kw)
                text, finish = r.choices[0].message.content, r.choices[0].finish_reason
            return text, finish

        try:
            return await asyncio.gather(*(one(i, p, s) for i, (p, s) in enumerate(SCHEMAS)))
        finally:
            await aclient.close()

    answers = asyncio.run(run())
    for (prompt, schema), (text, finish) in zip(SCHEMAS, answers):
        check(finish == "stop", f"{prompt!r}: finish_reason {finish} after {text!r}")
        try:
            value = json.loads(text)
        except ValueError as e:
            check(False, f"{prompt!r}: not JSON ({e}): {text!r}")
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as e:
            check(False, f"{prompt!r}: {text!r} does not validate: {e.message}")
    receipts = len(SCHEMAS)

    any_obj = client.chat.completions.create(
        model=args.model, max_tokens=200, temperature=0, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Give a dog's name and breed as a small JSON object."}])
    receipts += 1
    check(any_obj.choices[0].finish_reason == "stop", f"json_object ran out of tokens: {any_obj}")
    check(isinstance(json.loads(any_obj.choices[0].message.content), dict), f"json_object: {any_obj}")

    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "The current weather in a city.",
        "parameters": obj({"city": STR, "unit": {"enum": ["celsius", "fahrenheit"]}})}},
        {"type": "function", "function": {"name": "get_time", "description": "The time in a city.",
                                          "parameters": obj({"city": STR})}}]
    ask = [{"role": "user", "content": "What is the weather in Oslo?"}]
    named = client.chat.completions.create(model=args.model, messages=ask, tools=tools, max_tokens=80, temperature=0,
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}})
    required = client.chat.completions.create(model=args.model, messages=ask, tools=tools, max_tokens=80,
                                              temperature=0, tool_choice="required")
    receipts += 2
    for r in (named, required):
        c = r.choices[0]
        check(c.finish_reason == "tool_calls" and c.message.tool_calls, f"no tool call: {r}")
        call = c.message.tool_calls[0]
        check(call.type == "function" and call.id.startswith("call_"), f"call {call}")
        args_ = json.loads(call.function.arguments)
        spec = next(t["function"] for t in tools if t["function"]["name"] == call.function.name)
        jsonschema.validate(args_, spec["parameters"])
    check(named.choices[0].message.tool_calls[0].function.name == "get_weather", f"named: {named}")
    # auto: a call or a plain answer, either way well formed; streamed, the call arrives whole.
    auto = client.chat.completions.create(model=args.model, messages=ask, tools=tools, max_tokens=80, temperature=0)
    c = auto.choices[0]
    check((c.finish_reason == "tool_calls" and c.message.tool_calls) or (c.finish_reason == "stop" and c.message.content),
          f"auto: {auto}")
    chunks = list(client.chat.completions.create(model=args.model, messages=ask, tools=tools, max_tokens=80,
                                                 temperature=0, tool_choice="required", stream=True))
    receipts += 2
    deltas = [t for ch in chunks if ch.choices for t in (ch.choices[0].delta.tool_calls or [])]
    check(len(deltas) == 1 and deltas[0].function.name in ("get_weather", "get_time"), f"streamed tool call: {chunks}")
    check([ch for ch in chunks if ch.choices][-1].choices[0].finish_reason == "tool_calls", "streamed finish_reason")
    # The call's result goes back to the model, which answers (tool_choice none: plain text).
    follow = client.chat.completions.create(
        model=args.model, tools=tools, tool_choice="none", max_tokens=24, temperature=0,
        messages=ask + [{"role": "assistant", "content": None, "tool_calls": [required.choices[0].message.tool_calls[0].model_dump()]},
                        {"role": "tool", "tool_call_id": required.choices[0].message.tool_calls[0].id,
                         "content": "12 degrees and raining"}])
    receipts += 1
    check(follow.choices[0].message.content, f"no answer after the tool result: {follow}")
    return receipts


EMBED_TEXTS = [
    "The cat sat on the mat.", "A dog barked at the mailman.", "Stock markets fell sharply today.",
    "How do I bake sourdough bread?", "The capital of France is Paris.", "Quantum computers use qubits.",
    "I love playing chess on weekends.", "Rain is expected tomorrow afternoon.", "She won the marathon in record time.",
    "Photosynthesis converts light into chemical energy.", "The orc swung its axe at the knight.",
    "Open the inventory and equip the sword.", "Bitcoin's price rose after the halving.",
    "The recipe needs two eggs and a cup of flour.", "Mount Everest is the highest mountain.",
    "Neural networks learn from data.", "The train to Berlin leaves at nine.", "Water boils at 100 degrees Celsius.",
    "A quiet village by the sea.", "Players earn gold by completing quests.",
]


def embeddings_against_transformers(client, args):
    """/v1/embeddings through the mesh against transformers' all-MiniLM-L6-v2 with mean pooling
    and L2 normalisation (sentence-transformers' recipe for this model): the smallest cosine
    over twenty texts; base64 decodes to the same floats; dimensions the model cannot give are
    refused. Returns (smallest cosine, receipts made)."""
    import base64
    import struct

    import torch
    from transformers import AutoTokenizer, BertModel

    raw = client.embeddings.with_raw_response.create(model=args.embedding_model, input=EMBED_TEXTS)
    got = raw.parse()
    check(raw.headers.get("x-brainmesh-receipt-id"), "embeddings answer without a receipt id")
    check(got.object == "list" and len(got.data) == len(EMBED_TEXTS), f"{len(got.data)} embeddings")
    check([d.index for d in got.data] == list(range(len(EMBED_TEXTS))), "embedding indexes")
    check(got.usage.prompt_tokens > len(EMBED_TEXTS) and got.usage.total_tokens == got.usage.prompt_tokens,
          f"usage {got.usage}")
    tok = AutoTokenizer.from_pretrained(args.embedding_dir)
    model = BertModel.from_pretrained(args.embedding_dir).eval()
    with torch.no_grad():
        enc = tok(EMBED_TEXTS, padding=True, truncation=True, max_length=128, return_tensors="pt")
        out = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        ref = torch.nn.functional.normalize((out * mask).sum(1) / mask.sum(1).clamp(min=1e-9), p=2, dim=1)
    mesh = torch.tensor([d.embedding for d in got.data])
    cos = torch.nn.functional.cosine_similarity(mesh, ref, dim=1)
    worst = float(cos.min())
    check(worst >= 0.999, f"embeddings differ from transformers': min cosine {worst}")
    b64 = client.embeddings.create(model=args.embedding_model, input=EMBED_TEXTS[:2], encoding_format="base64")
    floats = client.embeddings.create(model=args.embedding_model, input=EMBED_TEXTS[:2])
    for b, f in zip(b64.data, floats.data):
        vec = b.embedding if isinstance(b.embedding, list) else list(
            struct.unpack(f"<{len(base64.b64decode(b.embedding)) // 4}f", base64.b64decode(b.embedding)))
        check(len(vec) == len(f.embedding) and max(abs(x - y) for x, y in zip(vec, f.embedding)) < 1e-6,
              "base64 embeddings differ from the float ones")
    expect_error(openai.BadRequestError, 400, None,
                 lambda: client.embeddings.create(model=args.embedding_model, input="x", dimensions=100))
    return worst, 3


def logprobs_against_transformers(client, args):
    """Greedy logprobs of a completion through the mesh against transformers' log-softmax on the
    same GGUF file: the largest absolute difference over the chosen and top tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompt, n = "Once upon a time, there was a little girl who", 8
    got = client.completions.create(model=args.model, prompt=prompt, max_tokens=n, temperature=0, logprobs=5, echo=True)
    d, name = os.path.split(os.path.abspath(args.reference_gguf))
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    ids = tok.encode(prompt, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None,
                             pad_token_id=tok.eos_token_id, output_logits=True, return_dict_in_generate=True)
    worst = 0.0
    l = got.choices[0].logprobs
    check(got.choices[0].text.startswith(prompt), f"echo: {got.choices[0].text!r}")
    # The prompt's tokens lead (echo): the first without a log-probability, then each given the
    # ones before it, as transformers' full forward pass scores them.
    p = len(ids)
    check(len(l.tokens) == p + n and l.token_logprobs[0] is None and l.top_logprobs[0] is None,
          f"echoed logprobs: {l.tokens[:3]} {l.token_logprobs[:3]}")
    with torch.no_grad():
        full = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    for k in range(1, p):
        worst = max(worst, abs(l.token_logprobs[k] - float(full[k - 1, ids[k]])))
        best = torch.topk(full[k - 1], len(l.top_logprobs[k])).values.tolist()
        for got_v, want_v in zip(sorted(l.top_logprobs[k].values(), reverse=True), best):
            worst = max(worst, abs(got_v - want_v))
    l.tokens, l.token_logprobs, l.top_logprobs = l.tokens[p:], l.token_logprobs[p:], l.top_logprobs[p:]
    for k, (token, lp, top) in enumerate(zip(l.tokens, l.token_logprobs, l.top_logprobs)):
        ref = torch.log_softmax(out.logits[k][0].double(), dim=-1)
        want_id = int(out.sequences[0, len(ids) + k])
        check(tok.decode([want_id]) == token, f"step {k}: mesh token {token!r}, transformers {tok.decode([want_id])!r}")
        worst = max(worst, abs(lp - float(ref[want_id])))
        best = torch.topk(ref, len(top)).values.tolist()
        for got_v, want_v in zip(sorted(top.values(), reverse=True), best):
            worst = max(worst, abs(got_v - want_v))
    check(worst < 1e-3, f"mesh logprobs differ from transformers' by {worst}")
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base_url")
    ap.add_argument("api_key")
    ap.add_argument("model")
    ap.add_argument("--concurrent", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--kill-miner-mid-stream", default="")
    ap.add_argument("--reference-gguf", default="", help="compare greedy logprobs with transformers on this GGUF")
    ap.add_argument("--embedding-model", default="", help="the embedding model's id on the mesh")
    ap.add_argument("--embedding-dir", default="", help="its directory, for the transformers reference")
    args = ap.parse_args()
    seen = {}

    # No client-side retries: every request must succeed the first time.
    client = OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=args.timeout)

    models = [m.id for m in client.models.list().data]
    check(args.model in models, f"{args.model} not in /v1/models: {models}")
    seen["models"] = models

    # Plain chat completion.
    raw = client.chat.completions.with_raw_response.create(model=args.model, messages=PROMPT, max_tokens=12, temperature=0)
    plain = raw.parse()
    check(plain.object == "chat.completion", f"object {plain.object}")
    check(plain.id.startswith("chatcmpl-"), f"id {plain.id}")
    check(plain.model == args.model, f"model {plain.model}")
    check(len(plain.choices) == 1, f"{len(plain.choices)} choices")
    choice = plain.choices[0]
    check(choice.message.role == "assistant", f"role {choice.message.role}")
    check(isinstance(choice.message.content, str) and choice.message.content.strip(), f"empty content: {plain}")
    check(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason}")
    check(plain.usage.completion_tokens >= 1 and plain.usage.prompt_tokens >= 1, f"usage {plain.usage}")
    check(plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens, f"usage {plain.usage}")
    check(plain.usage.completion_tokens <= 12, f"max_tokens not honoured: {plain.usage}")
    seen["chat"] = {"text": choice.message.content, "finish_reason": choice.finish_reason,
                    "usage": plain.usage.model_dump(), "receipt": raw.headers.get("x-brainmesh-receipt-id")}

    # The same request streamed: role first, content deltas, a finish chunk, a usage chunk.
    stream = client.chat.completions.create(model=args.model, messages=PROMPT, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    check(len(chunks) >= 3, f"only {len(chunks)} chunks")
    check(all(c.object == "chat.completion.chunk" for c in chunks), "chunk object")
    check(len({c.id for c in chunks}) == 1, "chunk ids differ")
    check(chunks[0].choices[0].delta.role == "assistant", f"first delta {chunks[0]}")
    with_choices = [c for c in chunks if c.choices]
    finish = with_choices[-1].choices[0].finish_reason
    check(finish in ("stop", "length"), f"last finish_reason {finish}")
    check(all(c.choices[0].finish_reason is None for c in with_choices[:-1]), "finish_reason before the end")
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1, f"usage chunk {chunks[-1]}")
    check(text == choice.message.content, f"streamed text {text!r} != plain text {choice.message.content!r}")
    seen["stream"] = {"chunks": len(chunks), "text": text, "finish_reason": finish}

    # Legacy completions.
    comp = client.completions.create(model=args.model, prompt="Once upon a time", max_tokens=8, temperature=0)
    check(comp.object == "text_completion" and comp.id.startswith("cmpl-"), f"{comp}")
    check(comp.choices[0].text and comp.choices[0].finish_reason in ("stop", "length"), f"{comp}")
    seen["completion"] = comp.choices[0].text

    # Errors in OpenAI's shape, raised as the client's own exception types.
    bad = OpenAI(base_url=args.base_url, api_key="sk-not-a-key", max_retries=0, timeout=args.timeout)
    seen["bad_key"] = expect_error(openai.AuthenticationError, 401, "invalid_api_key",
                                   lambda: bad.chat.completions.create(model=args.model, messages=PROMPT, max_tokens=2))
    seen["unknown_model"] = expect_error(openai.NotFoundError, 404, "model_not_found",
                                         lambda: client.chat.completions.create(model="no-such-model", messages=PROMPT, max_tokens=2))
    # " hello" is one token in byte-level BPE vocabularies: far past any small model's context.
    long_prompt = [{"role": "user", "content": " hello" * 20000}]
    seen["over_context"] = expect_error(openai.BadRequestError, 400, "context_length_exceeded",
                                        lambda: client.chat.completions.create(model=args.model, messages=long_prompt, max_tokens=2))
    seen["n17"] = expect_error(openai.BadRequestError, 400, None,
                               lambda: client.chat.completions.create(model=args.model, messages=PROMPT, max_tokens=2, n=17))
    # Against a real mesh (the model file given): sampling features and logprobs.
    if args.reference_gguf:
        seen["extra_receipts"] = sampling_features(client, args) + structured_features(client, args)
        seen["logprob_vs_transformers"] = logprobs_against_transformers(client, args)
    if args.embedding_model:
        seen["embedding_min_cosine"], n = embeddings_against_transformers(client, args)
        seen["extra_receipts"] = seen.get("extra_receipts", 0) + n

    # Many at once: every one answered, each with its own receipt.
    async def burst():
        aclient = AsyncOpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=args.timeout)

        async def one(i):
            r = await aclient.chat.completions.with_raw_response.create(
                model=args.model, messages=[{"role": "user", "content": f"Count to {i % 7 + 2}."}], max_tokens=4, temperature=0)
            c = r.parse()
            return {"text": c.choices[0].message.content, "finish_reason": c.choices[0].finish_reason,
                    "completion_tokens": c.usage.completion_tokens, "receipt": r.headers.get("x-brainmesh-receipt-id")}

        try:
            return await asyncio.gather(*(one(i) for i in range(args.concurrent)))
        finally:
            await aclient.close()

    answers = asyncio.run(burst())
    check(len(answers) == args.concurrent, f"{len(answers)} answers")
    for a in answers:
        check(a["finish_reason"] in ("stop", "length") and a["completion_tokens"] >= 1, f"bad answer {a}")
    seen["concurrent"] = answers

    if args.kill_miner_mid_stream:
        pids = {}
        for d in args.kill_miner_mid_stream.split(","):
            with open(os.path.join(d, "node.json")) as f:
                nj = json.load(f)
            pids[nj["peer_id"]] = nj["pid"]
        story = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
        raw = client.chat.completions.with_raw_response.create(model=args.model, messages=story, max_tokens=64,
                                                               temperature=0, stream=True)
        serving = raw.headers.get("x-brainmesh-miner")
        check(serving in pids, f"x-brainmesh-miner {serving!r} is not one of the miners {list(pids)}")
        text, finish, killed, chunks = "", None, False, 0
        for c in raw.parse():
            chunks += 1
            if c.choices:
                text += c.choices[0].delta.content or ""
                finish = c.choices[0].finish_reason or finish
            if not killed and len(text) > 20:
                os.kill(pids[serving], signal.SIGKILL)
                killed = True
        check(killed, f"the answer ended before its miner could be killed: {text!r}")
        check(finish in ("stop", "length"), f"the stream did not finish after the kill: {finish!r}, text {text!r}")
        check(len(text) > 40, f"the answer after the kill is too short: {text!r}")
        seen["killed_mid_stream"] = {"miner": serving, "text": text, "finish_reason": finish, "chunks": chunks}

    print(json.dumps(seen))


if __name__ == "__main__":
    main()
