// The shell of the web UI: navigation between the pages (hash routes, so the server serves
// one page), the login form when the server has auth on, and the skip link.

import { render } from "./vendor/preact.mjs";
import { useEffect, useState } from "./vendor/hooks.mjs";
import { api, ApiError, onUnauthorized, setToken, token } from "./api.mjs";
import { ErrorBox, Field, html } from "./components.mjs";
import { LaunchPage } from "./pages/launch.mjs";
import { RunningPage } from "./pages/running.mjs";
import { PlaygroundPage } from "./pages/playground.mjs";
import { RegisterPage } from "./pages/register.mjs";
import { ClusterPage } from "./pages/cluster.mjs";

const PAGES = [
  ["launch", "Launch", LaunchPage],
  ["running", "Running models", RunningPage],
  ["playground", "Playground", PlaygroundPage],
  ["register", "Register model", RegisterPage],
  ["cluster", "Cluster info", ClusterPage],
];

/** The page and its query of `location.hash` (`#/playground?model=x`). */
function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [name, query = ""] = raw.split("?");
  const known = PAGES.some(([key]) => key === name);
  return { page: known ? name : "launch", params: new URLSearchParams(query) };
}

function Login({ onDone }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const answer = await api("/token", { method: "POST", form: { username, password } });
      setToken(answer.access_token);
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main id="main" class="login">
    <h1>Log in to xinference-rs</h1>
    <p>This server has access control on. Log in with your user name and password.</p>
    <form onSubmit=${submit} aria-describedby="login-error">
      <${Field} label="User name" id="login-username">
        <input id="login-username" name="username" autocomplete="username" required
          value=${username} onInput=${(e) => setUsername(e.target.value)} />
      <//>
      <${Field} label="Password" id="login-password">
        <input id="login-password" name="password" type="password" autocomplete="current-password" required
          value=${password} onInput=${(e) => setPassword(e.target.value)} />
      <//>
      <${ErrorBox} error=${error} id="login-error" />
      <button type="submit" class="primary" disabled=${busy}>${busy ? "Logging in…" : "Log in"}</button>
    </form>
  </main>`;
}

function App() {
  const [route, setRoute] = useState(parseHash());
  // null: not known yet; true/false: whether the server asks for credentials.
  const [authOn, setAuthOn] = useState(null);
  const [needLogin, setNeedLogin] = useState(false);
  const [error, setError] = useState(null);

  useEffect(() => {
    const onHash = () => setRoute(parseHash());
    window.addEventListener("hashchange", onHash);
    const off = onUnauthorized(() => {
      setToken(null);
      setNeedLogin(true);
    });
    api("/v1/cluster/auth")
      .then((a) => {
        setAuthOn(!!a.auth);
        setNeedLogin(!!a.auth && !token());
      })
      .catch((e) => setError(e instanceof ApiError ? e : new ApiError(0, String(e))));
    return () => {
      window.removeEventListener("hashchange", onHash);
      off();
    };
  }, []);

  useEffect(() => {
    const label = PAGES.find(([k]) => k === route.page)[1];
    document.title = `${label} · xinference-rs`;
  }, [route.page]);

  if (error) return html`<main id="main"><h1>xinference-rs</h1><${ErrorBox} error=${error} /></main>`;
  if (authOn === null) return html`<main id="main"><p aria-busy="true">Loading…</p></main>`;
  if (needLogin) return html`<${Login} onDone=${() => setNeedLogin(false)} />`;

  const Page = PAGES.find(([k]) => k === route.page)[2];
  const logout = () => {
    setToken(null);
    setNeedLogin(true);
  };
  return html`
    <a class="skip" href="#main" onClick=${(e) => {
      e.preventDefault();
      document.getElementById("main").focus();
    }}>Skip to content</a>
    <header class="top">
      <span class="brand">xinference-rs</span>
      <nav aria-label="Pages">
        <ul>
          ${PAGES.map(
            ([key, label]) => html`<li>
              <a href=${`#/${key}`} aria-current=${route.page === key ? "page" : null}
                data-page=${key}>${label}</a>
            </li>`,
          )}
        </ul>
      </nav>
      ${authOn ? html`<button type="button" class="link" onClick=${logout}>Log out</button>` : null}
    </header>
    <main id="main" tabindex="-1">
      <${Page} params=${route.params} authOn=${authOn} key=${route.page} />
    </main>`;
}

render(html`<${App} />`, document.getElementById("app"));
