// Small building blocks shared by the pages: an error line, a modal dialog, a labelled field,
// a code block with a copy button, and accessible tabs.

import { h } from "./vendor/preact.mjs";
import { useEffect, useRef, useState } from "./vendor/hooks.mjs";
import htm from "./vendor/htm.mjs";

/** htm bound to Preact: html`<div>...</div>`. */
export const html = htm.bind(h);

/** An error message (announced to screen readers), or nothing. */
export function ErrorBox({ error, id }) {
  if (!error) return null;
  const text = typeof error === "string" ? error : error.detail || error.message || String(error);
  const status = error && error.status ? ` (HTTP ${error.status})` : "";
  return html`<p class="error" role="alert" id=${id} data-testid="error">${text}${status}</p>`;
}

/**
 * A modal `<dialog>`: focus stays inside, Escape closes it (calling `onClose`).
 * Rendered only while open.
 */
export function Dialog({ title, onClose, children, wide }) {
  const ref = useRef(null);
  const close = useRef(onClose);
  close.current = onClose;
  useEffect(() => {
    // Focus goes back where it was (the button that opened the dialog) when it closes.
    const opener = document.activeElement;
    const d = ref.current;
    if (d && !d.open) d.showModal();
    const cancel = (e) => {
      e.preventDefault();
      close.current();
    };
    d.addEventListener("cancel", cancel);
    return () => {
      d.removeEventListener("cancel", cancel);
      // Close it first: while a modal dialog is open, the rest of the page cannot take focus.
      if (d.open) d.close();
      if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
    };
  }, []);
  return html`<dialog ref=${ref} class=${wide ? "wide" : ""} aria-labelledby="dialog-title">
    <header class="dialog-head">
      <h2 id="dialog-title">${title}</h2>
      <button type="button" class="icon" aria-label="Close" onClick=${onClose}>×</button>
    </header>
    ${children}
  </dialog>`;
}

/** A label and its control: `<${Field} label="Name" id="x"><input id="x" .../><//>`. */
export function Field({ label, id, children, hint }) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${children}
    ${hint ? html`<small class="hint" id=${`${id}-hint`}>${hint}</small>` : null}
  </div>`;
}

/** Preformatted code with a Copy button. */
export function CodeBlock({ code, label }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(code);
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    } catch {
      // Clipboard refused (not a secure context): the text is selectable.
    }
  };
  return html`<div class="code">
    <button type="button" class="copy" onClick=${copy} aria-label=${`Copy ${label || "code"}`}>
      ${copied ? "Copied" : "Copy"}
    </button>
    <pre tabindex="0" aria-label=${label}><code>${code}</code></pre>
  </div>`;
}

/**
 * Tabs with arrow-key navigation (WAI-ARIA tabs pattern). `tabs` is [[key, label]]; the
 * panel is the children.
 */
export function Tabs({ tabs, current, onChange, label, children, idPrefix = "tab" }) {
  const keydown = (e) => {
    const i = tabs.findIndex(([k]) => k === current);
    let next = null;
    if (e.key === "ArrowRight") next = (i + 1) % tabs.length;
    if (e.key === "ArrowLeft") next = (i - 1 + tabs.length) % tabs.length;
    if (e.key === "Home") next = 0;
    if (e.key === "End") next = tabs.length - 1;
    if (next !== null) {
      e.preventDefault();
      onChange(tabs[next][0]);
      const el = document.getElementById(`${idPrefix}-${tabs[next][0]}`);
      if (el) el.focus();
    }
  };
  return html`<div>
    <div role="tablist" aria-label=${label} class="tabs" onKeyDown=${keydown}>
      ${tabs.map(
        ([key, text]) => html`<button
          type="button"
          role="tab"
          id=${`${idPrefix}-${key}`}
          aria-selected=${key === current ? "true" : "false"}
          aria-controls=${`${idPrefix}-panel`}
          tabindex=${key === current ? 0 : -1}
          onClick=${() => onChange(key)}
        >${text}</button>`,
      )}
    </div>
    <div role="tabpanel" id=${`${idPrefix}-panel`} aria-labelledby=${`${idPrefix}-${current}`}>
      ${children}
    </div>
  </div>`;
}

/** Calls `fn` now and every `ms` milliseconds while mounted. */
export function useInterval(fn, ms, deps = []) {
  useEffect(() => {
    let stopped = false;
    const tick = () => !stopped && fn();
    tick();
    const t = setInterval(tick, ms);
    return () => {
      stopped = true;
      clearInterval(t);
    };
  }, deps);
}

/** Moves to `page` (`launch`, `running`, ...) with `params` (an object) in the hash. */
export function navigate(page, params = {}) {
  const q = new URLSearchParams(params).toString();
  location.hash = `#/${page}${q ? `?${q}` : ""}`;
}

/** Xinference's size spelling (`0_5`) for people (`0.5`). */
export function sizeLabel(size) {
  return size === null || size === undefined ? "" : String(size).replace("_", ".");
}
