"""What the `openai` SDK tool-call scripts share (openai_tools.py, openai_qwen_xml_tools.py,
openai_family_tools.py import it from beside them): the client, a request that fails with the
server's message, the checks of an answer that is one forced call, and a stream's tool-call
deltas accumulated the way SDK users do."""
import openai


def connect(base: str) -> openai.OpenAI:
    """A client of our server at `base`, without retries."""
    return openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed", max_retries=0, timeout=600)


def creator(client: openai.OpenAI, uid: str, messages: list, tools: list):
    """`create(**kwargs)`: a chat completion of `messages` with `tools`; a refusal fails with the
    server's message."""

    def create(**kwargs):
        try:
            return client.chat.completions.create(model=uid, messages=messages, tools=tools, **kwargs)
        except openai.APIStatusError as e:
            raise AssertionError(f"{e.status_code}: {e.response.text}") from None

    return create


def only_call(response, name: str):
    """The one call of a whole answer that is nothing but a call of `name` (finish reason
    `tool_calls`, an OpenAI function call with a `call_` id, no content), and the raw answer
    seen through its logprobs tokens (`None` without logprobs)."""
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls", response
    calls = choice.message.tool_calls
    assert len(calls) == 1 and calls[0].type == "function" and calls[0].id.startswith("call_"), response
    assert calls[0].function.name == name, response
    assert not (choice.message.content or "").strip(), response
    raw = "".join(t.token for t in choice.logprobs.content) if choice.logprobs else None
    return calls[0], raw


def stream_calls(stream):
    """A streamed answer's tool-call deltas accumulated the way SDK users do: the calls by index
    (`id`, `name`, `arguments`), the content and the finish reason. Every chunk is a
    `ChatCompletionChunk`; a call's id and name come once."""
    calls, content, finish = {}, "", None
    for chunk in stream:
        assert isinstance(chunk, openai.types.chat.ChatCompletionChunk)
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for tc in delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                assert entry["id"] is None, "the id comes once"
                entry["id"] = tc.id
            if tc.function and tc.function.name:
                assert entry["name"] is None, "the name comes once"
                entry["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                entry["arguments"] += tc.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    return calls, content, finish
