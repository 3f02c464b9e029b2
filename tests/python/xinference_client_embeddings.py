"""The official Python `xinference-client` against our server (argv: base URL, MiniLM folder)."""
import json
import sys

from xinference_client import RESTfulClient

base, minilm = sys.argv[1], sys.argv[2]
client = RESTfulClient(base)

assert client.list_models() == {}
uid = client.launch_model(
    model_name="all-MiniLM-L6-v2", model_type="embedding", model_uid="mini", model_path=minilm
)
assert uid == "mini"
models = client.list_models()
assert list(models) == ["mini"] and models["mini"]["model_type"] == "embedding", models
desc = client.describe_model("mini")
assert desc["model_name"] == "all-MiniLM-L6-v2" and desc["replica"] == 1 and desc["dimensions"] == 384

model = client.get_model("mini")
r = model.create_embedding(["A man is eating food.", "hello"])
assert len(r["data"]) == 2 and len(r["data"][0]["embedding"]) == 384
assert r["model"] == "mini" and r["model_replica"] is not None

regs = client.list_model_registrations("embedding")
assert {"model_name": "bge-small-en-v1.5", "is_builtin": True} in regs
family = client.get_model_registration("embedding", "all-MiniLM-L6-v2")
assert family["dimensions"] == 384

custom = {
    "version": 2,
    "model_name": "client-minilm",
    "dimensions": 384,
    "max_tokens": 256,
    "language": ["en"],
    "model_specs": [{"model_format": "pytorch", "model_id": "sentence-transformers/all-MiniLM-L6-v2",
                     "model_uri": f"file://{minilm}", "quantization": "none"}],
}
client.register_model(model_type="embedding", model=json.dumps(custom), persist=False)
assert {"model_name": "client-minilm", "is_builtin": False} in client.list_model_registrations("embedding")
client.unregister_model(model_type="embedding", model_name="client-minilm")

engines = client.query_engine_by_model_name("all-MiniLM-L6-v2", model_type="embedding")
assert "sentence_transformers" in engines, engines

try:
    client.get_model("nope")
    raise AssertionError("unknown uid must raise")
except RuntimeError as e:
    assert "nope" in str(e)

client.terminate_model("mini")
assert client.list_models() == {}
try:
    client.terminate_model("mini")
    raise AssertionError("terminating twice must raise")
except RuntimeError:
    pass
print("xinference client: ok")
