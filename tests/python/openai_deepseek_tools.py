"""The official `openai` SDK against DeepSeek-R1's tool calls (argv: base URL, model uid of the
tiny qwen2 GGUF launched as `deepseek-r1-distill-qwen`, whose registry template writes
`<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{...}\\n```
<｜tool▁call▁end｜><｜tool▁calls▁end｜>`). The random model only writes a call because the forced
`tool_choice` holds it to that format; what is checked is that the call comes back as OpenAI
tool calls, whole and streamed, valid against the tool's schema, and that no call markup leaks
into the content."""
import json
import sys

import jsonschema
import openai

base, uid = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600)

# A short name and bounded values: the fixture has 512 positions and a 512-token vocabulary.
SCHEMA = {
    "type": "object",
    "properties": {"i": {"type": "integer", "enum": [1, 2]}},
    "required": ["i"],
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
r = create(tool_choice=NAMED, temperature=0, max_tokens=100, parallel_tool_calls=False)
choice = r.choices[0]
assert choice.finish_reason == "tool_calls", r
calls = choice.message.tool_calls
assert len(calls) == 1 and calls[0].type == "function" and calls[0].id.startswith("call_"), r
assert calls[0].function.name == "f", r
whole = json.loads(calls[0].function.arguments)
jsonschema.validate(whole, SCHEMA)
assert not (choice.message.content or "").strip(), r

# --- streamed: the same greedy call -----------------------------------------------------------
stream = create(
    tool_choice=NAMED, temperature=0, max_tokens=100, parallel_tool_calls=False, stream=True
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
assert "tool▁" not in content and "```" not in content, content
assert list(acc) == [0] and acc[0]["name"] == "f", acc
assert json.loads(acc[0]["arguments"]) == whole, (acc, whole)

print(f"call: {whole}")
print("openai deepseek tools: ok")
