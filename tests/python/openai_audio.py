"""The official `openai` SDK and `xinference-client` against our /v1/audio routes
(argv: base URL, model uid of whisper-tiny.en, path of an English speech clip)."""
import sys

import openai
from xinference_client import RESTfulClient

base, uid, clip = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=f"{base}/v1", api_key="not-needed")

with open(clip, "rb") as f:
    r = client.audio.transcriptions.create(model=uid, file=f)
assert "lazy" in r.text.lower(), r

with open(clip, "rb") as f:
    r = client.audio.transcriptions.create(model=uid, file=f, response_format="verbose_json")
assert r.language == "en" and r.duration > 5, r
assert r.segments and r.segments[0].start < r.segments[-1].end <= r.duration, r.segments
assert all(s.tokens and s.avg_logprob < 0 for s in r.segments), r.segments

with open(clip, "rb") as f:
    text = client.audio.transcriptions.create(model=uid, file=f, response_format="text")
assert isinstance(text, str) and "lazy" in text.lower(), text

with open(clip, "rb") as f:
    srt = client.audio.transcriptions.create(model=uid, file=f, response_format="srt")
assert srt.startswith("1\n00:00:0") and " --> " in srt, srt

with open(clip, "rb") as f:
    vtt = client.audio.transcriptions.create(
        model=uid, file=f, response_format="vtt", language="en", prompt="Foxes and dogs.", temperature=0.0
    )
assert vtt.startswith("WEBVTT"), vtt

# Word timestamps in OpenAI's shape.
with open(clip, "rb") as f:
    r = client.audio.transcriptions.create(
        model=uid, file=f, response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
assert r.words and any("lazy" in w.word.lower() for w in r.words), r.words
assert all(0 <= w.start <= w.end <= r.duration for w in r.words), r.words
assert all(a.start <= b.start for a, b in zip(r.words, r.words[1:])), r.words

# Streaming: text deltas as segments are decoded, then the whole text.
with open(clip, "rb") as f:
    events = list(client.audio.transcriptions.create(model=uid, file=f, stream=True))
types = [e.type for e in events]
assert types[-1] == "transcript.text.done" and types.count("transcript.text.done") == 1, types
deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
assert len(deltas) >= 1 and "".join(deltas) == events[-1].text, (deltas, events[-1].text)
assert "lazy" in events[-1].text.lower(), events[-1].text

# Translation on an English-only model: a 400 with a message.
try:
    with open(clip, "rb") as f:
        client.audio.translations.create(model=uid, file=f)
    raise SystemExit("translation on tiny.en should fail")
except openai.BadRequestError as e:
    assert "English-only" in e.response.text, e.response.text

# Not audio.
try:
    client.audio.transcriptions.create(model=uid, file=("notes.txt", b"just some text, not audio"))
    raise SystemExit("text should be refused")
except openai.BadRequestError as e:
    assert "not audio" in e.response.text, e.response.text

# Xinference's own client.
model = RESTfulClient(base).get_model(uid)
with open(clip, "rb") as f:
    audio = f.read()
r = model.transcriptions(audio)
assert "lazy" in r["text"].lower(), r
r = model.transcriptions(audio, response_format="verbose_json", condition_on_previous_text=False)
assert r["segments"] and r["task"] == "transcribe", r
# faster-whisper's options in Xinference's kwargs.
r = model.transcriptions(audio, response_format="verbose_json", beam_size=1, best_of=2, word_timestamps=True)
assert r["words"] and r["words"][0]["start"] < r["words"][-1]["end"], r
print("openai audio: ok")
