//! The fuzzing corpus replayed on stable Rust: every file under `fuzz/corpus/<target>/` goes
//! through the same entry point its cargo-fuzz target calls
//! (`xinference_core::runtime::fuzzing`), and none may panic. The corpus holds the seeds
//! (`fuzz/make_seeds.py`) and what `scripts/fuzz.sh` found and kept; `fuzz/regressions/<target>/`
//! every input that once crashed or hung, so a fixed crash stays fixed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use xinference_core::runtime::fuzzing::TARGETS;

#[test]
fn every_corpus_input_runs_without_a_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, entry) in TARGETS {
        let dir = fuzz.join("corpus").join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for fuzz target {name} in {dir:?}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!files.is_empty(), "the corpus of {name} is empty");
        // Inputs that once crashed or hung, kept apart so that minimising the corpus
        // (`cargo fuzz cmin`) never drops them.
        if let Ok(found) = std::fs::read_dir(fuzz.join("regressions").join(name)) {
            files.extend(found.map(|e| e.unwrap().path()));
        }
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            total += 1;
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| entry(&data))) {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("{name}: {}: {text}", file.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "inputs that panic:\n{}",
        failures.join("\n")
    );
    eprintln!("{total} corpus inputs replayed");
}
