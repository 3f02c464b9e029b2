"""The official `openai` SDK against our tool calls and structured output
(argv: base URL, model uid of a launched Qwen2.5-coder GGUF). Schemas are checked with `jsonschema`."""
import json
import sys

import jsonschema
import openai
from tool_calls import connect, stream_calls

base, uid = sys.argv[1], sys.argv[2]
client = connect(base)

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": WEATHER_SCHEMA,
        },
    }
]
STRICT_TOOLS = [{"type": "function", "function": {**TOOLS[0]["function"], "strict": True}}]
MESSAGES = [{"role": "user", "content": "What is the weather like in Paris today?"}]

# --- plain: the model's own answer becomes a tool call ---------------------------------------
r = client.chat.completions.create(model=uid, messages=MESSAGES, tools=TOOLS, temperature=0, max_tokens=96)
choice = r.choices[0]
assert choice.finish_reason == "tool_calls", r
calls = choice.message.tool_calls
assert calls and calls[0].type == "function" and calls[0].id.startswith("call_"), r
assert calls[0].function.name == "get_weather", r
args = json.loads(calls[0].function.arguments)
assert "Paris" in args["city"], args
assert not (choice.message.content or "").count("<tool_call>"), r

# --- streamed: OpenAI's tool-call deltas, accumulated the way SDK users do ------------------
stream = client.chat.completions.create(
    model=uid, messages=MESSAGES, tools=TOOLS, temperature=0, max_tokens=96, stream=True
)
calls, content, finish = stream_calls(stream)
assert finish == "tool_calls", (finish, calls, content)
assert "<tool_call>" not in content, content
assert calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("call_"), calls
assert "Paris" in json.loads(calls[0]["arguments"])["city"], calls

# --- strict tools, required: valid against the schema on every seed -------------------------
for seed in range(5):
    r = client.chat.completions.create(
        model=uid, messages=MESSAGES, tools=STRICT_TOOLS, tool_choice="required", seed=seed, max_tokens=80
    )
    call = r.choices[0].message.tool_calls[0]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_SCHEMA)

# --- history with the call and its result ---------------------------------------------------
history = MESSAGES + [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris", "unit": "celsius"})}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": json.dumps({"temperature": 21, "sky": "sunny"})},
]
r = client.chat.completions.create(model=uid, messages=history, tools=TOOLS, temperature=0, max_tokens=40)
assert r.choices[0].finish_reason == "stop", r
assert "21" in r.choices[0].message.content, r

# --- response_format json_schema through the SDK's own parse helper -------------------------
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
for seed in range(5):
    r = client.chat.completions.create(
        model=uid,
        messages=[{"role": "user", "content": "Invent a person, as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
        seed=seed,
        max_tokens=48,
    )
    jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)

# --- guided_choice (Xinference's extra field) through extra_body ----------------------------
r = client.chat.completions.create(
    model=uid,
    messages=[{"role": "user", "content": "Is the sky blue? Answer yes or no."}],
    extra_body={"guided_choice": ["yes", "no"]},
    max_tokens=4,
    seed=0,
)
assert r.choices[0].message.content in ("yes", "no"), r

# --- errors: a bad tool_choice is a 400 -----------------------------------------------------
try:
    client.chat.completions.create(
        model=uid, messages=MESSAGES, tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "not_a_tool"}}, max_tokens=4,
    )
    raise AssertionError("expected a 400")
except openai.BadRequestError as e:
    # Xinference's error shape is {"detail": ...}, which the SDK does not put in str(e).
    assert e.status_code == 400 and "not_a_tool" in e.response.text, e.response.text

print("openai tools: ok")
