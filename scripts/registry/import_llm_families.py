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
    "glm4-0414",
    "llama-3.3-instruct",
    "mistral-nemo-instruct",
    "deepseek-r1-distill-qwen", "deepseek-r1-distill-llama", "deepseek-r1-0528-qwen3",
    "QwQ-32B",
]
FORMATS = {"ggufv2", "pytorch"}
DROP = {"featured", "updated_at", "virtualenv"}


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
