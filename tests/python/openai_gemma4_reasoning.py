"""The official `openai` SDK asking the tiny Gemma 4 fixture to think (argv: base URL, model uid,
the prompt's token counts with thinking off and on, a Lark grammar that makes the random model
write `<|channel>thought\\n...<channel|>` and then an answer). Checked: `enable_thinking` (in
`extra_body`, as the SDK sends it) reaches the chat template (the prompt grows by its
`<|think|>` line), the reasoning goes to `reasoning_content` and never to `content`, whole and
streamed, and `usage` counts the reasoning tokens."""
import sys

import openai

base, uid, tokens_off, tokens_on, grammar = sys.argv[1:6]
client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600)
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
MARKUP = ("<|channel>", "<channel|>", "thought\n", "<|think|>", "<|turn>", "<turn|>")

# Thinking off (the default): the template renders no <|think|>, nothing is reasoning.
r = client.chat.completions.create(model=uid, messages=QUESTION, temperature=0, max_tokens=8)
assert r.usage.prompt_tokens == int(tokens_off), (r.usage, tokens_off)
assert getattr(r.choices[0].message, "reasoning_content", None) is None, r.choices[0].message

thinking = {"enable_thinking": True, "guided_grammar": grammar}
r = client.chat.completions.create(
    model=uid, messages=QUESTION, temperature=0, max_tokens=64, extra_body=thinking
)
assert r.usage.prompt_tokens == int(tokens_on), (r.usage, tokens_on)
message = r.choices[0].message
reasoning = getattr(message, "reasoning_content", None)
content = message.content or ""
assert reasoning, message
assert content, message
for mark in MARKUP:
    assert mark not in content, (mark, content)
    assert mark not in reasoning, (mark, reasoning)
details = r.usage.completion_tokens_details
assert details is not None and 0 < details.reasoning_tokens < r.usage.completion_tokens, r.usage

chunks = list(
    client.chat.completions.create(
        model=uid, messages=QUESTION, temperature=0, max_tokens=64, stream=True,
        extra_body=thinking,
    )
)
deltas = [c.choices[0].delta for c in chunks if c.choices]
streamed_reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
streamed_content = "".join(d.content or "" for d in deltas)
assert streamed_reasoning.rstrip() == reasoning, (streamed_reasoning, reasoning)
assert streamed_content == content, (streamed_content, content)
for d in deltas:
    for mark in MARKUP:
        assert mark not in (d.content or ""), (mark, d)
print(f"reasoning: {reasoning!r}, answer: {content!r} "
      f"({details.reasoning_tokens} of {r.usage.completion_tokens} tokens reasoning)")
print("openai gemma4 reasoning: ok")
