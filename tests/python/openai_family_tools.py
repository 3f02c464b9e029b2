"""The official `openai` SDK against a model family's own tool-call format (argv: base URL, model
uid of a tiny GGUF launched under the family's registry name, then the markers of its format:
e.g. DeepSeek-R1's `<｜tool▁calls▁begin｜>...` or Gemma 4's `<|tool_call>call:NAME{...}`).
The random model only writes a call because the forced `tool_choice` holds it to the format;
what is checked is that the call comes back as OpenAI tool calls, whole and streamed, valid
against the tool's schema, that the raw answer (seen through its logprobs tokens) was written
in the format, and that no call markup leaks into the content."""
import json
import sys

import jsonschema
import openai

base, uid, markers = sys.argv[1], sys.argv[2], sys.argv[3:]
client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600)

# A short name and bounded values: the fixtures have 512 positions and a 512-token vocabulary
# (markers missing from it are written byte by byte).
SCHEMA = {
    "type": "object",
    "properties": {"i": {"type": "integer", "enum": [1, 2]}, "s": {"type": "string", "maxLength": 2}},
    "required": ["i", "s"],
    "additionalProperties": False,
}
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}]
MESSAGES = [{"role": "user", "content": "Hi"}]
NAMED = {"type": "function", "function": {"name": "f"}}


def create(**kwargs):
    """A chat completion; a refusal fails with the server's message."""
    try:
        return client.chat.completions.create(model=uid, messages=MESSAGES, tools=TOOLS, **kwargs)
    except openai.APIStatusError as e:
        raise AssertionError(f"{e.status_code}: {e.response.text}") from None


# --- whole answer ------------------------------------------------------------------------------
r = create(
    tool_choice=NAMED, temperature=0, max_tokens=145, parallel_tool_calls=False, logprobs=True
)
choice = r.choices[0]
assert choice.finish_reason == "tool_calls", r
calls = choice.message.tool_calls
assert len(calls) == 1 and calls[0].type == "function" and calls[0].id.startswith("call_"), r
assert calls[0].function.name == "f", r
whole = json.loads(calls[0].function.arguments)
jsonschema.validate(whole, SCHEMA)
assert type(whole["i"]) is int and type(whole["s"]) is str, whole
assert not (choice.message.content or "").strip(), r
raw = "".join(t.token for t in choice.logprobs.content)
for marker in markers:
    assert marker in raw, (marker, raw)

# --- streamed: the same greedy call -----------------------------------------------------------
stream = create(
    tool_choice=NAMED, temperature=0, max_tokens=145, parallel_tool_calls=False, stream=True
)
acc, content, finish = {}, "", None
for chunk in stream:
    if not chunk.choices:
        continue
    delta = chunk.choices[0].delta
    content += delta.content or ""
    for tc in delta.tool_calls or []:
        entry = acc.setdefault(tc.index, {"name": None, "arguments": ""})
        if tc.function and tc.function.name:
            entry["name"] = tc.function.name
        if tc.function and tc.function.arguments:
            entry["arguments"] += tc.function.arguments
    finish = chunk.choices[0].finish_reason or finish
assert finish == "tool_calls", (finish, acc, content)
assert not any(m in content for m in markers), content
assert list(acc) == [0] and acc[0]["name"] == "f", acc
assert json.loads(acc[0]["arguments"]) == whole, (acc, whole)

print(f"call: {whole}")
print("openai family tools: ok")
