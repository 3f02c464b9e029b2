"""The official `openai` SDK's Responses API (`client.responses`) against a launched
Qwen2.5-coder GGUF (argv: base URL, model uid): plain text, streamed text (events in order,
`output_text` reassembles the deltas), a function call round trip, `json_schema` output,
`max_output_tokens` reaching `incomplete`, stored responses, and bad input as 4xx in OpenAI's
error shape. Schemas are checked with `jsonschema`."""
import json
import sys

import jsonschema
import openai

base, uid = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600)
GREEDY = dict(model=uid, temperature=0)

# --- plain text --------------------------------------------------------------------------------
r = client.responses.create(**GREEDY, input="What is the capital of France? Answer in one word.",
                            instructions="You are terse.", max_output_tokens=16,
                            metadata={"test": "plain"}, user="tester")
assert r.id.startswith("resp_") and r.object == "response", r
assert r.status == "completed", r
assert r.model == uid and r.metadata == {"test": "plain"} and r.user == "tester", r
assert r.instructions == "You are terse.", r
assert [o.type for o in r.output] == ["message"], r.output
assert r.output[0].role == "assistant" and r.output[0].content[0].type == "output_text", r.output
assert "Paris" in r.output_text, r.output_text
u = r.usage
assert u.input_tokens > 0 and u.output_tokens > 0, u
assert u.total_tokens == u.input_tokens + u.output_tokens, u
assert u.output_tokens_details.reasoning_tokens == 0, u
plain = r

# --- streamed text: OpenAI's event order, numbered, deltas reassemble output_text -------------
events = list(client.responses.create(**GREEDY, input="What is the capital of France? Answer in one word.",
                                      instructions="You are terse.", max_output_tokens=16, stream=True))
types = [e.type for e in events]
assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added"], types
assert types[-4:] == ["response.output_text.done", "response.content_part.done",
                      "response.output_item.done", "response.completed"], types
assert all(t == "response.output_text.delta" for t in types[4:-4]) and len(types) > 8, types
assert [e.sequence_number for e in events] == list(range(len(events))), events
text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
final = events[-1].response
assert final.status == "completed" and final.output_text == text, (final, text)
assert events[-4].text == text, events[-4]
assert events[0].response.id == final.id and events[0].response.status == "in_progress", events[0]
assert text == plain.output_text, (text, plain.output_text)  # greedy: the same answer
# The SDK's stream helper accumulates the same response.
with client.responses.stream(**GREEDY, input="What is the capital of France? Answer in one word.",
                             instructions="You are terse.", max_output_tokens=16) as stream:
    deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
    helper = stream.get_final_response()
assert helper.output_text == "".join(deltas) == text, (helper.output_text, deltas)

# --- a function call round trip ---------------------------------------------------------------
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "The city, e.g. Paris"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Get the current weather in a city",
          "parameters": WEATHER, "strict": True}]
QUESTION = [{"role": "user", "content": "What is the weather like in Paris today?"}]
r = client.responses.create(**GREEDY, input=QUESTION, tools=TOOLS, max_output_tokens=64)
calls = [o for o in r.output if o.type == "function_call"]
assert r.status == "completed" and len(calls) == 1, r.output
call = calls[0]
assert call.name == "get_weather" and call.call_id and call.id.startswith("fc_"), call
args = json.loads(call.arguments)
jsonschema.validate(args, WEATHER)
assert "Paris" in args["city"], args
assert "<tool_call>" not in r.output_text, r.output_text
# Streamed: function_call_arguments deltas, no tool markup in any text delta.
events = list(client.responses.create(**GREEDY, input=QUESTION, tools=TOOLS, max_output_tokens=64, stream=True))
types = [e.type for e in events]
assert "response.function_call_arguments.delta" in types, types
done = [e for e in events if e.type == "response.function_call_arguments.done"]
assert len(done) == 1 and json.loads(done[0].arguments) == args, done
assert not any("<tool_call>" in getattr(e, "delta", "") for e in events if e.type == "response.output_text.delta")
assert types[-1] == "response.completed", types
# The result goes back with the same call_id; the model answers in text.
answer = client.responses.create(
    **GREEDY, tools=TOOLS, tool_choice="none", max_output_tokens=48,
    input=QUESTION + [
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 22 degrees Celsius"},
    ],
)
assert answer.status in ("completed", "incomplete") and answer.output_text, answer
assert [o.type for o in answer.output] == ["message"], answer.output
# The same round trip through previous_response_id: the stored call is the history.
follow = client.responses.create(
    **GREEDY, tools=TOOLS, tool_choice="none", max_output_tokens=48, previous_response_id=r.id,
    input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 22 degrees Celsius"}],
)
assert follow.previous_response_id == r.id and follow.output_text == answer.output_text, (follow, answer)

# --- json_schema output: valid by construction -----------------------------------------------
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
r = client.responses.create(
    **GREEDY, input="Invent a person: give a name and an age.", max_output_tokens=64,
    text={"format": {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}},
)
assert r.status == "completed", r
jsonschema.validate(json.loads(r.output_text), PERSON)
assert r.text.format.type == "json_schema" and r.text.format.name == "person", r.text
r = client.responses.create(**GREEDY, input="Give a JSON object with one key.", max_output_tokens=48,
                            text={"format": {"type": "json_object"}})
assert isinstance(json.loads(r.output_text), dict), r.output_text

# --- max_output_tokens: incomplete ------------------------------------------------------------
r = client.responses.create(**GREEDY, input="Write a long story about a dragon.", max_output_tokens=5)
assert r.status == "incomplete", r
assert r.incomplete_details.reason == "max_output_tokens", r
assert r.usage.output_tokens == 5 and r.output[0].status == "incomplete", r
events = list(client.responses.create(**GREEDY, input="Write a long story about a dragon.",
                                      max_output_tokens=5, stream=True))
assert events[-1].type == "response.incomplete", [e.type for e in events]
assert events[-1].response.incomplete_details.reason == "max_output_tokens", events[-1]

# --- stored responses --------------------------------------------------------------------------
got = client.responses.retrieve(plain.id)
assert got.id == plain.id and got.output_text == plain.output_text and got.status == "completed", got
streamed = client.responses.retrieve(final.id)
assert streamed.output_text == final.output_text, streamed
items = client.responses.input_items.list(plain.id)
assert [i.type for i in items.data] == ["message"] and items.data[0].role == "user", items
assert items.data[0].content[0].text.startswith("What is the capital"), items
assert items.data[0].id.startswith("msg_"), items
items = client.responses.input_items.list(follow.id, order="asc")
assert [i.type for i in items.data] == ["function_call_output"], items
unstored = client.responses.create(**GREEDY, input="Hi", max_output_tokens=4, store=False)
assert unstored.store is False
deleted = client.responses.delete(plain.id)
for rid in (plain.id, unstored.id):
    try:
        client.responses.retrieve(rid)
        raise AssertionError(f"{rid} is still there")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.body["type"] == "invalid_request_error", e.body
        assert rid in e.body["message"], e.body

# --- bad input: 4xx in OpenAI's error shape ----------------------------------------------------
def rejected(status, needle, **kwargs):
    try:
        client.responses.create(**GREEDY, **kwargs)
    except openai.APIStatusError as e:
        assert e.status_code == status, (e.status_code, e.body)
        assert set(e.body) == {"message", "type", "param", "code"}, e.body
        assert needle in e.body["message"], (needle, e.body)
        return
    raise AssertionError(f"accepted: {kwargs}")


rejected(400, "unknown_item", input=[{"type": "unknown_item", "text": "x"}])
rejected(400, "schema", input="x", text={"format": {"type": "json_schema", "name": "n", "schema": "not a schema"}})
rejected(400, "invalid grammar", input="x", max_output_tokens=8,
         text={"format": {"type": "json_schema", "name": "n", "schema": {"type": "object", "properties": {"a": {"type": 7}}}}})
rejected(404, "resp_unknown", input="x", previous_response_id="resp_unknown")
rejected(400, "call_id", input=[{"type": "function_call_output", "call_id": "call_nope", "output": "x"}])
rejected(400, "web_search", input="x", tools=[{"type": "web_search"}])

print("openai responses: ok")
