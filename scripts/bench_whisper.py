#!/usr/bin/env python3
"""faster-whisper's side of benches/audio.rs: greedy and beam-5 transcription of the same clips with the same
CTranslate2 model folders on the same threads, fp32 and int8; prints one JSON line per row.

    python3 scripts/bench_whisper.py MODEL_DIR CLIP [CLIP ...]   (env BENCH_THREADS, default 2)
"""
import json
import os
import sys
import time

import soundfile as sf
from faster_whisper import WhisperModel

threads = int(os.environ.get("BENCH_THREADS", "2"))
folder, clips = sys.argv[1], sys.argv[2:]
for compute_type in ["float32", "int8"]:
    model = WhisperModel(folder, device="cpu", compute_type=compute_type, cpu_threads=threads)
    for clip in clips:
        audio, rate = sf.read(clip, dtype="float32")
        assert rate == 16000
        for beam_size in [1, 5]:
            if len(audio) < 60 * rate:  # warm-up (the 5-minute clip warms itself up)
                list(model.transcribe(audio, beam_size=beam_size, vad_filter=False)[0])
            start = time.perf_counter()
            segments, _ = model.transcribe(audio, beam_size=beam_size, vad_filter=False)
            text = "".join(s.text for s in segments)
            seconds = time.perf_counter() - start
            print(json.dumps({"compute_type": compute_type, "clip": os.path.basename(clip), "beam_size": beam_size,
                              "seconds": seconds, "text": text}), flush=True)
