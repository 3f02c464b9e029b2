#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/ (small, hand-made or
cut from the test fixtures). The fuzzer adds what it finds (then `scripts/fuzz.sh` minimises
the corpus); run this again only to restore the seeds."""
import json, struct, zlib, io, wave, math, pathlib, shutil

ROOT = pathlib.Path(__file__).resolve().parent
REPO = ROOT.parent
CORPUS = ROOT / "corpus"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, (dict, list)):
        data = json.dumps(data)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
put("chat_request", "basic.json", {"model": "m", "messages": msgs, "max_tokens": 8})
put("chat_request", "tools.json", {"model": "m", "messages": msgs, "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}], "tool_choice": "required"})
put("chat_request", "schema.json", {"model": "m", "messages": msgs, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}}, "n": 2, "logprobs": True, "top_logprobs": 3})
put("chat_request", "guided.json", {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "guided_regex": "[a-z]+", "stop": ["x", "y"], "temperature": 2.0, "top_p": 1e-9, "chat_template_kwargs": {"enable_thinking": False}})
put("chat_request", "grammar.json", {"model": "m", "messages": msgs, "guided_grammar": "start: \"a\"+", "guided_choice": ["yes", "no"]})
put("completion_request", "basic.json", {"model": "m", "prompt": "Once upon", "max_tokens": 4, "echo": True, "logprobs": 2})
put("completion_request", "ids.json", {"model": "m", "prompt": [1, 2, 4294967296, -1], "stop": "x"})
put("completion_request", "json.json", {"model": "m", "prompt": ["a", "b"], "response_format": {"type": "json_object"}})
put("embedding_request", "basic.json", {"model": "m", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 8})
put("embedding_request", "ids.json", {"model": "m", "input": [[1, 2, 3]]})
put("rerank_request", "basic.json", {"model": "m", "query": "q", "documents": ["a", "b", {"text": "c"}], "top_n": -1, "return_documents": True, "max_chunks_per_doc": 2, "kwargs": "{\"instruction\": \"x\"}"})
put("responses_request", "basic.json", {"model": "m", "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 16})
put("responses_request", "items.json", {"model": "m", "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}, {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}, {"type": "function_call_output", "call_id": "c1", "output": "2"}], "tools": [{"type": "function", "name": "f", "parameters": {}}], "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}, "metadata": {"k": "v"}})
put("anthropic_messages", "basic.json", {"model": "m", "max_tokens": 16, "system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]})
put("anthropic_messages", "tools.json", {"model": "m", "max_tokens": 16, "system": [{"type": "text", "text": "s"}], "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}, {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]}, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "2"}]}]}], "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"}, "stop_sequences": ["x"], "thinking": {"type": "enabled", "budget_tokens": 1024}})
put("registration", "embedding.json", {"version": 2, "model_name": "my-minilm", "dimensions": 384, "max_tokens": 256, "language": ["en"], "model_specs": [{"model_format": "pytorch", "model_id": "sentence-transformers/all-MiniLM-L6-v2", "quantization": "none"}]})
put("registration", "llm.json", {"version": 2, "context_length": 2048, "model_name": "my-llm", "model_lang": ["en"], "model_ability": ["chat"], "model_family": "qwen2.5-instruct", "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "0_5", "quantizations": ["Q4_K_M"], "quantization": "Q4_K_M", "model_id": "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "model_file_name_template": "qwen2.5-0.5b-instruct-{quantization}.gguf"}], "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}", "stop_token_ids": [1], "stop": ["</s>"]})
put("registration", "traversal.json", {"version": 2, "context_length": 2048, "model_name": "evil", "model_lang": ["en"], "model_ability": ["generate"], "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "../1", "quantization": "../../../x", "model_id": "a/b"}]})

# A minimal GGUF v3: llama metadata, one 2x2 f32 tensor.
def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b
def kv_str(k, v):
    return gguf_str(k) + struct.pack("<I", 8) + gguf_str(v)
def kv_u32(k, v):
    return gguf_str(k) + struct.pack("<I", 4) + struct.pack("<I", v)
kvs = [kv_str("general.architecture", "llama"), kv_u32("llama.context_length", 64), kv_u32("llama.embedding_length", 2), kv_u32("llama.block_count", 1), kv_u32("llama.attention.head_count", 1), kv_str("tokenizer.ggml.model", "llama"), kv_str("tokenizer.chat_template", "{{ messages[0].content }}")]
tensor = gguf_str("token_embd.weight") + struct.pack("<I", 2) + struct.pack("<QQ", 2, 2) + struct.pack("<I", 0) + struct.pack("<Q", 0)
head = b"GGUF" + struct.pack("<I", 3) + struct.pack("<QQ", 1, len(kvs)) + b"".join(kvs) + tensor
head += b"\0" * ((32 - len(head) % 32) % 32)
put("gguf_file", "tiny.gguf", head + struct.pack("<4f", 1, 2, 3, 4))
put("gguf_file", "header-only.gguf", b"GGUF" + struct.pack("<I", 3) + struct.pack("<QQ", 0, 0))

# A minimal safetensors file: one f32 and one i64 tensor.
header = json.dumps({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}, "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}, "__metadata__": {"format": "pt"}}).encode()
put("safetensors_file", "tiny.safetensors", struct.pack("<Q", len(header)) + header + struct.pack("<4f", 1, 2, 3, 4) + struct.pack("<q", 7))
for fam in ["llama", "qwen2", "qwen3"]:
    src = REPO / "tests/fixtures/tiny-llms" / fam / "config.json"
    if src.exists():
        put("safetensors_config", f"{fam}.json", src.read_bytes())
# The smallest tokenizer among the fixtures.
toks = sorted((REPO / "tests/fixtures").rglob("tokenizer.json"), key=lambda p: p.stat().st_size)
if toks:
    put("tokenizer_json", "fixture.json", toks[0].read_bytes())
put("tokenizer_json", "wordlevel.json", {"version": "1.0", "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1}, "unk_token": "[UNK]"}, "pre_tokenizer": {"type": "Whitespace"}, "added_tokens": [{"id": 2, "content": "<s>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}]})
for i, cfg in enumerate(sorted((REPO / "tests/fixtures/tiny-llms").rglob("tokenizer_config.json"))):
    t = json.loads(cfg.read_text()).get("chat_template")
    if isinstance(t, str):
        put("chat_template", f"fixture{i}.jinja", t)
put("chat_template", "chatml.jinja", "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
put("chat_template", "tools.jinja", "{{ bos_token }}{% if tools %}{{ tools | tojson }}{% endif %}{% for m in messages %}{% if m.tool_calls %}{% for c in m.tool_calls %}{{ c.function.name }}({{ c.function.arguments }}){% endfor %}{% else %}{{ m.content | trim }}{% endif %}{% endfor %}{{ raise_exception('x') if false }}{{ strftime_now('%Y') }}")

# A tenth of a second of a 440 Hz tone, 16 kHz mono and 8 kHz stereo WAV.
def wav(rate, channels):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels); w.setsampwidth(2); w.setframerate(rate)
        n = rate // 10
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) * channels for i in range(n)))
    return buf.getvalue()
put("audio_file", "tone16k.wav", wav(16000, 1))
put("audio_file", "tone8k_stereo.wav", wav(8000, 2))
put("audio_file", "truncated.wav", wav(16000, 1)[:100])

# PNGs: the 8x8 inpainting mask fixture, and a 3x2 RGB one.
mask = REPO / "tests/fixtures/tiny-inpaint/mask.png"
if mask.exists():
    put("image_upload", "mask.png", mask.read_bytes())
def png(w, h):
    rows = b"".join(b"\0" + b"".join(bytes((x * 80 % 256, y * 120 % 256, 200)) for x in range(w)) for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
put("image_upload", "rgb3x2.png", png(3, 2))
