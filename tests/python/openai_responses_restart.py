"""The official `openai` SDK: a stored response outlives the server (argv: base URL, model
uid, then `create`, or `continue` and the stored id). `create` stores a turn that gives the
model a name and prints `stored: <id>`; `continue`, run against a restarted server, reads the
stored response back and continues it with `previous_response_id`."""
import sys

import openai

base, uid, step = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600)
FIRST = "My name is Zorblax. Please remember my name."
QUESTION = "What is my name? Answer with the name only."

if step == "create":
    r = client.responses.create(model=uid, input=FIRST, temperature=0, max_output_tokens=24)
    assert r.status in ("completed", "incomplete") and r.store, r
    print(f"stored: {r.id}")
    sys.exit(0)

previous = sys.argv[4]
got = client.responses.retrieve(previous)
assert got.id == previous and got.output_text, got
items = client.responses.input_items.list(previous)
assert items.data[0].content[0].text == FIRST, items

alone = client.responses.create(model=uid, input=QUESTION, temperature=0, max_output_tokens=12, store=False)
r = client.responses.create(model=uid, input=QUESTION, temperature=0, max_output_tokens=12,
                            previous_response_id=previous)
assert r.previous_response_id == previous, r
# The stored turn is in the prompt: more input tokens than the question alone, and the model
# knows the name it was told before the restart.
extra = r.usage.input_tokens - alone.usage.input_tokens
assert extra > 10, (r.usage, alone.usage)
assert "Zorblax" in r.output_text, r.output_text
assert "Zorblax" not in alone.output_text, alone.output_text
# Only this request's items are its input items.
items = client.responses.input_items.list(r.id)
assert [i.content[0].text for i in items.data] == [QUESTION], items
print("restart: ok")
