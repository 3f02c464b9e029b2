//! The one place where a user's string that becomes a path is checked: plain names (model
//! names, formats, sizes, quantizations, uids, image file names), relative paths inside the
//! caches (repository ids, file templates, revisions), and, with auth on, the local folders a
//! launch may load from (`model_path`, a spec's `model_uri`), confined to allowed roots.

use crate::{Error, ErrorKind, Result};
use std::path::{Component, Path, PathBuf};

/// The one rule for a user's string that names a file or folder on its own (model names,
/// formats, sizes, quantizations, model uids, image file names): letters, digits, '.', '_'
/// and '-', not starting with '.', at most 200 characters; a 400 naming `field` otherwise.
pub fn check_plain_name(field: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 200
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "Invalid {field} `{value}`: use letters, digits, '.', '_' and '-' only"
        )))
    }
}

/// A relative path of plain parts (no leading '/', no '\\', no NUL, no empty, '.' or '..'
/// parts, at most 500 bytes): a repository id or a file template inside a cache folder.
pub fn check_relative_path(field: &str, value: &str) -> Result<()> {
    let ok = value.len() <= 500
        && !value.starts_with('/')
        && !value.contains('\\')
        && !value.contains('\0')
        && value
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "Invalid {field} `{value}`: it must be a relative path without '..'"
        )))
    }
}

/// The refusal of a local path outside the roots: the same words whether or not anything
/// exists there, so that the answer tells nothing about the file system outside them.
fn outside(field: &str) -> Error {
    Error::forbidden(format!(
        "{field} is outside the folders this server may load models from \
         (the server's --model-roots)"
    ))
}

/// Checks that `path` (a launch's `model_path`, or a spec's `model_uri` without `file://`)
/// lies under one of `roots`: it must be absolute and hold no `..`; a path that is not under
/// a root, or that leaves the roots through a symbolic link, is a 403 that says the same in
/// every case. Nothing outside the roots is read to decide. With no roots, every local path
/// is refused.
pub fn confine_to_roots(field: &str, path: &str, roots: &[PathBuf]) -> Result<()> {
    let given = Path::new(path);
    if !given.is_absolute() || path.contains('\0') {
        return Err(Error::bad_request(format!(
            "{field} must be an absolute path"
        )));
    }
    if given.components().any(|c| c == Component::ParentDir) {
        return Err(outside(field));
    }
    if roots.is_empty() {
        return Err(Error::new(
            ErrorKind::Forbidden,
            format!(
                "{field} is disabled while auth is on: start the server with --model-roots DIR \
                 to name the folders models may be loaded from"
            ),
        ));
    }
    // Lexically first: only a path under a root is ever looked at on disk.
    let roots: Vec<PathBuf> = roots
        .iter()
        .map(|r| r.canonicalize().unwrap_or_else(|_| r.clone()))
        .collect();
    if !roots.iter().any(|r| given.starts_with(r)) {
        return Err(outside(field));
    }
    // Under a root: what it really is (its nearest existing ancestor, when it is missing)
    // must stay under a root, so that a symbolic link inside cannot lead out.
    let real = given
        .ancestors()
        .find_map(|a| a.canonicalize().ok())
        .unwrap_or_default();
    if roots.iter().any(|r| real.starts_with(r)) {
        Ok(())
    } else {
        Err(outside(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_and_relative_paths() {
        assert!(check_plain_name("f", "qwen2.5-7b_Q4").is_ok());
        for bad in ["", ".hidden", "a/b", "../x", "a b", &"x".repeat(201)] {
            assert!(check_plain_name("f", bad).is_err(), "{bad}");
        }
        assert!(check_relative_path("f", "org/repo").is_ok());
        for bad in ["/abs", "a/../b", "a//b", "a\\b", "./a"] {
            assert!(check_relative_path("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_paths_stay_under_the_roots_and_say_nothing_of_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("models");
        std::fs::create_dir_all(root.join("m")).unwrap();
        let roots = vec![root.clone()];
        let p = |p: &Path| p.to_str().unwrap().to_owned();
        assert!(confine_to_roots("model_path", &p(&root.join("m")), &roots).is_ok());
        // Missing inside a root: allowed here, the loader reports it.
        assert!(confine_to_roots("model_path", &p(&root.join("none")), &roots).is_ok());
        // Outside: the same 403 for a file that exists and one that does not.
        let existing = confine_to_roots("model_path", "/etc/passwd", &roots).unwrap_err();
        let missing = confine_to_roots("model_path", "/etc/no-such-file", &roots).unwrap_err();
        assert_eq!(existing, missing);
        assert_eq!(existing.kind(), ErrorKind::Forbidden);
        let dotdot = format!("{}/../../etc/passwd", p(&root));
        assert_eq!(
            confine_to_roots("model_path", &dotdot, &roots).unwrap_err(),
            existing
        );
        // A link inside a root that leads out of it.
        std::os::unix::fs::symlink("/etc", root.join("escape")).unwrap();
        for through in ["escape/passwd", "escape/no-such-file"] {
            assert_eq!(
                confine_to_roots("model_path", &p(&root.join(through)), &roots).unwrap_err(),
                existing
            );
        }
        assert_eq!(
            confine_to_roots("model_path", "relative/path", &roots)
                .unwrap_err()
                .kind(),
            ErrorKind::BadRequest
        );
        assert_eq!(
            confine_to_roots("model_path", &p(&root), &[])
                .unwrap_err()
                .kind(),
            ErrorKind::Forbidden
        );
    }
}
