#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/) for SECONDS each, one at a time, on its
# corpus (fuzz/corpus/<target>/), then minimises that corpus. Needs nightly and cargo-fuzz
# (`cargo install cargo-fuzz`). A crash stops the script: its input is in
# fuzz/artifacts/<target>/; fix it, add a unit test, and copy the input into
# fuzz/regressions/<target>/ (which minimising never touches) so that
# `cargo test --release --workspace --test fuzz_corpus` (stable, in CI) keeps it fixed.
#
#   scripts/fuzz.sh                 # every target, 180 s each
#   SECONDS_PER_TARGET=30 scripts/fuzz.sh chat_request gguf_file
#
# The fuzz build has its own target folder (fuzz/target, with sanitizer flags): several GB;
# delete it when done.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
per_target="${SECONDS_PER_TARGET:-180}"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${per_target}s"
  # Inputs are bodies and model files: 1 MiB is plenty; 4 GiB of memory, 10 s per input.
  regressions=()
  [ -d "regressions/$t" ] && regressions=("regressions/$t")
  cargo +nightly fuzz run --release "$t" "corpus/$t" "${regressions[@]}" -- \
    -max_total_time="$per_target" -max_len=1048576 -rss_limit_mb=4096 -timeout=10 \
    -print_final_stats=1
  cargo +nightly fuzz cmin --release "$t" "corpus/$t"
done
du -sh corpus
