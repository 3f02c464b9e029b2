"""The official `openai` SDK and `xinference-client` against our image routes
(argv: base URL, model uid). Prints "image clients: ok"."""
import base64
import io
import sys
import urllib.request

import openai
from xinference_client import RESTfulClient

base, uid = sys.argv[1], sys.argv[2]
PNG = b"\x89PNG\r\n\x1a\n"

client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed")
r = client.images.generate(
    model=uid,
    prompt="an apple",
    size="64x64",
    response_format="b64_json",
    extra_body={"seed": 42, "num_inference_steps": 2},
)
assert len(r.data) == 1, r
first = base64.b64decode(r.data[0].b64_json)
assert first.startswith(PNG), first[:8]

# url: a real HTTP URL of this server, serving the same PNG.
r = client.images.generate(
    model=uid, prompt="an apple", size="64x64", response_format="url",
    extra_body={"seed": 42, "num_inference_steps": 2},
)
url = r.data[0].url
assert url.startswith(base + "/v1/images/files/"), url
with urllib.request.urlopen(url) as f:
    assert f.read() == first

# OpenAI's output_format.
r = client.images.generate(
    model=uid, prompt="an apple", size="64x64", response_format="b64_json", output_format="jpeg",
    extra_body={"seed": 42, "num_inference_steps": 2},
)
assert base64.b64decode(r.data[0].b64_json)[:3] == b"\xff\xd8\xff"

try:
    client.images.generate(model=uid, prompt="x", size="60x64", response_format="b64_json")
    raise AssertionError("a bad size must fail")
except openai.BadRequestError as e:
    assert "multiple" in e.response.json()["detail"], e.response.text

# Xinference's own client: text_to_image sends options as a JSON string in kwargs.
xc = RESTfulClient(base)
model = xc.get_model(uid)
out = model.text_to_image("an apple", size="64*64", response_format="b64_json", seed=42, num_inference_steps=2)
assert base64.b64decode(out["data"][0]["b64_json"]) == first
out = model.image_to_image(
    image=first, prompt="an apple", size="64*64", response_format="b64_json",
    seed=3, num_inference_steps=4, strength=0.5,
)
assert base64.b64decode(out["data"][0]["b64_json"]).startswith(PNG)
# Inpainting (multipart image + mask_image) with the committed 64x64 fixture mask.
from pathlib import Path

mask = (Path(__file__).resolve().parents[1] / "fixtures" / "tiny-inpaint" / "mask.png").read_bytes()
out = model.inpainting(
    image=first, mask_image=mask, prompt="an apple", size="64*64", response_format="b64_json",
    seed=3, num_inference_steps=3,
)
assert base64.b64decode(out["data"][0]["b64_json"]).startswith(PNG)
try:
    model.inpainting(image=first, mask_image=b"not an image", prompt="x", response_format="b64_json")
    raise AssertionError("a bad mask must fail")
except RuntimeError as e:
    assert "mask" in str(e), e
print("image clients: ok")
