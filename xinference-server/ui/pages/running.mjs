// Running models: what `/v1/models` and `/v1/models/instances` report, refreshed every few
// seconds; per model its description (`GET /v1/models/{uid}`), "try the API" snippets, a link
// to the playground, and Terminate (`DELETE /v1/models/{uid}`) after a confirmation.

import { useState } from "../vendor/hooks.mjs";
import { api } from "../api.mjs";
import { apiSnippets } from "../snippets.mjs";
import { CodeBlock, Dialog, ErrorBox, html, navigate, Tabs, useInterval } from "../components.mjs";

export function RunningPage({ authOn }) {
  const [models, setModels] = useState(null);
  const [status, setStatus] = useState({});
  const [error, setError] = useState(null);
  const [open, setOpen] = useState(null); // {uid, what: "describe" | "snippets"}
  const [confirming, setConfirming] = useState(null);
  const [tick, setTick] = useState(0);

  useInterval(
    async () => {
      try {
        const [list, instances] = await Promise.all([api("/v1/models"), api("/v1/models/instances")]);
        setModels(list.data);
        setStatus(Object.fromEntries(instances.map((i) => [i.model_uid, i.status])));
        setError(null);
      } catch (e) {
        setError(e);
      }
    },
    3000,
    [tick],
  );

  return html`<section aria-labelledby="running-title">
    <h1 id="running-title">Running models</h1>
    <${ErrorBox} error=${error} />
    ${models === null && !error ? html`<p aria-busy="true">Loading…</p>` : null}
    ${models && models.length === 0
      ? html`<p data-testid="no-models">No model is running. <a href="#/launch">Launch one</a>.</p>`
      : null}
    ${models && models.length
      ? html`<div class="table-wrap"><table class="models">
          <caption class="sr-only">Running models</caption>
          <thead><tr>
            <th scope="col">Uid</th><th scope="col">Name</th><th scope="col">Type</th>
            <th scope="col">Engine</th><th scope="col">Format</th><th scope="col">Quantization</th>
            <th scope="col">Replicas</th><th scope="col">Status</th><th scope="col">Actions</th>
          </tr></thead>
          <tbody>
            ${models.map((m) => html`<tr key=${m.id} data-uid=${m.id}>
              <th scope="row"><code>${m.id}</code></th>
              <td data-label="Name">${m.model_name}</td>
              <td data-label="Type">${m.model_type}</td>
              <td data-label="Engine">${m.model_engine || ""}</td>
              <td data-label="Format">${m.model_format || ""}</td>
              <td data-label="Quantization">${m.quantization || ""}</td>
              <td data-label="Replicas">${m.replica}</td>
              <td data-label="Status"><span class=${`status ${(status[m.id] || "").toLowerCase()}`}>${status[m.id] || "?"}</span></td>
              <td data-label="Actions"><div class="row-actions">
                <button type="button" aria-expanded=${open?.uid === m.id && open.what === "describe" ? "true" : "false"}
                  onClick=${() => setOpen(open?.uid === m.id && open.what === "describe" ? null : { uid: m.id, what: "describe" })}
                  aria-label=${`Describe ${m.id}`}>Describe</button>
                <button type="button" aria-expanded=${open?.uid === m.id && open.what === "snippets" ? "true" : "false"}
                  onClick=${() => setOpen(open?.uid === m.id && open.what === "snippets" ? null : { uid: m.id, what: "snippets" })}
                  aria-label=${`Try the API of ${m.id}`}>Try the API</button>
                <button type="button" onClick=${() => navigate("playground", { model: m.id })}
                  aria-label=${`Open ${m.id} in the playground`}>Playground</button>
                <button type="button" class="danger" onClick=${() => setConfirming(m.id)}
                  aria-label=${`Terminate ${m.id}`} data-terminate=${m.id}>Terminate</button>
              </div></td>
            </tr>`)}
          </tbody>
        </table></div>`
      : null}
    ${open && models && models.some((m) => m.id === open.uid)
      ? open.what === "describe"
        ? html`<${Describe} uid=${open.uid} />`
        : html`<${Snippets} model=${models.find((m) => m.id === open.uid)} authOn=${authOn} />`
      : null}
    ${confirming
      ? html`<${ConfirmTerminate} uid=${confirming} onClose=${() => setConfirming(null)}
          onDone=${() => {
            setConfirming(null);
            setOpen(null);
            setTick(tick + 1);
          }} />`
      : null}
  </section>`;
}

function Describe({ uid }) {
  const [description, setDescription] = useState(null);
  const [error, setError] = useState(null);
  useInterval(
    () =>
      api(`/v1/models/${encodeURIComponent(uid)}`)
        .then(setDescription)
        .catch(setError),
    60000,
    [uid],
  );
  return html`<section class="panel" aria-label=${`Description of ${uid}`}>
    <h2>Description of <code>${uid}</code></h2>
    <${ErrorBox} error=${error} />
    ${description ? html`<${CodeBlock} code=${JSON.stringify(description, null, 2)} label="Model description" />` : null}
  </section>`;
}

function Snippets({ model, authOn }) {
  const [lang, setLang] = useState("curl");
  const snippets = apiSnippets(model.id, { ...model, authOn }, location.origin);
  return html`<section class="panel" aria-label=${`Try the API of ${model.id}`}>
    <h2>Try the API of <code>${model.id}</code></h2>
    <${Tabs} tabs=${[["curl", "curl"], ["openai", "openai (Python)"], ["xinference", "xinference-client"], ["rust", "Rust"]]}
      current=${lang} onChange=${setLang} label="Client" idPrefix="snippet">
      <${CodeBlock} code=${snippets[lang]} label=${`${lang} snippet`} />
    <//>
  </section>`;
}

function ConfirmTerminate({ uid, onClose, onDone }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const terminate = async () => {
    setBusy(true);
    try {
      await api(`/v1/models/${encodeURIComponent(uid)}`, { method: "DELETE" });
      onDone();
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return html`<${Dialog} title="Terminate model" onClose=${onClose}>
    <p>Terminate <strong>${uid}</strong>? Requests in flight finish first; its memory is freed.</p>
    <${ErrorBox} error=${error} />
    <div class="actions">
      <button type="button" onClick=${onClose} autofocus>Keep it</button>
      <button type="button" class="danger" onClick=${terminate} disabled=${busy}
        data-testid="confirm-terminate">${busy ? "Terminating…" : "Terminate"}</button>
    </div>
  <//>`;
}
