"""The docs' LLM example through the official Python `xinference-client` (argv: base URL):
launch a GGUF chat model with the llama.cpp engine name (downloaded from the hub), chat,
stream, generate, terminate."""
import sys

from xinference_client import RESTfulClient

client = RESTfulClient(sys.argv[1])
uid = client.launch_model(
    model_name="smollm2-instruct",
    model_engine="llama.cpp",
    model_format="ggufv2",
    model_size_in_billions="0_135",
    quantization="Q4_1",
)
assert uid == "smollm2-instruct", uid
desc = client.describe_model(uid)
assert desc["model_type"] == "LLM" and desc["model_format"] == "ggufv2" and desc["quantization"] == "Q4_1", desc
assert "chat" in desc["model_ability"]

model = client.get_model(uid)
r = model.chat(
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    generate_config={"max_tokens": 16, "temperature": 0},
)
answer = r["choices"][0]["message"]["content"]
assert r["choices"][0]["finish_reason"] in ("stop", "length") and answer, r
assert r["usage"]["completion_tokens"] > 0

chunks = list(
    model.chat(
        messages=[{"role": "user", "content": "Say hello."}],
        generate_config={"max_tokens": 8, "temperature": 0, "stream": True},
    )
)
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant", chunks[0]
finals = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
assert len(finals) == 1 and finals[0]["choices"][0]["delta"] == {"content": ""}, finals
text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
assert text, chunks

r = model.generate("Once upon a time", generate_config={"max_tokens": 8, "temperature": 0})
assert r["choices"][0]["finish_reason"] == "length" and r["usage"]["completion_tokens"] == 8, r

client.terminate_model(uid)
assert client.list_models() == {}
print("xinference client llm: ok")
