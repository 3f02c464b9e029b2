// Register model: a form per model type that writes the Xinference v2 family JSON, shown (and
// editable) beside it; `POST /v1/model_registrations/{type}` registers it, and the server's
// 4xx `detail` is shown inline. The custom models of every type are listed with Edit (load
// into the editor; saving re-registers under the same name) and Delete.

import { useEffect, useState } from "../vendor/hooks.mjs";
import { api, MODEL_TYPES } from "../api.mjs";
import { Dialog, ErrorBox, Field, html, navigate } from "../components.mjs";

const LLM_ABILITIES = ["chat", "generate", "tools", "vision", "reasoning"];
const IMAGE_ABILITIES = ["text2image", "image2image", "inpainting"];

function blankForm() {
  return {
    model_name: "",
    model_description: "",
    languages: "en",
    context_length: 2048,
    model_family: "",
    abilities: ["chat"],
    dimensions: 384,
    max_tokens: 512,
    model_format: "pytorch",
    size: "",
    quantization: "none",
    model_id: "",
    model_uri: "",
    file_template: "",
    image_family: "stable_diffusion",
    image_abilities: ["text2image"],
    audio_family: "whisper",
    multilingual: true,
  };
}

const list = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);

/** The family JSON the form describes (fields left blank are left out). */
export function familyJson(type, f) {
  const spec = {
    model_format: f.model_format,
    model_id: f.model_id || null,
    model_uri: f.model_uri || null,
    quantization: f.quantization || "none",
  };
  if (type === "LLM") {
    spec.model_size_in_billions = f.size === "" ? null : /^\d+$/.test(f.size) ? Number(f.size) : f.size.replace(".", "_");
    if (f.file_template) spec.model_file_name_template = f.file_template;
    return {
      version: 2,
      model_name: f.model_name,
      model_description: f.model_description || null,
      context_length: Number(f.context_length) || null,
      model_lang: list(f.languages),
      model_ability: f.abilities,
      model_family: f.model_family || null,
      model_specs: [spec],
    };
  }
  if (type === "embedding" || type === "rerank") {
    const family = { version: 2, model_name: f.model_name, language: list(f.languages), max_tokens: Number(f.max_tokens) || null, model_specs: [spec] };
    if (type === "embedding") family.dimensions = Number(f.dimensions) || null;
    if (type === "rerank") family.type = "normal";
    return family;
  }
  const src = { huggingface: { model_id: f.model_id || null } };
  if (type === "image") {
    return { version: 2, model_name: f.model_name, model_family: f.image_family, model_ability: f.image_abilities, model_src: src, model_uri: f.model_uri || null };
  }
  return { version: 2, model_name: f.model_name, model_family: f.audio_family, model_ability: ["audio2text"], multilingual: !!f.multilingual, model_src: src, model_uri: f.model_uri || null };
}

export function RegisterPage({ params }) {
  const [type, setType] = useState(params.get("type") || "LLM");
  const [form, setForm] = useState(blankForm());
  const [jsonText, setJsonText] = useState(null); // null: the JSON follows the form
  const [persist, setPersist] = useState(true);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const [editing, setEditing] = useState(null); // the custom being edited: {type, name, json}
  const [customs, setCustoms] = useState([]);
  const [llmFamilies, setLlmFamilies] = useState([]);
  const [deleting, setDeleting] = useState(null);
  const [refresh, setRefresh] = useState(0);

  useEffect(() => {
    Promise.all(
      MODEL_TYPES.map((t) =>
        api(`/v1/model_registrations/${t}?detailed=true`).then((l) => l.map((f) => ({ ...f, _type: t }))),
      ),
    )
      .then((lists) => {
        const all = lists.flat();
        setCustoms(all.filter((f) => !f.is_builtin));
        setLlmFamilies(all.filter((f) => f._type === "LLM" && f.is_builtin).map((f) => f.model_name));
      })
      .catch(setError);
  }, [refresh]);

  const set = (key) => (e) => {
    const value = e.target.type === "checkbox" ? e.target.checked : e.target.value;
    setForm({ ...form, [key]: value });
  };
  const toggle = (key, value) => (e) => {
    const now = form[key].filter((v) => v !== value);
    setForm({ ...form, [key]: e.target.checked ? [...now, value] : now });
  };
  const generated = JSON.stringify(familyJson(type, form), null, 2);
  const text = jsonText === null ? generated : jsonText;
  let parseError = null;
  let model = null;
  try {
    model = JSON.parse(text);
    if (!model || typeof model !== "object" || Array.isArray(model)) parseError = "The model must be a JSON object";
  } catch (e) {
    parseError = `Not valid JSON: ${e.message}`;
  }

  const submit = async (e) => {
    e.preventDefault();
    if (parseError) return;
    setError(null);
    setDone(null);
    const body = { model: JSON.stringify(model), persist };
    try {
      if (editing) {
        // Saving an edit: the old registration goes, the new one comes; if the new one is
        // refused, the old one is put back.
        await api(`/v1/model_registrations/${editing.type}/${encodeURIComponent(editing.name)}`, { method: "DELETE" });
        try {
          await api(`/v1/model_registrations/${type}`, { method: "POST", json: body });
        } catch (err) {
          await api(`/v1/model_registrations/${editing.type}`, {
            method: "POST",
            json: { model: JSON.stringify(editing.json), persist },
          }).catch(() => {});
          throw err;
        }
      } else {
        await api(`/v1/model_registrations/${type}`, { method: "POST", json: body });
      }
      setDone(model.model_name);
      setEditing(null);
      setRefresh(refresh + 1);
    } catch (err) {
      setError(err);
      requestAnimationFrame(() => document.getElementById("register-error")?.scrollIntoView({ block: "nearest" }));
    }
  };

  const edit = (f) => {
    const { is_builtin, _type, ...json } = f;
    setType(_type);
    setEditing({ type: _type, name: f.model_name, json });
    setJsonText(JSON.stringify(json, null, 2));
    setError(null);
    setDone(null);
    document.getElementById("register-json")?.focus();
  };
  const startOver = () => {
    setEditing(null);
    setJsonText(null);
    setForm(blankForm());
    setError(null);
    setDone(null);
  };

  const specFields = html`
    <${Field} label="Model id on the hub" id="reg-model-id" hint="e.g. sentence-transformers/all-MiniLM-L6-v2">
      <input id="reg-model-id" value=${form.model_id} onInput=${set("model_id")} aria-describedby="reg-model-id-hint" />
    <//>
    <${Field} label="Model URI (local copy)" id="reg-model-uri" hint="file:///path/to/weights; takes the place of a download">
      <input id="reg-model-uri" value=${form.model_uri} onInput=${set("model_uri")} aria-describedby="reg-model-uri-hint" />
    <//>`;

  return html`<section aria-labelledby="register-title">
    <h1 id="register-title">${editing ? `Edit ${editing.name}` : "Register a custom model"}</h1>
    <div class="register">
      <form onSubmit=${submit} class="register-form" data-testid="register-form">
        <${Field} label="Model type" id="reg-type">
          <select id="reg-type" value=${type} disabled=${!!editing}
            onChange=${(e) => { setType(e.target.value); setJsonText(null); }}>
            ${MODEL_TYPES.map((t) => html`<option value=${t}>${t}</option>`)}
          </select>
        <//>
        <fieldset disabled=${jsonText !== null}>
          <legend>Form ${jsonText !== null ? "(the JSON is edited by hand)" : ""}</legend>
          <${Field} label="Model name" id="reg-name">
            <input id="reg-name" value=${form.model_name} onInput=${set("model_name")} required=${jsonText === null} />
          <//>
          ${type === "LLM"
            ? html`
              <${Field} label="Description" id="reg-desc">
                <input id="reg-desc" value=${form.model_description} onInput=${set("model_description")} />
              <//>
              <${Field} label="Model family (built-in LLM whose chat format it uses)" id="reg-family">
                <select id="reg-family" value=${form.model_family} onChange=${set("model_family")}>
                  <option value="">(choose)</option>
                  ${llmFamilies.map((n) => html`<option value=${n}>${n}</option>`)}
                </select>
              <//>
              <fieldset class="inline">
                <legend>Abilities</legend>
                ${LLM_ABILITIES.map((a) => html`<label class="check">
                  <input type="checkbox" checked=${form.abilities.includes(a)} onChange=${toggle("abilities", a)} /> ${a}
                </label>`)}
              </fieldset>
              <div class="grid">
                <${Field} label="Context length" id="reg-context">
                  <input id="reg-context" type="number" min="1" value=${form.context_length} onInput=${set("context_length")} />
                <//>
                <${Field} label="Languages (comma-separated)" id="reg-langs">
                  <input id="reg-langs" value=${form.languages} onInput=${set("languages")} />
                <//>
                <${Field} label="Format" id="reg-format">
                  <select id="reg-format" value=${form.model_format} onChange=${set("model_format")}>
                    <option value="pytorch">pytorch (safetensors)</option>
                    <option value="ggufv2">ggufv2</option>
                  </select>
                <//>
                <${Field} label="Size in billions" id="reg-size">
                  <input id="reg-size" value=${form.size} placeholder="0.5" onInput=${set("size")} />
                <//>
                <${Field} label="Quantization" id="reg-quant">
                  <input id="reg-quant" value=${form.quantization} onInput=${set("quantization")} />
                <//>
                <${Field} label="File name template (GGUF)" id="reg-template">
                  <input id="reg-template" value=${form.file_template} placeholder="model-{quantization}.gguf"
                    onInput=${set("file_template")} />
                <//>
              </div>
              ${specFields}`
            : null}
          ${type === "embedding" || type === "rerank"
            ? html`<div class="grid">
                ${type === "embedding"
                  ? html`<${Field} label="Dimensions" id="reg-dims">
                      <input id="reg-dims" type="number" min="1" value=${form.dimensions} onInput=${set("dimensions")} />
                    <//>`
                  : null}
                <${Field} label="Max tokens" id="reg-max-tokens">
                  <input id="reg-max-tokens" type="number" min="1" value=${form.max_tokens} onInput=${set("max_tokens")} />
                <//>
                <${Field} label="Languages (comma-separated)" id="reg-langs">
                  <input id="reg-langs" value=${form.languages} onInput=${set("languages")} />
                <//>
              </div>
              ${specFields}`
            : null}
          ${type === "image"
            ? html`<${Field} label="Model family" id="reg-image-family">
                <input id="reg-image-family" value=${form.image_family} onInput=${set("image_family")} />
              <//>
              <fieldset class="inline">
                <legend>Abilities</legend>
                ${IMAGE_ABILITIES.map((a) => html`<label class="check">
                  <input type="checkbox" checked=${form.image_abilities.includes(a)} onChange=${toggle("image_abilities", a)} /> ${a}
                </label>`)}
              </fieldset>
              ${specFields}`
            : null}
          ${type === "audio"
            ? html`<${Field} label="Model family" id="reg-audio-family">
                <input id="reg-audio-family" value=${form.audio_family} onInput=${set("audio_family")} />
              <//>
              <label class="check"><input type="checkbox" checked=${form.multilingual} onChange=${set("multilingual")} /> Multilingual</label>
              ${specFields}`
            : null}
        </fieldset>
        <label class="check"><input type="checkbox" checked=${persist} onChange=${(e) => setPersist(e.target.checked)} />
          Keep it after a restart (persist)</label>
        <${ErrorBox} error=${parseError || error} id="register-error" />
        ${done
          ? html`<p class="ok" role="status" data-testid="register-done">Registered <strong>${done}</strong>.
              <a href=${`#/launch?type=custom`}>Launch it from the Custom tab</a>.</p>`
          : null}
        <div class="actions">
          ${editing || jsonText !== null ? html`<button type="button" onClick=${startOver}>Start over</button>` : null}
          <button type="submit" class="primary" disabled=${!!parseError} data-testid="register-submit">
            ${editing ? "Save changes" : "Register"}</button>
        </div>
      </form>
      <div class="json-view">
        <${Field} label="Model JSON (edit by hand to set any field)" id="register-json">
          <textarea id="register-json" rows="24" spellcheck="false" value=${text}
            aria-invalid=${parseError ? "true" : "false"} aria-describedby="register-error"
            onInput=${(e) => setJsonText(e.target.value)}></textarea>
        <//>
      </div>
    </div>
    <h2>Custom models</h2>
    ${customs.length === 0
      ? html`<p>None yet.</p>`
      : html`<ul class="customs">${customs.map((f) => html`<li data-custom=${f.model_name}>
          <span><strong>${f.model_name}</strong> <span class="chip">${f._type}</span></span>
          <span class="row-actions">
            <button type="button" onClick=${() => edit(f)} aria-label=${`Edit ${f.model_name}`}>Edit</button>
            <button type="button" onClick=${() => navigate("launch", { type: "custom" })}
              aria-label=${`Launch ${f.model_name}`}>Launch</button>
            <button type="button" class="danger" onClick=${() => setDeleting(f)}
              aria-label=${`Delete ${f.model_name}`}>Delete</button>
          </span>
        </li>`)}</ul>`}
    ${deleting
      ? html`<${ConfirmDelete} family=${deleting} onClose=${() => setDeleting(null)}
          onDone=${() => { setDeleting(null); setRefresh(refresh + 1); }} />`
      : null}
  </section>`;
}

function ConfirmDelete({ family, onClose, onDone }) {
  const [error, setError] = useState(null);
  const remove = async () => {
    try {
      await api(`/v1/model_registrations/${family._type}/${encodeURIComponent(family.model_name)}`, { method: "DELETE" });
      onDone();
    } catch (e) {
      setError(e);
    }
  };
  return html`<${Dialog} title="Delete custom model" onClose=${onClose}>
    <p>Unregister <strong>${family.model_name}</strong> (${family._type})? Running copies keep running.</p>
    <${ErrorBox} error=${error} />
    <div class="actions">
      <button type="button" onClick=${onClose} autofocus>Keep it</button>
      <button type="button" class="danger" onClick=${remove}>Delete</button>
    </div>
  <//>`;
}
