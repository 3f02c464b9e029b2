//! Reading the JSON files of a model folder (`config.json`, tokenizer and scheduler
//! configs): one reader, one error for every loader.

use crate::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// Reads the JSON file at `path`: a 400 naming the path when it is missing, unreadable or not
/// JSON (a model folder is the user's input).
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::bad_request(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::bad_request(format!("{} is not valid JSON: {e}", path.display())))
}

/// [`read_json`] for a file a model folder may lack (`tokenizer_config.json`,
/// `generation_config.json`, ...): `None` when it is not there.
pub(crate) fn read_optional_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => read_json(path).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_files_are_400s_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_json(&dir.path().join("config.json")).unwrap_err();
        assert_eq!(missing.kind(), crate::ErrorKind::BadRequest);
        assert!(missing.message().contains("config.json"), "{missing}");
        std::fs::write(dir.path().join("bad.json"), "{").unwrap();
        let bad = read_json(&dir.path().join("bad.json")).unwrap_err();
        assert!(
            bad.message().contains("bad.json is not valid JSON"),
            "{bad}"
        );
        std::fs::write(dir.path().join("ok.json"), r#"{"a": 1}"#).unwrap();
        assert_eq!(read_json(&dir.path().join("ok.json")).unwrap()["a"], 1);
        // A file the folder may lack: None when missing, the same errors otherwise.
        assert_eq!(
            read_optional_json(&dir.path().join("none.json")).unwrap(),
            None
        );
        assert!(read_optional_json(&dir.path().join("bad.json")).is_err());
    }
}
