"""`n` > 1 through the official `openai` SDK: chat and completions, whole and streamed
(argv: base URL, model uid of a launched chat LLM). Prints the choices as JSON."""
import json
import sys

import openai

base, uid = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600)
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Tell me a short story about a cat."},
]
SAMPLED = dict(temperature=1.0, top_p=1.0, max_tokens=10, seed=11)


def chat_whole():
    r = client.chat.completions.create(model=uid, messages=QUESTION, n=3, **SAMPLED)
    assert [c.index for c in r.choices] == [0, 1, 2], r.choices
    for c in r.choices:
        assert c.message.role == "assistant" and c.message.content, c
        assert c.finish_reason in ("stop", "length"), c
    assert r.usage.completion_tokens <= 30 and r.usage.completion_tokens >= 3, r.usage
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    return [c.message.content for c in r.choices], r.usage


def chat_streamed():
    texts, finishes, usages = {}, {}, []
    for chunk in client.chat.completions.create(
        model=uid, messages=QUESTION, n=3, stream=True,
        stream_options={"include_usage": True}, **SAMPLED
    ):
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for c in chunk.choices:
            texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
            if c.finish_reason is not None:
                finishes[c.index] = c.finish_reason
    assert sorted(texts) == [0, 1, 2] and sorted(finishes) == [0, 1, 2], (texts, finishes)
    assert len(usages) == 1, usages
    return [texts[i] for i in range(3)], usages[0]


first, usage = chat_whole()
again, _ = chat_whole()
assert first == again, ("the same seed gives the same choices", first, again)
assert len(set(first)) > 1, ("the choices are sampled apart", first)
streamed, streamed_usage = chat_streamed()
assert streamed == first, ("streamed choices equal the whole ones", streamed, first)
assert streamed_usage.completion_tokens == usage.completion_tokens, (streamed_usage, usage)

# Completions: whole and streamed, n = 2.
c = client.completions.create(model=uid, prompt="Once upon a time", n=2, **SAMPLED)
assert [x.index for x in c.choices] == [0, 1], c.choices
completion_texts = [x.text for x in c.choices]
streamed_texts = {}
for chunk in client.completions.create(
    model=uid, prompt="Once upon a time", n=2, stream=True, **SAMPLED
):
    for x in chunk.choices:
        streamed_texts[x.index] = streamed_texts.get(x.index, "") + x.text
assert [streamed_texts[0], streamed_texts[1]] == completion_texts, (streamed_texts, completion_texts)

try:
    client.chat.completions.create(model=uid, messages=QUESTION, n=0)
    raise AssertionError("n=0 must fail")
except openai.BadRequestError as e:
    assert e.status_code == 400, e

print(json.dumps({"chat": first, "completions": completion_texts}))
print("openai choices: ok")
