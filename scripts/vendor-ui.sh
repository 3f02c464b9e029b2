#!/usr/bin/env bash
# Vendors the web UI's two libraries, Preact (rendering + hooks) and htm (JSX-like tagged
# templates, so no build step), as ES modules under xinference-server/ui/vendor/.
#
# Run it only to change a version; its output is committed, so `cargo build` and CI need
# neither Node nor the network. Needs `npm` (for `npm pack`, which fetches the published
# tarball and checks it against the registry's integrity hash).
set -euo pipefail
PREACT=10.29.8
HTM=3.1.1

cd "$(dirname "$0")/.."
OUT=xinference-server/ui/vendor
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

(cd "$WORK" && npm pack --silent "preact@$PREACT" "htm@$HTM" >/dev/null)
mkdir -p "$WORK/preact" "$WORK/htm"
tar -xzf "$WORK/preact-$PREACT.tgz" -C "$WORK/preact"
tar -xzf "$WORK/htm-$HTM.tgz" -C "$WORK/htm"

mkdir -p "$OUT"
header() { printf '// %s %s from npm (%s), vendored by scripts/vendor-ui.sh; MIT license.\n' "$1" "$2" "$3"; }
{ header preact "$PREACT" dist/preact.module.js; cat "$WORK/preact/package/dist/preact.module.js"; } > "$OUT/preact.mjs"
# The hooks module imports "preact"; a browser without an import map needs the file's path.
{ header preact/hooks "$PREACT" hooks/dist/hooks.module.js
  sed -e 's#from"preact"#from"./preact.mjs"#g' -e "s#from \"preact\"#from \"./preact.mjs\"#g" \
    "$WORK/preact/package/hooks/dist/hooks.module.js"; } > "$OUT/hooks.mjs"
{ header htm "$HTM" dist/htm.module.js; cat "$WORK/htm/package/dist/htm.module.js"; } > "$OUT/htm.mjs"
cp "$WORK/preact/package/LICENSE" "$OUT/LICENSE-preact"
cp "$WORK/htm/package/LICENSE" "$OUT/LICENSE-htm"
# Source maps are referenced at the end of the files but not shipped: drop the references.
sed -i -e '/^\/\/# sourceMappingURL=/d' -e 's#//\# sourceMappingURL=[^ ]*$##' "$OUT"/*.mjs
grep -q './preact.mjs' "$OUT/hooks.mjs" || { echo "hooks.mjs still imports \"preact\"" >&2; exit 1; }
ls -l "$OUT"
