#!/usr/bin/env python3
"""The rules of ARCHITECTURE.md that a tool can check, over the crates' sources.

- Layers: `protocol/` (wire types) imports nothing from `runtime`, `hub`, `llm`, `client`;
  the Anthropic and Responses translations (`anthropic/`, `responses/` but their `mod.rs`
  glue and the store) import nothing from `runtime`; `llm/` imports nothing from `runtime`;
  `xinference-core` never names axum or HTTP status codes outside `error.rs`.
- Statuses: the server picks no status itself (`StatusCode::` or `from_u16`) outside
  `error.rs`, the one mapping from `ErrorKind::http_status`; successes (`StatusCode::OK`)
  are fine.
- Size: no function of the crates (tests excluded) is longer than MAX_FN_LINES lines, but the
  few listed in ALLOWED_LONG_FUNCTIONS (each with its length today: it may shrink, not grow).

Exit status 1 with one line per breach; 0 and a summary otherwise.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRATES = ["xinference-core/src", "xinference-server/src", "xinference-cli/src", "src"]
MAX_FN_LINES = 120

# Functions longer than MAX_FN_LINES, with their length, while they wait to be split by purpose
# (none today). An entry may only shrink; a new long function is a breach.
ALLOWED_LONG_FUNCTIONS: dict[str, int] = {}

# Import rules: (folder or file under xinference-core/src, forbidden module paths, files exempt).
IMPORT_RULES = [
    ("protocol", ["runtime", "hub", "llm", "client"], []),
    ("anthropic", ["runtime"], ["anthropic/mod.rs"]),
    ("responses", ["runtime"], ["responses/mod.rs", "responses/store.rs"]),
    ("llm", ["runtime"], []),
]

# Status choices in the server outside error.rs: (file, needle) pairs allowed, with why.
ALLOWED_STATUS = {
    # 405 has no ErrorKind (the core never refuses a method); axum's method fallback.
    ("xinference-server/src/routes/mod.rs", "StatusCode::METHOD_NOT_ALLOWED"),
    # 304 is a cache answer to If-None-Match, not an error: the web UI's files (ETag).
    ("xinference-server/src/ui.rs", "StatusCode::NOT_MODIFIED"),
    # 201 is a success, Xinference's answer to POST /v1/admin/users, not an error.
    ("xinference-server/src/routes/users.rs", "StatusCode::CREATED"),
}


def strip_test_module(text):
    """The text before a trailing `#[cfg(test)] mod tests`."""
    m = re.search(r"^#\[cfg\(test\)\]\s*\n\s*mod \w+", text, re.M)
    return text[: m.start()] if m else text


def code_only(line, state):
    """`line` without comments and string contents (state carries block comments/strings)."""
    out = []
    i = 0
    while i < len(line):
        c = line[i]
        if state["block"]:
            if line.startswith("*/", i):
                state["block"] = False
                i += 2
                continue
            i += 1
            continue
        if state["raw"] is not None:
            end = '"' + "#" * state["raw"]
            j = line.find(end, i)
            if j < 0:
                return "".join(out)
            state["raw"] = None
            i = j + len(end)
            continue
        if state["str"]:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                state["str"] = False
            i += 1
            continue
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"] = True
            i += 2
            continue
        m = re.match(r'b?r(#*)"', line[i:])
        if m and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] == "_")):
            state["raw"] = len(m.group(1))
            i += m.end()
            continue
        if c == '"':
            state["str"] = True
            i += 1
            continue
        if c == "'":
            m = re.match(r"'(\\.|[^\\'])'", line[i:])
            if m:
                i += m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


FN_RE = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+\"C\"\s+)?fn\s+(\w+)")


def long_functions(path, rel):
    """(name, first line, length) of each function of `path` over MAX_FN_LINES lines."""
    lines = strip_test_module(path.read_text()).splitlines()
    state = {"block": False, "str": False, "raw": None}
    code = [code_only(l, state) for l in lines]
    found = []
    for n, l in enumerate(code):
        m = FN_RE.match(l)
        if not m:
            continue
        depth, started = 0, False
        for k in range(n, len(code)):
            for ch in code[k]:
                if ch == "{":
                    depth += 1
                    started = True
                elif ch == "}":
                    depth -= 1
                elif ch == ";" and not started and depth == 0:
                    break
            else:
                if started and depth == 0:
                    length = k - n + 1
                    if length > MAX_FN_LINES:
                        found.append((m.group(7), n + 1, length))
                    break
                continue
            break
    return found


def main():
    breaches = []
    long_seen = {}
    for crate in CRATES:
        for path in sorted((ROOT / crate).rglob("*.rs")):
            rel = path.relative_to(ROOT).as_posix()
            for name, line, length in long_functions(path, rel):
                key = f"{rel}::{name}"
                long_seen[key] = length
                allowed = ALLOWED_LONG_FUNCTIONS.get(key)
                if allowed is None:
                    breaches.append(f"{rel}:{line}: fn {name} has {length} lines (max {MAX_FN_LINES}): split it by purpose")
                elif length > allowed:
                    breaches.append(f"{rel}:{line}: fn {name} grew to {length} lines (allowed {allowed} while it waits to be split)")

    core = ROOT / "xinference-core/src"
    for folder, forbidden, exempt in IMPORT_RULES:
        base = core / folder
        files = sorted(base.rglob("*.rs")) if base.is_dir() else [base.with_suffix(".rs")]
        for path in files:
            rel = path.relative_to(core).as_posix()
            if rel in exempt or not path.exists():
                continue
            text = strip_test_module(path.read_text())
            for module in forbidden:
                for m in re.finditer(rf"\bcrate::{module}\b", text):
                    line = text.count("\n", 0, m.start()) + 1
                    breaches.append(f"xinference-core/src/{rel}:{line}: {folder}/ must not use crate::{module}")

    for path in sorted(core.rglob("*.rs")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if re.search(r"\baxum\b|\bStatusCode\b", text):
            breaches.append(f"{rel}: xinference-core knows no HTTP framework or status codes (ErrorKind::http_status is the bridge)")

    server = ROOT / "xinference-server/src"
    for path in sorted(server.rglob("*.rs")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "xinference-server/src/error.rs":
            continue
        text = strip_test_module(path.read_text())
        for m in re.finditer(r"StatusCode::(\w+)|StatusCode::from_u16", text):
            needle = m.group(0)
            if needle in ("StatusCode::OK",) or (rel, needle) in ALLOWED_STATUS:
                continue
            line = text.count("\n", 0, m.start()) + 1
            breaches.append(f"{rel}:{line}: {needle}: statuses come from ErrorKind::http_status through error.rs")

    for key in ALLOWED_LONG_FUNCTIONS:
        if key not in long_seen:
            breaches.append(f"scripts/check-layers.py: {key} is no longer long (or gone): drop it from ALLOWED_LONG_FUNCTIONS")

    if "--list-long" in sys.argv:
        for key, length in sorted(long_seen.items(), key=lambda kv: -kv[1]):
            print(f"    {key!r}: {length},")
    for b in breaches:
        print(b)
    if breaches:
        return 1
    print(f"check-layers: ok ({len(long_seen)} allowed long functions, max {MAX_FN_LINES} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
