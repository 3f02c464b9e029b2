"""The official `openai` SDK chatting with a tiny random GGUF fixture (argv: base URL, model uid):
a whole answer and the same answer streamed. Random weights say nothing sensible; what is checked
is the wire: an assistant message, a finish reason, usage, and the stream adding up to the
whole answer."""
import sys

import openai

base, uid = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600)
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]

r = client.chat.completions.create(model=uid, messages=QUESTION, temperature=0, max_tokens=12)
choice = r.choices[0]
assert choice.message.role == "assistant", choice
assert choice.finish_reason in ("stop", "length"), choice
assert r.usage.prompt_tokens > 10, r.usage
assert 0 < r.usage.completion_tokens <= 12, r.usage
content = choice.message.content or ""

chunks = list(
    client.chat.completions.create(
        model=uid, messages=QUESTION, temperature=0, max_tokens=12, stream=True
    )
)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert streamed == content, (streamed, content)
print(f"answer: {content!r} ({choice.finish_reason}, {r.usage.completion_tokens} tokens)")
print("openai tiny chat: ok")
