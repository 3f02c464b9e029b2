// Launch: the registry's model families as cards (a tab per model type, and one for custom
// registrations), with search and an ability filter; a card's Launch button opens a dialog
// that builds the `POST /v1/models` request, shows the equivalent CLI command, and follows
// the launch's progress (`/v1/models/{uid}/progress`) with a Cancel that terminates it.

import { useEffect, useMemo, useRef, useState } from "../vendor/hooks.mjs";
import { api, MODEL_TYPES } from "../api.mjs";
import { cliCommand } from "../snippets.mjs";
import { CodeBlock, Dialog, ErrorBox, Field, html, navigate, sizeLabel, Tabs } from "../components.mjs";

const TABS = [
  ["LLM", "LLM"],
  ["embedding", "Embedding"],
  ["rerank", "Rerank"],
  ["image", "Image"],
  ["audio", "Audio"],
  ["custom", "Custom"],
];

/** Abilities of a family (embedding and rerank families list none: their type is the ability). */
function abilitiesOf(family, type) {
  if (Array.isArray(family.model_ability) && family.model_ability.length) return family.model_ability;
  return { embedding: ["embed"], rerank: ["rerank"] }[type] || [];
}

/** Families of the tab: one type, or the custom ones of every type (each with `_type`). */
async function loadFamilies(tab) {
  const types = tab === "custom" ? MODEL_TYPES : [tab];
  const lists = await Promise.all(
    types.map((t) =>
      api(`/v1/model_registrations/${encodeURIComponent(t)}?detailed=true`).then((list) =>
        list.map((f) => ({ ...f, _type: t })),
      ),
    ),
  );
  const all = lists.flat();
  return tab === "custom" ? all.filter((f) => !f.is_builtin) : all;
}

export function LaunchPage({ params }) {
  const [tab, setTab] = useState(params.get("type") || "LLM");
  const [families, setFamilies] = useState(null);
  const [error, setError] = useState(null);
  const [search, setSearch] = useState("");
  const [ability, setAbility] = useState("");
  const [launching, setLaunching] = useState(null);

  useEffect(() => {
    let live = true;
    setFamilies(null);
    setError(null);
    setAbility("");
    loadFamilies(tab)
      .then((f) => live && setFamilies(f))
      .catch((e) => live && setError(e));
    return () => {
      live = false;
    };
  }, [tab]);

  const abilities = useMemo(
    () => [...new Set((families || []).flatMap((f) => abilitiesOf(f, f._type)))].sort(),
    [families],
  );
  const shown = (families || []).filter((f) => {
    const q = search.trim().toLowerCase();
    const text = `${f.model_name} ${f.model_description || ""} ${(f.model_lang || f.language || []).join(" ")}`;
    return (!q || text.toLowerCase().includes(q)) && (!ability || abilitiesOf(f, f._type).includes(ability));
  });

  return html`<section aria-labelledby="launch-title">
    <h1 id="launch-title">Launch a model</h1>
    <${Tabs} tabs=${TABS} current=${tab} onChange=${setTab} label="Model types" idPrefix="type">
      <div class="filters">
        <${Field} label="Search" id="launch-search">
          <input id="launch-search" type="search" placeholder="Name, description or language"
            value=${search} onInput=${(e) => setSearch(e.target.value)} />
        <//>
        <${Field} label="Ability" id="launch-ability">
          <select id="launch-ability" value=${ability} onChange=${(e) => setAbility(e.target.value)}>
            <option value="">Any</option>
            ${abilities.map((a) => html`<option value=${a}>${a}</option>`)}
          </select>
        <//>
      </div>
      <${ErrorBox} error=${error} />
      ${families === null && !error ? html`<p aria-busy="true">Loading models…</p>` : null}
      ${families !== null && shown.length === 0
        ? html`<p>${tab === "custom" && families.length === 0
            ? html`No custom models yet. <a href="#/register">Register one</a>.`
            : "No model matches."}</p>`
        : null}
      <ul class="cards" aria-label="Models">
        ${shown.map((f) => html`<li key=${`${f._type}/${f.model_name}`}>
          <${Card} family=${f} onLaunch=${() => setLaunching(f)} />
        </li>`)}
      </ul>
    <//>
    ${launching
      ? html`<${LaunchDialog} family=${launching} type=${launching._type} onClose=${() => setLaunching(null)} />`
      : null}
  </section>`;
}

function Card({ family, onLaunch }) {
  const type = family._type;
  const langs = family.model_lang || family.language || [];
  const facts = [
    family.context_length ? `context ${family.context_length}` : null,
    family.dimensions ? `${family.dimensions} dimensions` : null,
    family.max_tokens ? `max ${family.max_tokens} tokens` : null,
    family.model_family && type !== "LLM" ? family.model_family : null,
  ].filter(Boolean);
  return html`<article class="card" data-model=${family.model_name} data-type=${type}>
    <h2 class="card-title">${family.model_name}</h2>
    ${family.model_description ? html`<p class="desc">${family.model_description}</p>` : null}
    <p class="chips">
      ${abilitiesOf(family, type).map((a) => html`<span class="chip">${a}</span>`)}
      ${!family.is_builtin ? html`<span class="chip custom">custom ${type}</span>` : null}
    </p>
    ${facts.length || langs.length
      ? html`<p class="facts">${[...facts, langs.join(", ")].filter(Boolean).join(" · ")}</p>`
      : null}
    <button type="button" class="primary" onClick=${onLaunch} aria-label=${`Launch ${family.model_name}`}
      data-launch=${family.model_name}>Launch</button>
  </article>`;
}

function unique(values) {
  return [...new Set(values.filter((v) => v !== null && v !== undefined).map(String))];
}

function LaunchDialog({ family, type, onClose }) {
  const [engines, setEngines] = useState(null);
  const [loadError, setLoadError] = useState(null);
  const [engine, setEngine] = useState("");
  const [format, setFormat] = useState("");
  const [size, setSize] = useState("");
  const [quant, setQuant] = useState("");
  const [replica, setReplica] = useState(1);
  const [uid, setUid] = useState("");
  const [path, setPath] = useState("");
  const [limits, setLimits] = useState("");
  const [extra, setExtra] = useState("");
  const [state, setState] = useState({ phase: "form" }); // form | launching | ready | failed | cancelled
  const [progress, setProgress] = useState(null);
  const cancelled = useRef(false);
  const launched = useRef(null);
  const polling = useRef(null);

  useEffect(() => {
    api(`/v1/engines/${encodeURIComponent(type)}/${encodeURIComponent(family.model_name)}`)
      .then((e) => {
        setEngines(e);
        const names = Object.keys(e);
        // Prefer what this build runs natively for GGUF files, else the first engine.
        setEngine(names.includes("llama.cpp") && type === "LLM" ? "llama.cpp" : names[0] || "");
      })
      .catch(setLoadError);
  }, []);

  const rows = (engines && engines[engine]) || [];
  const formats = unique(rows.map((r) => r.model_format));
  const sizes = unique(rows.filter((r) => r.model_format === format).map((r) => r.model_size_in_billions));
  const quants = unique(
    rows
      .filter((r) => r.model_format === format && (sizes.length === 0 || String(r.model_size_in_billions) === size))
      .flatMap((r) => r.quantizations || []),
  );
  // Keep each choice valid when the one above it changes.
  useEffect(() => {
    if (!formats.includes(format)) setFormat(formats[0] || "");
  }, [engine, engines]);
  useEffect(() => {
    if (!sizes.includes(size)) setSize(sizes[0] || "");
  }, [engine, engines, format]);
  useEffect(() => {
    if (!quants.includes(quant)) setQuant(quants[0] || "");
  }, [engine, engines, format, size]);

  let extraError = null;
  let extraObject = {};
  if (extra.trim()) {
    try {
      extraObject = JSON.parse(extra);
      if (!extraObject || typeof extraObject !== "object" || Array.isArray(extraObject)) {
        extraError = "Advanced options must be a JSON object, e.g. {\"n_ctx\": 4096}";
      }
    } catch (e) {
      extraError = `Advanced options are not valid JSON: ${e.message}`;
    }
  }

  const request = {
    model_name: family.model_name,
    model_type: type,
    model_engine: engine || undefined,
    model_format: format || undefined,
    model_size_in_billions: sizes.length ? size || undefined : undefined,
    quantization: quant || undefined,
    replica: Number(replica) || 1,
    model_uid: uid.trim() || undefined,
    model_path: path.trim() || undefined,
    request_limits: limits ? Number(limits) : undefined,
    ...(extraError ? {} : extraObject),
  };

  // The launch: `POST /v1/models?wait_ready=false` answers once the request is accepted (a
  // bad request is refused there), then progress and status are polled until the model is
  // ready or failed. Cancel stops the polling and terminates the launch.
  const launch = async (e) => {
    e.preventDefault();
    if (extraError) return;
    cancelled.current = false;
    setState({ phase: "launching" });
    setProgress(null);
    let uid;
    try {
      uid = (await api("/v1/models?wait_ready=false", { method: "POST", json: request })).model_uid;
    } catch (err) {
      setState({ phase: "failed", error: err });
      return;
    }
    launched.current = uid;
    const q = encodeURIComponent(uid);
    if (cancelled.current) {
      // Cancelled while the request was on its way: terminate what it started.
      await api(`/v1/models/${q}`, { method: "DELETE" }).catch(() => {});
      return;
    }
    while (!cancelled.current) {
      const round = Promise.all([api(`/v1/models/${q}/progress`), api(`/v1/models/instances?model_uid=${q}`)]);
      polling.current = round.catch(() => null);
      let p, instances;
      try {
        [p, instances] = await round;
      } catch (err) {
        if (!cancelled.current) setState({ phase: "failed", error: err });
        return;
      }
      if (cancelled.current) return;
      setProgress(p);
      const info = instances[0];
      if (info && info.status === "READY") {
        setState({ phase: "ready", uid });
        return;
      }
      if (!info || info.status === "ERROR") {
        setState({ phase: "failed", error: (info && info.error) || `The launch of ${uid} failed` });
        // A failed launch keeps its uid until it is terminated: free it for the next try.
        await api(`/v1/models/${q}`, { method: "DELETE" }).catch(() => {});
        return;
      }
      await new Promise((r) => setTimeout(r, 400));
    }
  };

  const cancel = async () => {
    cancelled.current = true;
    // Let the poll in flight land first, so that it does not ask about a terminated model.
    if (polling.current) await polling.current;
    if (launched.current) {
      await api(`/v1/models/${encodeURIComponent(launched.current)}`, { method: "DELETE" }).catch(() => {});
    }
    setState({ phase: "cancelled" });
  };

  const busy = state.phase === "launching";
  const pct = progress ? Math.round(progress.progress * 100) : 0;
  return html`<${Dialog} title=${`Launch ${family.model_name}`} onClose=${busy ? cancel : onClose} wide>
    <${ErrorBox} error=${loadError} />
    <form onSubmit=${launch} class="launch-form" data-testid="launch-form">
      <fieldset disabled=${busy}>
        <legend class="sr-only">Launch options</legend>
        <div class="grid">
          <${Field} label="Engine" id="launch-engine">
            <select id="launch-engine" value=${engine} onChange=${(e) => setEngine(e.target.value)}>
              ${Object.keys(engines || {}).map((n) => html`<option value=${n}>${n}</option>`)}
            </select>
          <//>
          <${Field} label="Format" id="launch-format">
            <select id="launch-format" value=${format} onChange=${(e) => setFormat(e.target.value)}>
              ${formats.map((f) => html`<option value=${f}>${f}</option>`)}
            </select>
          <//>
          ${sizes.length
            ? html`<${Field} label="Size (billions)" id="launch-size">
                <select id="launch-size" value=${size} onChange=${(e) => setSize(e.target.value)}>
                  ${sizes.map((s) => html`<option value=${s}>${sizeLabel(s)}</option>`)}
                </select>
              <//>`
            : null}
          <${Field} label="Quantization" id="launch-quantization">
            <select id="launch-quantization" value=${quant} onChange=${(e) => setQuant(e.target.value)}>
              ${quants.map((q) => html`<option value=${q}>${q}</option>`)}
            </select>
          <//>
          <${Field} label="Replicas" id="launch-replica">
            <input id="launch-replica" type="number" min="1" max="64" value=${replica}
              onInput=${(e) => setReplica(e.target.value)} />
          <//>
          <${Field} label="Model uid" id="launch-uid" hint=${`Default: ${family.model_name}`}>
            <input id="launch-uid" value=${uid} placeholder=${family.model_name}
              aria-describedby="launch-uid-hint" onInput=${(e) => setUid(e.target.value)} />
          <//>
        </div>
        <${Field} label="Model path" id="launch-path"
          hint="A local file or folder on the server instead of the cache or a download">
          <input id="launch-path" value=${path} placeholder="/models/my-model"
            aria-describedby="launch-path-hint" onInput=${(e) => setPath(e.target.value)} />
        <//>
        <details>
          <summary>Advanced options</summary>
          <${Field} label="Request limit per replica" id="launch-limits"
            hint="Requests in flight per replica beyond which the server answers 429">
            <input id="launch-limits" type="number" min="1" value=${limits}
              aria-describedby="launch-limits-hint" onInput=${(e) => setLimits(e.target.value)} />
          <//>
          <${Field} label="Engine options (JSON object)" id="launch-extra"
            hint='Sent as extra launch keys, e.g. {"n_ctx": 4096, "n_parallel": 2}'>
            <textarea id="launch-extra" rows="3" value=${extra} aria-describedby="launch-extra-hint"
              aria-invalid=${extraError ? "true" : "false"} onInput=${(e) => setExtra(e.target.value)}></textarea>
          <//>
          <${ErrorBox} error=${extraError} />
        </details>
      </fieldset>
      ${busy
        ? html`<div class="progress" data-testid="launch-progress">
            <label for="launch-progressbar">${progress ? `${progress.stage} (${pct}%)` : "starting"}</label>
            <progress id="launch-progressbar" max="100" value=${pct}></progress>
            <ul class="files">
              ${(progress?.download_files || []).map(
                (f) => html`<li>${f.file_name}: ${f.done ? "done" : `${Math.round((f.downloaded_bytes / (f.total_bytes || 1)) * 100)}%`}</li>`,
              )}
            </ul>
          </div>`
        : null}
      ${state.phase === "ready"
        ? html`<p class="ok" role="status" data-testid="launch-ready">Model <strong>${state.uid}</strong> is ready.</p>`
        : null}
      ${state.phase === "cancelled" ? html`<p role="status">Launch cancelled.</p>` : null}
      ${state.phase === "failed" ? html`<${ErrorBox} error=${state.error} />` : null}
      <h3>Equivalent command</h3>
      <${CodeBlock} code=${cliCommand(request, location.origin)} label="CLI command" />
      <div class="actions">
        ${busy
          ? html`<button type="button" onClick=${cancel} data-testid="launch-cancel">Cancel launch</button>`
          : state.phase === "ready"
            ? html`<button type="button" class="primary" onClick=${() => navigate("running")}
                  data-testid="launch-running">Running models</button>
                <button type="button" onClick=${() => navigate("playground", { model: state.uid })}
                  data-testid="launch-try">Try it</button>`
            : html`<button type="button" onClick=${onClose}>Close</button>
                <button type="submit" class="primary" disabled=${!engines || !!extraError}
                  data-testid="launch-submit">Launch</button>`}
      </div>
    </form>
  <//>`;
}
