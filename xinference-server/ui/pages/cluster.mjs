// Cluster info: `/v1/cluster/info` (version, SIMD features, CPUs, memory, models, uptime),
// `/status`, and the running models by type from `/v1/models`.

import { useState } from "../vendor/hooks.mjs";
import { api, bytes } from "../api.mjs";
import { ErrorBox, html, useInterval } from "../components.mjs";

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return [d ? `${d} d` : "", h ? `${h} h` : "", `${m} min`, `${s % 60} s`].filter(Boolean).join(" ");
}

export function ClusterPage({ authOn }) {
  const [nodes, setNodes] = useState(null);
  const [models, setModels] = useState([]);
  const [error, setError] = useState(null);
  useInterval(async () => {
    try {
      const [info, list] = await Promise.all([api("/v1/cluster/info"), api("/v1/models")]);
      setNodes(info);
      setModels(list.data);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, 5000);
  const byType = {};
  for (const m of models) byType[m.model_type] = (byType[m.model_type] || 0) + 1;
  return html`<section aria-labelledby="cluster-title">
    <h1 id="cluster-title">Cluster info</h1>
    <${ErrorBox} error=${error} />
    ${(nodes || []).map((n) => html`<dl class="facts-list" data-testid="cluster-node">
      <dt>Version</dt><dd data-testid="version">xinference-rs ${n.version}</dd>
      <dt>Node</dt><dd>${n.node_type} at ${n.ip_address}</dd>
      <dt>Build SIMD features</dt><dd>${n.simd_features.length ? n.simd_features.join(", ") : "none (build with -C target-cpu=native for fast kernels)"}</dd>
      <dt>CPUs</dt><dd>${n.cpu_count} (compute threads: ${n.compute_threads})</dd>
      <dt>Memory</dt><dd>${bytes(n.mem_used)} used of ${bytes(n.mem_total)} (${bytes(n.mem_available)} available)</dd>
      ${n.mem_total ? html`<dd><meter min="0" max=${n.mem_total} value=${n.mem_used} aria-label="Memory used">${bytes(n.mem_used)}</meter></dd>` : null}
      <dt>GPUs</dt><dd>${n.gpu_count} (this build runs on the CPU)</dd>
      <dt>Uptime</dt><dd>${duration(n.uptime)}</dd>
      <dt>Models</dt><dd>${n.models} running${Object.keys(byType).length
        ? ` (${Object.entries(byType).map(([t, c]) => `${c} ${t}`).join(", ")})` : ""}</dd>
    </dl>`)}
    ${authOn
      ? html`<p>The API description is at <code>/openapi.json</code> (send your token or an API key).</p>`
      : html`<p><a href="/openapi.json" target="_blank" rel="noopener">API description (openapi.json)</a></p>`}
  </section>`;
}
