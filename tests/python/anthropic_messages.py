"""The official `anthropic` SDK against our Anthropic Messages API
(argv: base URL, model uid of a launched chat LLM)."""
import sys

import anthropic

base, uid = sys.argv[1], sys.argv[2]
# The SDK posts to {base_url}/v1/messages (with anthropic-version: 2023-06-01); the same API is
# also served under /anthropic, where /anthropic/v1/models lives.
client = anthropic.Anthropic(base_url=base, api_key="not-needed", max_retries=0, timeout=600)
prefixed = anthropic.Anthropic(
    base_url=f"{base}/anthropic", api_key="not-needed", max_retries=0, timeout=600
)

# anthropic 2.x has no sampling keywords (temperature, top_p, top_k); the API still takes them.
GREEDY = {"temperature": 0}
SYSTEM = "You are a helpful assistant."
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]

# --- whole message ---------------------------------------------------------------------------
r = client.messages.create(
    model=uid, system=SYSTEM, messages=QUESTION, max_tokens=32, extra_body=GREEDY
)
assert type(r).__name__ == "Message", type(r)
assert r.type == "message" and r.role == "assistant" and r.model == uid, r
assert r.id.startswith("msg_"), r.id
assert [b.type for b in r.content] == ["text"], r.content
text = r.content[0].text
assert "Paris" in text, text
assert r.stop_reason in ("end_turn", "max_tokens"), r
assert r.stop_sequence is None, r
assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0, r.usage
whole = r

# The same on /anthropic/v1/messages, with the system prompt as blocks.
r = prefixed.messages.create(
    model=uid,
    system=[{"type": "text", "text": SYSTEM}],
    messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION[0]["content"]}]}],
    max_tokens=32,
    extra_body=GREEDY,
)
assert r.content[0].text == text, (r.content, text)
assert r.usage.model_dump() == whole.usage.model_dump(), (r.usage, whole.usage)

# --- raw stream: the exact event sequence (the SDK drops `ping` itself) ----------------------
events = list(
    client.messages.create(
        model=uid, system=SYSTEM, messages=QUESTION, max_tokens=32, extra_body=GREEDY, stream=True
    )
)
types = [e.type for e in events]
n = len(types)
assert n >= 6, types
assert types[:2] == ["message_start", "content_block_start"], types
assert types[2:-3] == ["content_block_delta"] * (n - 5), types
assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"], types
start = events[0].message
assert start.id.startswith("msg_") and start.model == uid and start.content == [], start
assert events[1].index == 0 and events[1].content_block.type == "text", events[1]
assert all(e.index == 0 and e.delta.type == "text_delta" for e in events[2:-3]), events
assert "".join(e.delta.text for e in events[2:-3]) == text, events
assert events[-2].delta.stop_reason == whole.stop_reason, events[-2]
assert events[-2].usage.output_tokens == whole.usage.output_tokens, events[-2]

# --- the SDK's stream helper accumulates the same message ------------------------------------
with client.messages.stream(
    model=uid, system=SYSTEM, messages=QUESTION, max_tokens=32, extra_body=GREEDY
) as stream:
    streamed = "".join(stream.text_stream)
    final = stream.get_final_message()
assert streamed == text, (streamed, text)
assert final.content[0].text == text and final.stop_reason == whole.stop_reason, final
assert final.usage.model_dump() == whole.usage.model_dump(), (final.usage, whole.usage)

# --- stop_sequences ----------------------------------------------------------------------------
r = client.messages.create(
    model=uid,
    system=SYSTEM,
    messages=QUESTION,
    max_tokens=32,
    extra_body=GREEDY,
    stop_sequences=["Paris"],
)
assert r.stop_reason == "stop_sequence" and r.stop_sequence == "Paris", r
assert r.content[0].text == text[: text.index("Paris")], (r.content, text)
with client.messages.stream(
    model=uid,
    system=SYSTEM,
    messages=QUESTION,
    max_tokens=32,
    extra_body=GREEDY,
    stop_sequences=["Paris"],
) as stream:
    final = stream.get_final_message()
assert final.stop_reason == "stop_sequence" and final.stop_sequence == "Paris", final

# --- max_tokens ----------------------------------------------------------------------------
r = client.messages.create(
    model=uid, system=SYSTEM, messages=QUESTION, max_tokens=2, extra_body=GREEDY
)
assert r.stop_reason == "max_tokens" and r.usage.output_tokens == 2, r

# --- errors, as the SDK's exception classes ------------------------------------------------
try:
    client.messages.create(model=uid, messages=QUESTION, max_tokens=anthropic.NOT_GIVEN)
    raise AssertionError("a request without max_tokens must fail")
except anthropic.BadRequestError as e:
    assert e.status_code == 400 and e.body["type"] == "error", e.body
    assert e.body["error"]["type"] == "invalid_request_error", e.body
    assert "max_tokens" in e.body["error"]["message"], e.body

try:
    client.messages.create(model="no-such-model", messages=QUESTION, max_tokens=8)
    raise AssertionError("an unknown model must fail")
except anthropic.NotFoundError as e:
    assert e.body["error"]["type"] == "not_found_error", e.body

try:
    client.messages.create(
        model=uid,
        max_tokens=8,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}},
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    raise AssertionError("an image must be refused")
except anthropic.BadRequestError as e:
    assert "image" in e.body["error"]["message"], e.body

# --- /anthropic/v1/models ------------------------------------------------------------------
page = prefixed.models.list()
assert [m.id for m in page.data] == [uid], page
m = page.data[0]
assert m.type == "model" and m.display_name == "qwen2.5-coder-instruct", m
assert m.lifecycle == "active" and m.max_tokens > 0 and m.created_at.year == 1970, m
assert page.has_more is False and page.first_id == uid and page.last_id == uid, page
assert prefixed.models.retrieve(uid).id == uid
try:
    prefixed.models.retrieve("no-such-model")
    raise AssertionError("an unknown model must be a 404")
except anthropic.NotFoundError:
    pass

print("anthropic sdk: ok")
