// Playground: try a running model in the page. LLMs: a streamed chat (or completion) with
// markdown and Stop; embeddings: vectors and their cosine similarities; rerank: a ranked list;
// image: text to image; audio: a transcription of an uploaded file.

import { useEffect, useRef, useState } from "../vendor/hooks.mjs";
import { api, sseEvents } from "../api.mjs";
import { renderMarkdown } from "../markdown.mjs";
import { ErrorBox, Field, html, navigate } from "../components.mjs";

export function PlaygroundPage({ params }) {
  const [models, setModels] = useState(null);
  const [error, setError] = useState(null);
  const uid = params.get("model") || "";
  useEffect(() => {
    api("/v1/models")
      .then((l) => setModels(l.data))
      .catch(setError);
  }, []);
  const model = (models || []).find((m) => m.id === uid);
  useEffect(() => {
    if (models && models.length && !model) navigate("playground", { model: models[0].id });
  }, [models, uid]);

  let panel = null;
  if (model) {
    const type = model.model_type;
    if (type === "LLM") panel = html`<${Chat} model=${model} key=${uid} />`;
    else if (type === "embedding") panel = html`<${Embeddings} uid=${uid} key=${uid} />`;
    else if (type === "rerank") panel = html`<${Rerank} uid=${uid} key=${uid} />`;
    else if (type === "image") panel = html`<${Image} uid=${uid} key=${uid} />`;
    else if (type === "audio") panel = html`<${Audio} uid=${uid} key=${uid} />`;
    else panel = html`<p>The playground has no panel for ${type} models.</p>`;
  }
  return html`<section aria-labelledby="playground-title">
    <h1 id="playground-title">Playground</h1>
    <${ErrorBox} error=${error} />
    ${models && models.length === 0
      ? html`<p>No model is running. <a href="#/launch">Launch one</a> first.</p>`
      : null}
    ${models && models.length
      ? html`<${Field} label="Model" id="playground-model">
          <select id="playground-model" value=${uid} onChange=${(e) => navigate("playground", { model: e.target.value })}>
            ${models.map((m) => html`<option value=${m.id}>${m.id} (${m.model_type})</option>`)}
          </select>
        <//>`
      : null}
    ${panel}
  </section>`;
}

/** Markdown answer, escaped before any tag is made (see markdown.mjs). */
function Markdown({ text }) {
  return html`<div class="markdown" dangerouslySetInnerHTML=${{ __html: renderMarkdown(text) }}></div>`;
}

function Chat({ model }) {
  const chat = (model.model_ability || []).includes("chat");
  const [messages, setMessages] = useState([]);
  const [input, setInput] = useState("");
  const [system, setSystem] = useState("");
  const [maxTokens, setMaxTokens] = useState(256);
  const [temperature, setTemperature] = useState(0.7);
  const [streaming, setStreaming] = useState(false);
  const [error, setError] = useState(null);
  const abort = useRef(null);
  const log = useRef(null);

  useEffect(() => {
    if (log.current) log.current.scrollTop = log.current.scrollHeight;
  }, [messages]);

  const send = async (e) => {
    e && e.preventDefault();
    const text = input.trim();
    if (!text || streaming) return;
    setError(null);
    const history = [...messages, { role: "user", content: text }];
    setMessages([...history, { role: "assistant", content: "", reasoning: "" }]);
    setInput("");
    setStreaming(true);
    const controller = new AbortController();
    abort.current = controller;
    const body = chat
      ? {
          model: model.id,
          messages: [...(system.trim() ? [{ role: "system", content: system.trim() }] : []),
            ...history.map(({ role, content }) => ({ role, content }))],
        }
      : { model: model.id, prompt: text };
    Object.assign(body, { stream: true, max_tokens: Number(maxTokens) || undefined, temperature: Number(temperature) });
    let answer = "";
    let reasoning = "";
    try {
      const response = await api(chat ? "/v1/chat/completions" : "/v1/completions", {
        method: "POST",
        json: body,
        raw: true,
        signal: controller.signal,
      });
      for await (const chunk of sseEvents(response)) {
        const choice = chunk.choices && chunk.choices[0];
        if (!choice) continue;
        answer += chat ? choice.delta?.content || "" : choice.text || "";
        reasoning += (chat && choice.delta?.reasoning_content) || "";
        setMessages([...history, { role: "assistant", content: answer, reasoning }]);
      }
    } catch (err) {
      if (err.name !== "AbortError") setError(err);
    } finally {
      abort.current = null;
      setStreaming(false);
    }
  };
  const stop = () => abort.current && abort.current.abort();
  const keydown = (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(e);
  };

  return html`<div class="chat" data-testid="chat">
    <details>
      <summary>Settings</summary>
      <div class="grid">
        ${chat
          ? html`<${Field} label="System prompt" id="chat-system">
              <input id="chat-system" value=${system} onInput=${(e) => setSystem(e.target.value)} />
            <//>`
          : null}
        <${Field} label="Max tokens" id="chat-max-tokens">
          <input id="chat-max-tokens" type="number" min="1" value=${maxTokens} onInput=${(e) => setMaxTokens(e.target.value)} />
        <//>
        <${Field} label="Temperature" id="chat-temperature">
          <input id="chat-temperature" type="number" min="0" max="2" step="0.1" value=${temperature}
            onInput=${(e) => setTemperature(e.target.value)} />
        <//>
      </div>
    </details>
    <div class="log" ref=${log} role="log" aria-live="polite" aria-label="Conversation">
      ${messages.map((m, i) => html`<div class=${`msg ${m.role}`} key=${i} data-role=${m.role}>
        <span class="who">${m.role === "user" ? "You" : model.id}</span>
        ${m.reasoning ? html`<details class="reasoning"><summary>Reasoning</summary><${Markdown} text=${m.reasoning} /></details>` : null}
        ${m.role === "assistant" ? html`<${Markdown} text=${m.content} />` : html`<p class="plain">${m.content}</p>`}
      </div>`)}
    </div>
    <${ErrorBox} error=${error} />
    <form onSubmit=${send} class="composer">
      <${Field} label=${chat ? "Message" : "Prompt"} id="chat-input" hint="Ctrl+Enter sends">
        <textarea id="chat-input" rows="3" value=${input} onInput=${(e) => setInput(e.target.value)}
          onKeyDown=${keydown} aria-describedby="chat-input-hint"></textarea>
      <//>
      <div class="actions">
        ${messages.length && !streaming ? html`<button type="button" onClick=${() => setMessages([])}>Clear</button>` : null}
        ${streaming
          ? html`<button type="button" class="danger" onClick=${stop} data-testid="chat-stop">Stop</button>`
          : html`<button type="submit" class="primary" data-testid="chat-send" disabled=${!input.trim()}>Send</button>`}
      </div>
    </form>
  </div>`;
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

function Embeddings({ uid }) {
  const [text, setText] = useState("The cat sits on the mat.\nA feline rests on a rug.\nStock markets fell today.");
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (e) => {
    e.preventDefault();
    const input = text.split("\n").map((s) => s.trim()).filter(Boolean);
    setBusy(true);
    setError(null);
    try {
      const r = await api("/v1/embeddings", { method: "POST", json: { model: uid, input } });
      setResult({ input, vectors: r.data.map((d) => d.embedding), usage: r.usage });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<div data-testid="embeddings">
    <form onSubmit=${run}>
      <${Field} label="Texts (one per line)" id="embed-input">
        <textarea id="embed-input" rows="4" value=${text} onInput=${(e) => setText(e.target.value)}></textarea>
      <//>
      <button type="submit" class="primary" disabled=${busy}>${busy ? "Embedding…" : "Embed"}</button>
    </form>
    <${ErrorBox} error=${error} />
    ${result
      ? html`<div class="result" data-testid="embed-result">
          <p>${result.vectors.length} vectors of ${result.vectors[0]?.length} dimensions
            ${result.usage ? ` · ${result.usage.total_tokens} tokens` : ""}.</p>
          <div class="table-wrap"><table>
            <caption>Cosine similarity</caption>
            <thead><tr><th scope="col">Text</th>${result.input.map((_, j) => html`<th scope="col">#${j + 1}</th>`)}</tr></thead>
            <tbody>${result.input.map((t, i) => html`<tr>
              <th scope="row">#${i + 1} ${t}</th>
              ${result.vectors.map((v) => html`<td>${cosine(result.vectors[i], v).toFixed(3)}</td>`)}
            </tr>`)}</tbody>
          </table></div>
          <p class="hint">First values of #1: ${result.vectors[0].slice(0, 6).map((x) => x.toFixed(4)).join(", ")}, …</p>
        </div>`
      : null}
  </div>`;
}

function Rerank({ uid }) {
  const [query, setQuery] = useState("A man is eating pasta.");
  const [docs, setDocs] = useState("A man is eating food.\nA man is riding a horse.\nA monkey is playing drums.");
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const run = async (e) => {
    e.preventDefault();
    setError(null);
    const documents = docs.split("\n").map((s) => s.trim()).filter(Boolean);
    try {
      const r = await api("/v1/rerank", { method: "POST", json: { model: uid, query, documents, return_documents: true } });
      setResult(r.results.map((x) => ({ ...x, text: documents[x.index] })));
    } catch (err) {
      setError(err);
    }
  };
  return html`<div data-testid="rerank">
    <form onSubmit=${run}>
      <${Field} label="Query" id="rerank-query">
        <input id="rerank-query" value=${query} onInput=${(e) => setQuery(e.target.value)} />
      <//>
      <${Field} label="Documents (one per line)" id="rerank-docs">
        <textarea id="rerank-docs" rows="4" value=${docs} onInput=${(e) => setDocs(e.target.value)}></textarea>
      <//>
      <button type="submit" class="primary">Rerank</button>
    </form>
    <${ErrorBox} error=${error} />
    ${result
      ? html`<ol class="result">${result.map((r) => html`<li><strong>${r.relevance_score.toFixed(4)}</strong> ${r.text}</li>`)}</ol>`
      : null}
  </div>`;
}

function Image({ uid }) {
  const [prompt, setPrompt] = useState("a lighthouse on a cliff at sunset, oil painting");
  const [size, setSize] = useState("512x512");
  const [steps, setSteps] = useState("");
  const [seed, setSeed] = useState("");
  const [images, setImages] = useState([]);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const kwargs = {};
    if (steps) kwargs.num_inference_steps = Number(steps);
    if (seed) kwargs.seed = Number(seed);
    try {
      const r = await api("/v1/images/generations", {
        method: "POST",
        json: { model: uid, prompt, size, n: 1, response_format: "b64_json", kwargs: JSON.stringify(kwargs) },
      });
      setImages(r.data.map((d) => `data:image/png;base64,${d.b64_json}`));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<div data-testid="image">
    <form onSubmit=${run}>
      <${Field} label="Prompt" id="image-prompt">
        <textarea id="image-prompt" rows="2" value=${prompt} onInput=${(e) => setPrompt(e.target.value)}></textarea>
      <//>
      <div class="grid">
        <${Field} label="Size (width x height)" id="image-size">
          <input id="image-size" list="image-sizes" value=${size}
            onInput=${(e) => setSize(e.target.value)} />
          <datalist id="image-sizes">
            ${["256x256", "512x512", "768x768", "1024x1024"].map((s) => html`<option value=${s}></option>`)}
          </datalist>
        <//>
        <${Field} label="Steps (blank: the model's default)" id="image-steps">
          <input id="image-steps" type="number" min="1" max="150" value=${steps} onInput=${(e) => setSteps(e.target.value)} />
        <//>
        <${Field} label="Seed" id="image-seed">
          <input id="image-seed" type="number" value=${seed} onInput=${(e) => setSeed(e.target.value)} />
        <//>
      </div>
      <button type="submit" class="primary" disabled=${busy}>${busy ? "Generating…" : "Generate"}</button>
    </form>
    <${ErrorBox} error=${error} />
    <div class="images">${images.map((src, i) => html`<img src=${src} alt=${`Generated image ${i + 1}: ${prompt}`} />`)}</div>
  </div>`;
}

function Audio({ uid }) {
  const [file, setFile] = useState(null);
  const [language, setLanguage] = useState("");
  const [text, setText] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (e) => {
    e.preventDefault();
    if (!file) return;
    setBusy(true);
    setError(null);
    const form = new FormData();
    form.append("model", uid);
    form.append("file", file);
    if (language) form.append("language", language);
    try {
      const r = await api("/v1/audio/transcriptions", { method: "POST", body: form });
      setText(r.text);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<div data-testid="audio">
    <form onSubmit=${run}>
      <${Field} label="Audio file (wav, mp3, flac, ogg)" id="audio-file">
        <input id="audio-file" type="file" accept="audio/*" onChange=${(e) => setFile(e.target.files[0] || null)} />
      <//>
      <${Field} label="Language (blank: detect)" id="audio-language">
        <input id="audio-language" value=${language} placeholder="en" onInput=${(e) => setLanguage(e.target.value)} />
      <//>
      <button type="submit" class="primary" disabled=${busy || !file}>${busy ? "Transcribing…" : "Transcribe"}</button>
    </form>
    <${ErrorBox} error=${error} />
    ${text !== null ? html`<blockquote class="result">${text}</blockquote>` : null}
  </div>`;
}
