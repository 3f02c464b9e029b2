"""The official `anthropic` SDK: a weather tool prompt yields a parsed `tool_use` block, whole
and streamed, and the tool's result can be sent back (argv: base URL, model uid)."""
import sys

import anthropic

base, uid = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=base, api_key="not-needed", max_retries=0, timeout=600)

# anthropic 2.x has no sampling keywords (temperature, top_p, top_k); the API still takes them.
GREEDY = {"temperature": 0}
TOOLS = [
    {
        "name": "get_weather",
        "description": "Get the current weather in a given city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city, e.g. Paris"}},
            "required": ["city"],
        },
    }
]
QUESTION = [{"role": "user", "content": "What is the weather like in Paris today?"}]
ARGS = dict(model=uid, tools=TOOLS, messages=QUESTION, max_tokens=64, extra_body=GREEDY)


def the_call(message):
    assert message.stop_reason == "tool_use", message
    calls = [b for b in message.content if b.type == "tool_use"]
    assert len(calls) == 1, message.content
    call = calls[0]
    assert call.name == "get_weather", call
    assert isinstance(call.input, dict) and "Paris" in call.input.get("city", ""), call
    assert call.id, call
    return call


# --- whole ---------------------------------------------------------------------------------
r = client.messages.create(**ARGS)
call = the_call(r)

# --- streamed: the tool call arrives as input_json_delta fragments ------------------------
events = list(client.messages.create(**ARGS, stream=True))
types = [e.type for e in events]
assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"], types
starts = [e for e in events if e.type == "content_block_start"]
tool_starts = [e for e in starts if e.content_block.type == "tool_use"]
assert len(tool_starts) == 1 and tool_starts[0].content_block.name == "get_weather", starts
assert any(
    e.type == "content_block_delta" and e.delta.type == "input_json_delta" for e in events
), types
with client.messages.stream(**ARGS) as stream:
    final = stream.get_final_message()
streamed_call = the_call(final)
assert streamed_call.input == call.input, (streamed_call.input, call.input)

# --- the tool's result goes back; the model answers in text --------------------------------
# (tool_choice none: a 0.5B model at temperature 0 may otherwise call the tool again.)
r = client.messages.create(
    model=uid,
    tools=TOOLS,
    tool_choice={"type": "none"},
    max_tokens=48,
    extra_body=GREEDY,
    messages=QUESTION
    + [
        {"role": "assistant", "content": [b.model_dump() for b in r.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 22 degrees Celsius"}
            ],
        },
    ],
)
assert r.stop_reason in ("end_turn", "max_tokens"), r
assert any(b.type == "text" and b.text for b in r.content), r.content

print("anthropic tool_use: ok")
