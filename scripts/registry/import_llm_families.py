#!/usr/bin/env python3
"""Add LLM families from Xinference's own registry (xinference/model/llm/llm_family.json of
xorbitsai/inference) to ours (xinference-core/src/registry/data/llm.json), under Xinference's names
and spec format, so that users launch them by the names they know.

Only families not already in ours are added (ours stay as curated), and of each only the specs of
the formats this build can load (ggufv2, pytorch); Xinference's bookkeeping fields (featured,
updated_at, virtualenv) are dropped. Whether a family runs is decided by its architectures
(registry/engines.rs RUNNABLE): the others stay listed and answer a launch with a clear 400.

    python3 scripts/registry/import_llm_families.py path/to/llm_family.json
"""
import json
import sys
from pathlib import Path

OURS = Path(__file__).resolve().parents[2] / "xinference-core/src/registry/data/llm.json"
FAMILIES = [
    "Qwen3-Instruct", "Qwen3-Thinking", "Qwen3-Coder",
    "qwen3.5", "qwen3.6", "qwen3.8",
    "gemma-4", "gpt-oss",
    "glm4-0414", "glm-4.5", "GLM-4.6",
    "llama-3.3-instruct",
    "mistral-nemo-instruct",
    "deepseek-r1-distill-qwen", "deepseek-r1-distill-llama", "deepseek-r1-0528-qwen3",
    "QwQ-32B",
]
FORMATS = {"ggufv2", "pytorch"}
DROP = {"featured", "updated_at", "virtualenv"}
# GGUF specs Xinference's registry lacks, added after its specs (unsloth's repositories, their
# files in one folder per quantization; only quantizations whose file names are known).
GGUF_SPECS = {
    "glm-4.5": [{
        "model_format": "ggufv2",
        "model_size_in_billions": 106,
        "activated_size_in_billions": 12,
        "model_src": {"huggingface": {
            "quantizations": ["Q4_K_M"],
            "quantization_parts": {"Q4_K_M": ["00001-of-00002", "00002-of-00002"]},
            "model_id": "unsloth/GLM-4.5-Air-GGUF",
            "model_file_name_template": "GLM-4.5-Air-{quantization}.gguf",
            "model_file_name_split_template":
                "{quantization}/GLM-4.5-Air-{quantization}-{part}.gguf",
        }},
    }],
    "GLM-4.6": [{
        "model_format": "ggufv2",
        "model_size_in_billions": 355,
        "activated_size_in_billions": 32,
        "model_src": {"huggingface": {
            "quantizations": ["UD-Q2_K_XL"],
            "quantization_parts": {
                "UD-Q2_K_XL": ["00001-of-00003", "00002-of-00003", "00003-of-00003"]},
            "model_id": "unsloth/GLM-4.6-GGUF",
            "model_file_name_template": "GLM-4.6-{quantization}.gguf",
            "model_file_name_split_template":
                "{quantization}/GLM-4.6-{quantization}-{part}.gguf",
        }},
    }],
}


def main():
    theirs = {f["model_name"]: f for f in json.loads(Path(sys.argv[1]).read_text())}
    text = OURS.read_text()
    have = {f["model_name"] for f in json.loads(text)}
    added = []
    for name in FAMILIES:
        if name in have:
            continue
        family = {k: v for k, v in theirs[name].items() if k not in DROP}
        family["model_specs"] = [s for s in family["model_specs"] if s["model_format"] in FORMATS]
        family["model_specs"] += GGUF_SPECS.get(name, [])
        added.append(family)
        print(f"added {name}: {len(family['model_specs'])} specs, {family['architectures']}")
    if not added:
        return
    # Appended as text, so that the entries already there keep their layout (and their diffs).
    body = text.rstrip()
    assert body.endswith("]"), "llm.json is a JSON list"
    entries = [
        "\n".join(" " + line for line in json.dumps(f, indent=1, ensure_ascii=False).splitlines())
        for f in added
    ]
    OURS.write_text(body[:-1].rstrip() + ",\n" + ",\n".join(entries) + "\n]\n")
    json.loads(OURS.read_text())


if __name__ == "__main__":
    main()
