"""The official `openai` SDK against our /v1/embeddings (argv: base URL, model uid)."""
import math
import sys

import openai

base, uid = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed")


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# The SDK asks for base64 by default and decodes it itself.
r = client.embeddings.create(model=uid, input="A man is eating food.")
assert r.object == "list" and r.model == uid, r
assert len(r.data) == 1 and len(r.data[0].embedding) == 384
assert r.usage.prompt_tokens == 8 and r.usage.total_tokens == 8, r.usage
first = r.data[0].embedding

r = client.embeddings.create(
    model=uid, input=["A man is eating food.", "A man is eating a piece of bread."], encoding_format="float"
)
assert [d.index for d in r.data] == [0, 1]
assert abs(cosine(r.data[0].embedding, first) - 1) < 1e-5
c = cosine(r.data[0].embedding, r.data[1].embedding)
assert abs(c - 0.755) < 1e-3, c

r = client.embeddings.create(model=uid, input="A man is eating food.", dimensions=128)
assert len(r.data[0].embedding) == 128

# Xinference's truncate_prompt_tokens, through the SDK's extra_body.
r = client.embeddings.create(
    model=uid, input="A man is eating food.", extra_body={"truncate_prompt_tokens": 4}
)
assert r.usage.prompt_tokens == 4, r.usage
try:
    client.embeddings.create(model=uid, input="word " * 400, extra_body={"truncate": False})
    raise AssertionError("an over-long input with truncation off must fail")
except openai.BadRequestError as e:
    assert "truncat" in str(e.body), e.body

# Sixteen threads at once, one sentence each: every answer is its own sentence's vector.
from concurrent.futures import ThreadPoolExecutor

sentences = [f"Sentence number {i} is about topic {i % 5}." for i in range(16)]
alone = [client.embeddings.create(model=uid, input=s, encoding_format="float").data[0].embedding
         for s in sentences]
with ThreadPoolExecutor(16) as pool:
    together = list(pool.map(
        lambda s: client.embeddings.create(model=uid, input=s, encoding_format="float").data[0].embedding,
        sentences))
for a, b in zip(alone, together):
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5

try:
    client.embeddings.create(model="no-such-model", input="x")
    raise AssertionError("an unknown model must fail")
except openai.NotFoundError as e:
    assert e.status_code == 404 and "no-such-model" in str(e.body), (e.status_code, e.body)
try:
    client.embeddings.create(model=uid, input=[])
    raise AssertionError("empty input must fail")
except openai.BadRequestError:
    pass

models = client.models.list()
assert uid in [m.id for m in models.data]
print("openai sdk: ok")
