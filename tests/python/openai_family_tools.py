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
from tool_calls import connect, creator, only_call, stream_calls

base, uid, markers = sys.argv[1], sys.argv[2], sys.argv[3:]
client = connect(base)

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

create = creator(client, uid, MESSAGES, TOOLS)

# --- whole answer ------------------------------------------------------------------------------
r = create(
    tool_choice=NAMED, temperature=0, max_tokens=145, parallel_tool_calls=False, logprobs=True
)
call, raw = only_call(r, "f")
whole = json.loads(call.function.arguments)
jsonschema.validate(whole, SCHEMA)
assert type(whole["i"]) is int and type(whole["s"]) is str, whole
for marker in markers:
    assert marker in raw, (marker, raw)

# --- streamed: the same greedy call -----------------------------------------------------------
stream = create(
    tool_choice=NAMED, temperature=0, max_tokens=145, parallel_tool_calls=False, stream=True
)
acc, content, finish = stream_calls(stream)
assert finish == "tool_calls", (finish, acc, content)
assert not any(m in content for m in markers), content
assert list(acc) == [0] and acc[0]["name"] == "f", acc
assert json.loads(acc[0]["arguments"]) == whole, (acc, whole)

print(f"call: {whole}")
print("openai family tools: ok")
