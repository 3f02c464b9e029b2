"""The web UI in a real browser (headless Chromium through selenium), against a real server.

Usage:
  web_ui.py models URL MINILM_DIR QWEN_GGUF SCREENSHOT_DIR
      launch MiniLM from its card and see it under Running models, its snippets and
      description, embeddings in the playground; launch the Qwen GGUF and chat with it
      (streamed text appears, Stop stops); register a custom model and find its card; a bad
      registration shows the server's error; terminate a model; cluster info; keyboard tabs;
      the pages at 800 px wide; no errors in the browser console.
  web_ui.py media URL SCREENSHOT_DIR AUDIO_UID AUDIO_FILE IMAGE_UID RERANK_UID
      the audio playground transcribes an uploaded file, the image playground draws a picture,
      the rerank playground ranks documents.
  web_ui.py cancel URL SCREENSHOT_DIR
      a launch from the hub shows its download progress, and Cancel terminates it.
  web_ui.py login URL SCREENSHOT_DIR USER PASSWORD
      with auth on: the login form, then the pages work with the token.

Prints "web ui: ok" at the end; any failed check raises.
"""

import json
import os
import shutil
import sys
import time

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:
    sys.exit(
        "selenium is not installed in this Python.\n"
        "Fix: pip install -r tests/python/requirements.txt (or run `bash .ci/run`)."
    )

CHROMIUM = os.environ.get("XINFERENCE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("XINFERENCE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")


def browser(width=1280, height=900):
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) or shutil.which(path)):
            sys.exit(
                f"{path} is missing.\nFix: apt-get install -y chromium chromium-driver "
                "(or run `bash .ci/run`), or set XINFERENCE_TEST_CHROMIUM / XINFERENCE_TEST_CHROMEDRIVER."
            )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver from the system package: selenium must not try to download one.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


class Ui:
    def __init__(self, driver, url, shots):
        self.d = driver
        self.url = url.rstrip("/")
        self.shots = shots
        self.console = []

    def wait(self, condition, timeout=30, what=""):
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.1).until(condition)
        except TimeoutException:
            self.shot("timeout")
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")

    def css(self, selector, timeout=30):
        return self.wait(
            EC.presence_of_element_located((By.CSS_SELECTOR, selector)), timeout, selector
        )

    def visible(self, selector, timeout=30):
        return self.wait(
            EC.visibility_of_element_located((By.CSS_SELECTOR, selector)), timeout, selector
        )

    def click(self, selector, timeout=30):
        el = self.wait(
            EC.element_to_be_clickable((By.CSS_SELECTOR, selector)), timeout, selector
        )
        el.click()
        return el

    def text_in(self, selector, needle, timeout=30):
        self.wait(
            EC.text_to_be_present_in_element((By.CSS_SELECTOR, selector), needle),
            timeout,
            f"{needle!r} in {selector}",
        )
        return self.d.find_element(By.CSS_SELECTOR, selector).text

    def fill(self, selector, value):
        el = self.visible(selector)
        el.clear()
        el.send_keys(value)
        return el

    def page(self, name):
        self.click(f'nav a[data-page="{name}"]')
        self.wait(
            lambda d: d.execute_script("return location.hash").startswith(f"#/{name}"),
            10,
            f"page {name}",
        )

    def shot(self, name):
        path = os.path.join(self.shots, f"{name}.png")
        self.d.save_screenshot(path)
        print(f"screenshot: {path}")

    def check_console(self, allowed=()):
        """No errors in the browser console, but for network errors naming one of `allowed`."""
        errors = []
        for entry in self.d.get_log("browser"):
            self.console.append(entry)
            if entry["level"] != "SEVERE":
                continue
            message = entry["message"]
            if entry.get("source") == "network" and any(a in message for a in allowed):
                continue
            errors.append(message)
        assert not errors, f"errors in the browser console: {errors}"

    def check_labels(self):
        """Every form control has a label, every button a name (text or aria-label)."""
        missing = self.d.execute_script(
            """
            const out = [];
            for (const el of document.querySelectorAll('input, select, textarea')) {
              if (el.type === 'hidden') continue;
              if (!(el.labels && el.labels.length) && !el.getAttribute('aria-label')) {
                out.push(el.outerHTML.slice(0, 120));
              }
            }
            for (const b of document.querySelectorAll('button, a[href]')) {
              if (!b.textContent.trim() && !b.getAttribute('aria-label')) out.push(b.outerHTML.slice(0, 120));
            }
            return out;
            """
        )
        assert not missing, f"controls without a label or name: {missing}"

    def fits_width(self):
        overflow = self.d.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than the window"


def launch_from_card(ui, tab, model, path, quantization=None, timeout=180):
    ui.page("launch")
    ui.click(f"#type-{tab}")
    ui.fill("#launch-search", model)
    ui.click(f'[data-launch="{model}"]')
    ui.visible("dialog[open] #launch-path")
    # The engines' choices arrive from /v1/engines/{type}/{name}.
    ui.css("#launch-engine option")
    if quantization:
        ui.css(f'#launch-quantization option[value="{quantization}"]')
        Select(ui.css("#launch-quantization")).select_by_value(quantization)
    ui.fill("#launch-path", path)
    ui.check_labels()
    command = ui.css("dialog[open] .code pre").text
    assert f"--model-name {model}" in command and "--model-path" in command, command
    return command


def models_flow(url, minilm, qwen, shots):
    d = browser()
    ui = Ui(d, url, shots)
    try:
        d.get(url + "/")
        ui.css('nav a[data-page="launch"][aria-current="page"]')
        ui.css('[data-model="qwen2.5-coder-instruct"]')
        ui.shot("01-launch")

        # Keyboard: arrow keys move between the model type tabs.
        ui.css("#type-LLM").send_keys(Keys.ARROW_RIGHT)
        ui.wait(
            lambda d: d.find_element(By.ID, "type-embedding").get_attribute("aria-selected")
            == "true",
            10,
            "ArrowRight to select the embedding tab",
        )
        assert d.switch_to.active_element.get_attribute("id") == "type-embedding"

        # Keyboard: Enter on a card's Launch opens its dialog, Escape closes it, and the focus
        # is back on that button.
        launch_button = ui.css('[data-launch="all-MiniLM-L6-v2"]')
        d.execute_script("arguments[0].focus()", launch_button)
        launch_button.send_keys(Keys.ENTER)
        ui.visible("dialog[open] #launch-engine")
        d.switch_to.active_element.send_keys(Keys.ESCAPE)
        ui.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, "dialog"), 10, "the dialog to close")
        assert d.switch_to.active_element.get_attribute("data-launch") == "all-MiniLM-L6-v2"

        # Chat answers are escaped before any markdown becomes a tag.
        rendered = d.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            import('/ui/markdown.mjs').then((m) => done(m.renderMarkdown(
              '<img src=x onerror=alert(1)> **bold** [x](javascript:alert(1))\\n```\\n<b>code</b>\\n```')));
            """
        )
        assert "<img" not in rendered and "<b>" not in rendered, rendered
        assert "&lt;img" in rendered and "<strong>bold</strong>" in rendered, rendered
        assert 'href="javascript' not in rendered, rendered

        # Launch MiniLM from its card; see it under Running models.
        launch_from_card(ui, "embedding", "all-MiniLM-L6-v2", minilm)
        ui.shot("02-launch-dialog")
        ui.click('[data-testid="launch-submit"]')
        ui.text_in('[data-testid="launch-ready"]', "all-MiniLM-L6-v2", timeout=180)
        ui.click('[data-testid="launch-running"]')
        row = ui.css('tr[data-uid="all-MiniLM-L6-v2"]')
        ui.text_in('tr[data-uid="all-MiniLM-L6-v2"]', "READY")
        assert "embedding" in row.text, row.text
        ui.click('[aria-label="Try the API of all-MiniLM-L6-v2"]')
        snippet = ui.css('[aria-label="curl snippet"]').text
        assert "/v1/embeddings" in snippet and "all-MiniLM-L6-v2" in snippet, snippet
        ui.click("#snippet-rust")
        ui.text_in('[aria-label="rust snippet"]', "into_embedding")
        ui.click('[aria-label="Describe all-MiniLM-L6-v2"]')
        ui.text_in('[aria-label="Model description"]', '"dimensions": 384')
        ui.shot("03-running")
        ui.check_console()

        # Embeddings in the playground.
        ui.click('[aria-label="Open all-MiniLM-L6-v2 in the playground"]')
        ui.click('[data-testid="embeddings"] button[type="submit"]')
        ui.text_in('[data-testid="embed-result"]', "3 vectors of 384 dimensions")
        ui.shot("04-playground-embeddings")

        # A launch that fails while loading shows why, and leaves nothing behind.
        launch_from_card(ui, "LLM", "smollm2-instruct", "/nonexistent/model.gguf", quantization="Q4_1")
        ui.click('[data-testid="launch-submit"]')
        ui.text_in('dialog[open] [role="alert"]', "does not exist", timeout=60)
        ui.shot("04b-launch-error")
        ui.click("dialog[open] .actions button")  # Close
        ui.page("running")
        ui.css('tr[data-uid="all-MiniLM-L6-v2"]')
        assert not d.find_elements(By.CSS_SELECTOR, 'tr[data-uid="smollm2-instruct"]')
        ui.check_console()

        # Launch the Qwen GGUF and chat with it: streamed text appears, then Stop stops.
        command = launch_from_card(
            ui, "LLM", "qwen2.5-coder-instruct", qwen, quantization="q4_k_m"
        )
        assert "--model-engine llama.cpp" in command and "--model-format ggufv2" in command, command
        ui.click('[data-testid="launch-submit"]')
        ui.text_in('[data-testid="launch-ready"]', "qwen2.5-coder-instruct", timeout=180)
        ui.click('[data-testid="launch-try"]')
        ui.wait(
            lambda d: "model=qwen2.5-coder-instruct" in d.execute_script("return location.hash"),
            10,
            "the playground of qwen",
        )
        ui.css('[data-testid="chat"]')
        ui.check_labels()
        open_settings = "document.querySelector('[data-testid=\"chat\"] details').open = true"
        d.execute_script(open_settings)
        ui.fill("#chat-max-tokens", "40")
        ui.fill("#chat-input", "Write a Python function that adds two numbers.")
        ui.click('[data-testid="chat-send"]')
        ui.visible('[data-testid="chat-stop"]', 30)
        assistant = '.msg.assistant .markdown'
        seen = []
        deadline = time.time() + 120
        while time.time() < deadline:
            text = d.execute_script(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''",
                assistant,
            )
            if text and (not seen or text != seen[-1]):
                seen.append(text)
            if not d.find_elements(By.CSS_SELECTOR, '[data-testid="chat-stop"]'):
                break
            time.sleep(0.05)
        final = ui.css(assistant).text
        assert final.strip(), "the answer is empty"
        assert len(seen) >= 2, f"the answer did not arrive in pieces: {seen}"
        assert len(seen[-1]) > len(seen[0]), f"the answer did not grow: {seen}"
        print(f"chat answer ({len(seen)} updates): {final[:200]!r}")
        ui.shot("05-playground-chat")
        # Stop: a long answer is cut short and the form comes back.
        d.execute_script(open_settings)
        ui.fill("#chat-max-tokens", "2000")
        ui.fill("#chat-input", "Count from 1 to 500, one number per line.")
        ui.click('[data-testid="chat-send"]')
        ui.wait(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, assistant)) == 2
            and d.find_elements(By.CSS_SELECTOR, assistant)[1].text.strip(),
            60,
            "the second answer to start",
        )
        ui.click('[data-testid="chat-stop"]')
        ui.visible('[data-testid="chat-send"]', 10)
        stopped = d.find_elements(By.CSS_SELECTOR, assistant)[1].text
        time.sleep(1.0)
        assert d.find_elements(By.CSS_SELECTOR, assistant)[1].text == stopped, "text kept coming after Stop"
        assert "500" not in stopped, stopped
        ui.check_console()

        # Register a custom model and find its card.
        ui.page("register")
        Select(ui.css("#reg-type")).select_by_value("embedding")
        ui.fill("#reg-name", "ui-minilm")
        ui.fill("#reg-model-uri", "file://" + minilm)
        json_view = ui.css("#register-json").get_attribute("value")
        assert '"model_name": "ui-minilm"' in json_view and '"dimensions": 384' in json_view, json_view
        ui.check_labels()
        ui.shot("06-register")
        ui.click('[data-testid="register-submit"]')
        ui.text_in('[data-testid="register-done"]', "ui-minilm")
        ui.css('[data-custom="ui-minilm"]')
        ui.click('[data-testid="register-done"] a')
        ui.css('#type-custom[aria-selected="true"]')
        card = ui.css('[data-model="ui-minilm"]')
        assert "custom embedding" in card.text, card.text
        ui.shot("07-custom-card")
        ui.check_console()

        # Edit it (the JSON by hand), see the change on its card, then delete it.
        ui.page("register")
        ui.click('[aria-label="Edit ui-minilm"]')
        ui.text_in("h1", "Edit ui-minilm")
        family = json.loads(ui.css("#register-json").get_attribute("value"))
        assert family["model_name"] == "ui-minilm" and "is_builtin" not in family, family
        family["max_tokens"] = 128
        ui.fill("#register-json", json.dumps(family))
        ui.click('[data-testid="register-submit"]')
        ui.text_in('[data-testid="register-done"]', "ui-minilm")
        ui.click('[data-testid="register-done"] a')
        ui.text_in('[data-model="ui-minilm"]', "max 128 tokens")
        ui.page("register")
        ui.click('[aria-label="Delete ui-minilm"]')
        ui.click("dialog[open] button.danger")
        ui.wait(
            lambda d: not d.find_elements(By.CSS_SELECTOR, '[data-custom="ui-minilm"]'),
            30,
            "ui-minilm to leave the custom list",
        )
        ui.check_console()

        # A bad registration: the server's 400 is shown inline.
        ui.page("register")
        Select(ui.css("#reg-type")).select_by_value("embedding")
        ui.fill("#reg-name", "no-dimensions")
        ui.fill("#reg-model-uri", "file://" + minilm)
        ui.css("#reg-dims").send_keys(Keys.CONTROL, "a")
        ui.css("#reg-dims").send_keys(Keys.DELETE)
        ui.click('[data-testid="register-submit"]')
        error = ui.text_in('[data-testid="register-form"] [role="alert"]', "dimensions field required")
        assert "HTTP 400" in error, error
        ui.shot("08-register-error")
        # The one console error allowed: the network log line of that 400.
        ui.check_console(allowed=("/v1/model_registrations/embedding",))

        # Terminate MiniLM after confirming.
        ui.page("running")
        ui.click('[data-terminate="all-MiniLM-L6-v2"]')
        ui.visible("dialog[open]")
        ui.shot("09-terminate-confirm")
        ui.click('[data-testid="confirm-terminate"]')
        ui.wait(
            lambda d: not d.find_elements(By.CSS_SELECTOR, 'tr[data-uid="all-MiniLM-L6-v2"]'),
            30,
            "MiniLM to leave the list",
        )
        ui.css('tr[data-uid="qwen2.5-coder-instruct"]')

        # Cluster info.
        ui.page("cluster")
        ui.text_in('[data-testid="version"]', "xinference-rs")
        info = ui.css('[data-testid="cluster-node"]').text
        assert "CPUs" in info and "Memory" in info and "SIMD" in info, info
        ui.shot("10-cluster")
        ui.check_console()

        # Readable at 800 px: nothing wider than the window.
        d.set_window_size(800, 900)
        for name in ("launch", "running", "playground", "register", "cluster"):
            ui.page(name)
            time.sleep(0.5)
            ui.fits_width()
            ui.check_labels()
            ui.shot(f"11-{name}-800px")
        ui.check_console()
    finally:
        d.quit()


def media_flow(url, shots, audio_uid, audio_file, image_uid, rerank_uid):
    d = browser()
    ui = Ui(d, url, shots)
    try:
        # Audio: upload a clip, read its transcription.
        d.get(f"{url}/#/playground?model={audio_uid}")
        ui.css('[data-testid="audio"]')
        ui.css("#audio-file").send_keys(audio_file)
        ui.click('[data-testid="audio"] button[type="submit"]')
        text = ui.text_in("blockquote.result", "lazy", timeout=120)
        print(f"transcription: {text!r}")
        ui.shot("12-playground-audio")
        # Image: a small picture from the tiny pipeline.
        d.get(f"{url}/#/playground?model={image_uid}")
        ui.css('[data-testid="image"]')
        ui.fill("#image-size", "64x64")
        ui.fill("#image-steps", "2")
        ui.fill("#image-seed", "7")
        ui.click('[data-testid="image"] button[type="submit"]')
        img = ui.css(".images img", timeout=120)
        ui.wait(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img), 30, "the image to load")
        size = d.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", img)
        assert size == [64, 64], size
        assert img.get_attribute("src").startswith("data:image/png;base64,")
        ui.shot("13-playground-image")
        # Rerank: the three documents come back ranked, each with its score.
        d.get(f"{url}/#/playground?model={rerank_uid}")
        ui.click('[data-testid="rerank"] button[type="submit"]')
        ui.wait(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "ol.result li")) == 3, 60, "3 ranked documents"
        )
        scores = [
            float(li.find_element(By.TAG_NAME, "strong").text)
            for li in d.find_elements(By.CSS_SELECTOR, "ol.result li")
        ]
        assert scores == sorted(scores, reverse=True), scores
        ui.shot("15-playground-rerank")
        ui.check_console()
    finally:
        d.quit()


def cancel_flow(url, shots):
    d = browser()
    ui = Ui(d, url, shots)
    try:
        d.get(url + "/")
        ui.click("#type-embedding")
        ui.fill("#launch-search", "all-MiniLM-L6-v2")
        ui.click('[data-launch="all-MiniLM-L6-v2"]')
        ui.css("#launch-engine option")
        ui.click('[data-testid="launch-submit"]')
        ui.text_in('[data-testid="launch-progress"] label', "downloading", timeout=60)
        ui.text_in('[data-testid="launch-progress"]', "model.safetensors", timeout=60)
        ui.shot("14-launch-progress")
        ui.click('[data-testid="launch-cancel"]')
        ui.text_in("dialog[open] [role=status]", "Launch cancelled", timeout=30)
        ui.click("dialog[open] .actions button")  # Close
        ui.page("running")
        ui.css('[data-testid="no-models"]')
        ui.check_console()
    finally:
        d.quit()


def login_flow(url, shots, user, password):
    d = browser()
    ui = Ui(d, url, shots)
    try:
        d.get(url + "/")
        ui.fill("#login-username", user)
        ui.fill("#login-password", password)
        ui.shot("20-login")
        ui.click('button[type="submit"]')
        ui.css('[data-model="qwen2.5-coder-instruct"]')
        ui.page("running")
        ui.css('[data-testid="no-models"]')
        ui.page("cluster")
        ui.text_in('[data-testid="version"]', "xinference-rs")
        token = d.execute_script("return sessionStorage.getItem('xinference-rs.token')")
        assert token and token.count(".") == 2, token
        ui.check_console()
        # Log out: the login form again, the token gone.
        ui.click("header.top button.link")
        ui.css("#login-username")
        assert d.execute_script("return sessionStorage.getItem('xinference-rs.token')") is None
    finally:
        d.quit()


def main():
    mode = sys.argv[1]
    if mode == "models":
        url, minilm, qwen, shots = sys.argv[2:6]
        os.makedirs(shots, exist_ok=True)
        models_flow(url, minilm, qwen, shots)
    elif mode == "media":
        url, shots, audio_uid, audio_file, image_uid, rerank_uid = sys.argv[2:8]
        os.makedirs(shots, exist_ok=True)
        media_flow(url, shots, audio_uid, audio_file, image_uid, rerank_uid)
    elif mode == "cancel":
        url, shots = sys.argv[2:4]
        os.makedirs(shots, exist_ok=True)
        cancel_flow(url, shots)
    elif mode == "login":
        url, shots, user, password = sys.argv[2:6]
        os.makedirs(shots, exist_ok=True)
        login_flow(url, shots, user, password)
    else:
        sys.exit(f"unknown mode {mode}")
    print("web ui: ok")


if __name__ == "__main__":
    main()
