"""The official `openai` SDK chatting with a Gemma 3 GGUF that has Gemma's chat template
(argv: base URL, model uid, the rendered prompt's token count)."""
import sys

import openai

base, uid, prompt_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600)
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]

r = client.chat.completions.create(model=uid, messages=QUESTION, temperature=0, max_tokens=24)
choice = r.choices[0]
content = choice.message.content
assert choice.message.role == "assistant", choice
assert content and content.strip(), r
assert "<end_of_turn>" not in content and "<start_of_turn>" not in content, content
assert choice.finish_reason in ("stop", "length"), choice
assert r.usage.prompt_tokens == prompt_tokens, (r.usage, prompt_tokens)
assert 0 < r.usage.completion_tokens <= 24, r.usage

chunks = list(
    client.chat.completions.create(
        model=uid, messages=QUESTION, temperature=0, max_tokens=24, stream=True
    )
)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert streamed == content, (streamed, content)
print(f"answer: {content!r} ({choice.finish_reason})")
print("openai gemma3 chat: ok")
