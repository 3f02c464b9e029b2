"""The official `openai` SDK against our /v1/chat/completions and /v1/completions
(argv: base URL, model uid of a launched chat LLM)."""
import json
import re
import sys
import urllib.request

import openai

base, uid = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600)

# SmolLM2-135M answers "What is the capital of France?" with French word salad, with this system
# message or its own default one, and so does llama.cpp (llama-cpp-python 0.3.36, greedy, 32
# tokens: "La femme de France, le Grand Croix, ..."); this wording gets "The capital of France is
# Paris." and a stop from both.
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Name the capital of France."},
]

# --- chat, whole ---------------------------------------------------------------------------
r = client.chat.completions.create(model=uid, messages=QUESTION, temperature=0, max_tokens=32)
assert r.object == "chat.completion" and r.model == uid, r
assert r.id.startswith("chatcmpl-"), r.id
assert len(r.choices) == 1, r.choices
choice = r.choices[0]
content = choice.message.content
assert choice.message.role == "assistant", choice
assert "Paris" in content, content
assert choice.finish_reason == "stop", choice
u = r.usage
assert u.prompt_tokens > 0 and u.completion_tokens > 0, u
assert u.total_tokens == u.prompt_tokens + u.completion_tokens, u
whole_usage = u

# --- chat, streamed (same greedy request) --------------------------------------------------
chunks = list(
    client.chat.completions.create(
        model=uid,
        messages=QUESTION,
        temperature=0,
        max_tokens=32,
        stream=True,
        stream_options={"include_usage": True},
    )
)
assert len(chunks) >= 3, chunks
assert all(type(c).__name__ == "ChatCompletionChunk" for c in chunks), chunks
assert all(c.object == "chat.completion.chunk" and c.model == uid for c in chunks), chunks
assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-"), chunks
assert chunks[0].choices[0].delta.role == "assistant", chunks[0]
with_choices = [c for c in chunks if c.choices]
streamed = "".join(c.choices[0].delta.content or "" for c in with_choices)
assert streamed == content, (streamed, content)
finished = [c for c in with_choices if c.choices[0].finish_reason is not None]
assert len(finished) == 1 and finished[0].choices[0].finish_reason == "stop", finished
last = chunks[-1]
assert last.choices == [] and last.usage is not None, last


def counts(u):
    return u.prompt_tokens, u.completion_tokens, u.total_tokens


# The counts match (the repeated prompt may be read from the prefix cache: prompt_tokens_details).
assert counts(last.usage) == counts(whole_usage), (last.usage, whole_usage)
assert all(c.usage is None for c in chunks[:-1]), chunks

# --- legacy completions --------------------------------------------------------------------
r = client.completions.create(model=uid, prompt="The capital of France is", max_tokens=8, temperature=0)
assert r.object == "text_completion" and r.model == uid, r
assert r.id.startswith("cmpl-"), r.id
assert r.choices[0].finish_reason == "length", r.choices[0]
assert r.usage.completion_tokens == 8, r.usage
assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage
text = r.choices[0].text
assert text, r

chunks = list(
    client.completions.create(
        model=uid,
        prompt="The capital of France is",
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
)
assert all(c.object == "text_completion" for c in chunks), chunks
assert len({c.id for c in chunks}) == 1, chunks
streamed = "".join(c.choices[0].text for c in chunks if c.choices)
assert streamed == text, (streamed, text)
finished = [c for c in chunks if c.choices and c.choices[0].finish_reason is not None]
assert len(finished) == 1 and finished[0].choices[0].finish_reason == "length", finished
assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8, chunks[-1]

# --- errors --------------------------------------------------------------------------------
try:
    client.chat.completions.create(model="no-such-model", messages=QUESTION, max_tokens=4)
    raise AssertionError("an unknown model must fail")
except openai.NotFoundError as e:
    assert e.status_code == 404 and "no-such-model" in str(e.body), (e.status_code, e.body)

with urllib.request.urlopen(f"{base}/v1/models/{uid}") as resp:
    context = json.load(resp).get("context_length") or 8192
long_prompt = "hello " * (context + 2000)
try:
    client.chat.completions.create(
        model=uid, messages=[{"role": "user", "content": long_prompt}], max_tokens=4
    )
    raise AssertionError("a prompt longer than the context must fail")
except openai.BadRequestError as e:
    message = str(e.body)
    numbers = [int(n) for n in re.findall(r"\d+", message)]
    assert context in numbers, (context, message)
    assert any(n > context for n in numbers), (context, message)

try:
    client.chat.completions.create(model=uid, messages=QUESTION, max_tokens=4, n=129)
    raise AssertionError("n=129 must fail")
except openai.BadRequestError as e:
    assert e.status_code == 400, e

# --- logprobs ------------------------------------------------------------------------------
r = client.chat.completions.create(
    model=uid, messages=QUESTION, temperature=0, max_tokens=6, logprobs=True, top_logprobs=3
)
entries = r.choices[0].logprobs.content
assert len(entries) == r.usage.completion_tokens, (len(entries), r.usage)
for entry in entries:
    assert entry.logprob <= 0, entry
    assert len(entry.top_logprobs) == 3, entry
    assert all(t.logprob <= 0 for t in entry.top_logprobs), entry
    tops = [t.logprob for t in entry.top_logprobs]
    assert tops == sorted(tops, reverse=True), entry
    # Greedy: the chosen token is the most likely one.
    assert abs(entry.logprob - tops[0]) < 1e-4, entry

print("openai chat: ok")
