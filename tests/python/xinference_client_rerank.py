"""The official Python `xinference-client` reranks against our server (argv: base URL, tiny
XLM-RoBERTa cross-encoder folder, its reference.json)."""
import json
import sys

from xinference_client import RESTfulClient

base, folder, reference_path = sys.argv[1], sys.argv[2], sys.argv[3]
reference = json.load(open(reference_path))["xlmr"]
client = RESTfulClient(base)

uid = client.launch_model(
    model_name="bge-reranker-base", model_type="rerank", model_uid="rr", model_path=folder
)
assert uid == "rr"
desc = client.describe_model("rr")
assert desc["model_type"] == "rerank" and desc["model_name"] == "bge-reranker-base", desc
model = client.get_model("rr")
assert type(model).__name__ == "RESTfulRerankModelHandle", type(model)

ref = reference["sets"][0]
query, docs = ref["query"], ref["documents"]

# Defaults: every document, best first, no documents, no token counts.
r = model.rerank(docs, query)
assert len(r["results"]) == len(docs), r
scores = [x["relevance_score"] for x in r["results"]]
assert scores == sorted(scores, reverse=True), scores
for x in r["results"]:
    assert abs(x["relevance_score"] - ref["scores"][x["index"]]) < 1e-4, (x, ref["scores"])
    assert x["document"] is None, x
assert r["meta"]["tokens"] is None, r["meta"]
assert isinstance(r["id"], str) and r["id"]

# top_n, return_documents and return_len as documented.
r = model.rerank(docs, query, top_n=2, return_documents=True, return_len=True)
assert len(r["results"]) == 2, r
for x in r["results"]:
    assert x["document"] == {"text": docs[x["index"]]}, x
assert r["meta"]["tokens"] == {"input_tokens": ref["tokens"], "output_tokens": ref["tokens"]}, r["meta"]

# max_chunks_per_doc splits long documents and keeps the best chunk.
long_ref = reference["sets"][2]
r = model.rerank(long_ref["documents"], long_ref["query"], max_chunks_per_doc=long_ref["max_chunks_per_doc"])
for x in r["results"]:
    assert abs(x["relevance_score"] - long_ref["chunked_scores"][x["index"]]) < 1e-4, x

# Extra keyword arguments travel (the instruction is prepended to the query).
r2 = model.rerank(docs, query, instruction="Find: ")
assert len(r2["results"]) == len(docs)

# Errors are RuntimeErrors with the server's detail.
try:
    model.rerank([], query)
    raise AssertionError("empty documents must fail")
except RuntimeError as e:
    assert "documents must not be empty" in str(e), e

client.terminate_model("rr")
print("xinference client rerank: ok")
