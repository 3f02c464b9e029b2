"""The official `openai` SDK against Qwen3.5's XML tool calls (argv: base URL, model uid of the
tiny qwen35 GGUF launched as `qwen3.5`). The random model only writes a call because the
forced `tool_choice` holds it to Qwen3.5's own format
(`<tool_call>\\n<function=NAME>\\n<parameter=KEY>\\nVALUE\\n</parameter>...`); what is checked is
that the call comes back as OpenAI tool calls, whole and streamed, with every argument typed by
the tool's schema (integers, numbers and booleans parsed, strings kept as text; objects in the
parser's unit tests), and that the raw answer (seen through its logprobs tokens) was XML, not
JSON."""
import json
import sys

import jsonschema
from tool_calls import connect, creator, only_call, stream_calls

base, uid = sys.argv[1], sys.argv[2]
client = connect(base)

# Short names and bounded values: the fixture has 512 positions and a 512-token vocabulary, so
# the tools' description and the call must fit in them.
SCHEMA = {
    "type": "object",
    "properties": {
        "s": {"type": "string", "maxLength": 3},
        "i": {"type": "integer", "minimum": 1, "maximum": 9},
        "n": {"type": "number", "enum": [0.5, 2.25]},
        "b": {"type": "boolean"},
    },
    "required": ["s", "i", "n", "b"],
}
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}]
MESSAGES = [{"role": "user", "content": "Hi"}]
NAMED = {"type": "function", "function": {"name": "f"}}

create = creator(client, uid, MESSAGES, TOOLS)

def check_arguments(arguments: str) -> dict:
    args = json.loads(arguments)
    jsonschema.validate(args, SCHEMA)
    # Typed by the schema: a JSON integer, float and boolean; the string stays a string even
    # when the model wrote digits.
    assert type(args["i"]) is int, args
    assert type(args["n"]) is float, args
    assert type(args["b"]) is bool, args
    assert type(args["s"]) is str, args
    return args


# --- whole answer, named tool ----------------------------------------------------------------
r = create(
    tool_choice=NAMED, temperature=0,
    max_tokens=150, parallel_tool_calls=False, logprobs=True,
)
call, raw = only_call(r, "f")
whole = check_arguments(call.function.arguments)
assert raw.startswith("<tool_call>\n<function=f>\n<parameter="), raw
assert "</parameter>" in raw and '"arguments"' not in raw, raw

# --- streamed: the same greedy call, accumulated as SDK users do -----------------------------
stream = create(
    tool_choice=NAMED, temperature=0,
    max_tokens=150, parallel_tool_calls=False, stream=True,
)
acc, content, finish = stream_calls(stream)
assert finish == "tool_calls", (finish, acc, content)
assert "<function=" not in content and "<parameter=" not in content, content
assert list(acc) == [0] and acc[0]["name"] == "f", acc
assert check_arguments(acc[0]["arguments"]) == whole, (acc, whole)

# --- required, sampled: a valid call on every seed ------------------------------------------
for seed in range(3):
    r = create(tool_choice="required", seed=seed, max_tokens=150, parallel_tool_calls=False)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "f", call
    check_arguments(call.function.arguments)

print(f"call: {whole}")
print("openai qwen xml tools: ok")
