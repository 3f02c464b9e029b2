//! The model registry: built-in families compiled into the library plus custom families that
//! users register (optionally persisted under `$XINFERENCE_HOME/model/v2/<type>/<name>.json`,
//! where Xinference 4.x keeps them).

mod engines;
mod model_type;
pub mod paths;
mod spec;

pub use engines::{engine_options, resolve_engine, support, EngineOptions, Support};
pub use model_type::ModelType;
pub use paths::{check_plain_name, confine_to_roots};
pub use spec::{normalise_size, ModelFamily, ModelSpec, HUGGINGFACE};

use crate::{Error, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock};

const BUILTIN_LLM: &str = include_str!("data/llm.json");
const BUILTIN_EMBEDDING: &str = include_str!("data/embedding.json");
const BUILTIN_RERANK: &str = include_str!("data/rerank.json");
const BUILTIN_IMAGE: &str = include_str!("data/image.json");
const BUILTIN_AUDIO: &str = include_str!("data/audio.json");

/// The built-in families of one type, parsed once.
pub fn builtin_families(model_type: ModelType) -> &'static [ModelFamily] {
    static PARSED: OnceLock<BTreeMap<ModelType, Vec<ModelFamily>>> = OnceLock::new();
    let all = PARSED.get_or_init(|| {
        let mut map = BTreeMap::new();
        for (t, text) in [
            (ModelType::Llm, BUILTIN_LLM),
            (ModelType::Embedding, BUILTIN_EMBEDDING),
            (ModelType::Rerank, BUILTIN_RERANK),
            (ModelType::Image, BUILTIN_IMAGE),
            (ModelType::Audio, BUILTIN_AUDIO),
        ] {
            let items: Vec<Value> = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("built-in {t} registry is not valid JSON: {e}"));
            let families = items
                .into_iter()
                .map(|j| {
                    ModelFamily::from_json(t, j, true)
                        .unwrap_or_else(|e| panic!("built-in {t} spec is invalid: {e}"))
                })
                .collect();
            map.insert(t, families);
        }
        map
    });
    all.get(&model_type).map(Vec::as_slice).unwrap_or(&[])
}

/// Built-in plus custom model families. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Registry {
    /// Where persisted custom registrations live (`$XINFERENCE_HOME/model`); `None` keeps them in memory only.
    store: Option<PathBuf>,
    custom: RwLock<BTreeMap<(ModelType, String), ModelFamily>>,
}

/// One row of `list_model_registrations`: a name and whether it ships with the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationSummary {
    /// The family name.
    pub model_name: String,
    /// Built-in (true) or custom (false).
    pub is_builtin: bool,
}

impl Registry {
    /// A registry that persists custom models where Xinference 4.x does,
    /// `<home>/model/v2/<type>/<name>.json` (`<type>` lower case: `llm`, `embedding`, ...), and
    /// loads the ones already there, so registrations written by Xinference itself carry over.
    /// Files of this crate's first layout (`<home>/model/<type>/`) that parse are moved there
    /// first. Files that do not parse are skipped with a warning (never deleted).
    pub fn open(home: &Path) -> Result<Self> {
        let store = home.join("model");
        let registry = Registry {
            store: Some(store.clone()),
            custom: RwLock::new(BTreeMap::new()),
        };
        for t in ModelType::ALL {
            migrate_legacy_files(t, &store.join(t.as_str()), &custom_dir(&store, t));
            for path in json_files(&custom_dir(&store, t)) {
                match load_custom_file(t, &path) {
                    Ok(family) => {
                        registry
                            .custom
                            .write()
                            .expect("registry lock")
                            .insert((t, family.name.clone()), family);
                    }
                    Err(e) => tracing::warn!("skipping custom model {}: {e}", path.display()),
                }
            }
        }
        Ok(registry)
    }

    /// A registry whose custom registrations live in memory only.
    pub fn in_memory() -> Self {
        Registry {
            store: None,
            custom: RwLock::new(BTreeMap::new()),
        }
    }

    /// Finds a family by type and name (built-ins first; custom names cannot shadow them).
    pub fn find(&self, model_type: ModelType, name: &str) -> Option<ModelFamily> {
        builtin_families(model_type)
            .iter()
            .find(|f| f.name == name)
            .cloned()
            .or_else(|| {
                self.custom
                    .read()
                    .expect("registry lock")
                    .get(&(model_type, name.to_owned()))
                    .cloned()
            })
    }

    /// Finds a family by name in any type, in Xinference's type order.
    pub fn find_any(&self, name: &str) -> Option<ModelFamily> {
        ModelType::ALL.iter().find_map(|t| self.find(*t, name))
    }

    /// A family by type and name, or Xinference's 400 "Model X not found".
    pub fn get(&self, model_type: ModelType, name: &str) -> Result<ModelFamily> {
        self.find(model_type, name)
            .ok_or_else(|| Error::bad_request(format!("Model {name} not found")))
    }

    /// What can run a model (of `model_type`, or of any type): `{engine: [params]}` or
    /// `{engine: "why not"}`; an unknown name is a 400.
    pub fn engines(&self, name: &str, model_type: Option<ModelType>) -> Result<EngineOptions> {
        let family = match model_type {
            Some(t) => self.find(t, name),
            None => self.find_any(name),
        };
        family
            .map(|f| engine_options(&f))
            .ok_or_else(|| Error::bad_request(format!("Model {name} not found")))
    }

    /// Every family of a type, built-ins and custom, sorted case-insensitively by name.
    pub fn families(&self, model_type: ModelType) -> Vec<ModelFamily> {
        let mut all: Vec<ModelFamily> = builtin_families(model_type).to_vec();
        all.extend(
            self.custom
                .read()
                .expect("registry lock")
                .iter()
                .filter(|((t, _), _)| *t == model_type)
                .map(|(_, f)| f.clone()),
        );
        all.sort_by_key(|f| f.name.to_lowercase());
        all
    }

    /// Names of every family of a type, as `GET /v1/model_registrations/{type}` lists them.
    pub fn list(&self, model_type: ModelType) -> Vec<RegistrationSummary> {
        self.families(model_type)
            .into_iter()
            .map(|f| RegistrationSummary {
                model_name: f.name,
                is_builtin: f.is_builtin,
            })
            .collect()
    }

    /// Validates and adds a custom family. With `persist`, it is also written to disk so that
    /// it survives a restart. A name that is already taken (built-in or custom) is a 400.
    pub fn register(
        &self,
        model_type: ModelType,
        json: &str,
        persist: bool,
    ) -> Result<ModelFamily> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| Error::bad_request(format!("Invalid model JSON: {e}")))?;
        let family = ModelFamily::from_json(model_type, value, false)?;
        if model_type == ModelType::Llm {
            validate_custom_llm(&family)?;
        }
        let key = (model_type, family.name.clone());
        if builtin_families(model_type)
            .iter()
            .any(|f| f.name == family.name)
        {
            return Err(Error::bad_request(format!(
                "Model name conflicts with existing model {}",
                family.name
            )));
        }
        let mut custom = self.custom.write().expect("registry lock");
        if custom.contains_key(&key) {
            return Err(Error::bad_request(format!(
                "Model name conflicts with existing model {}",
                family.name
            )));
        }
        if persist {
            let store = self.store.as_ref().ok_or_else(|| {
                Error::bad_request("this registry has no home directory to persist into")
            })?;
            let dir = custom_dir(store, model_type);
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(format!("{}.json", family.name));
            let text = serde_json::to_string_pretty(&family.json)
                .map_err(|e| Error::internal(format!("cannot serialise the model spec: {e}")))?;
            write_atomically(&path, text.as_bytes())?;
        }
        custom.insert(key, family.clone());
        Ok(family)
    }

    /// Removes a custom family (and its persisted file). Built-ins cannot be removed (400);
    /// an unknown name is a 400 as in Xinference.
    pub fn unregister(&self, model_type: ModelType, name: &str) -> Result<()> {
        if builtin_families(model_type).iter().any(|f| f.name == name) {
            return Err(Error::bad_request(format!(
                "Model {name} is a built-in model and cannot be unregistered"
            )));
        }
        let mut custom = self.custom.write().expect("registry lock");
        if custom.remove(&(model_type, name.to_owned())).is_none() {
            return Err(Error::bad_request(format!(
                "Custom model {name} of type {model_type} not found"
            )));
        }
        if let Some(store) = &self.store {
            let path = custom_dir(store, model_type).join(format!("{name}.json"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn validate_custom_llm(family: &ModelFamily) -> Result<()> {
    let Some(base) = family.model_family.as_deref() else {
        return Err(Error::bad_request(format!(
            "Invalid LLM model spec `{}`: model_family field required (the name of a built-in LLM family whose chat format it uses)",
            family.name
        )));
    };
    let Some(builtin) = builtin_families(ModelType::Llm)
        .iter()
        .find(|f| f.name == base)
    else {
        return Err(Error::bad_request(format!(
            "Invalid LLM model spec `{}`: model_family `{base}` is not a built-in LLM family",
            family.name
        )));
    };
    for ability in ["tools", "vision"] {
        if family.has_ability(ability) && !builtin.has_ability(ability) {
            return Err(Error::bad_request(format!(
                "Invalid LLM model spec `{}`: model_family `{base}` does not support the `{ability}` ability",
                family.name
            )));
        }
    }
    Ok(())
}

/// Where Xinference 4.x keeps the persisted custom families of a type.
fn custom_dir(store: &Path, model_type: ModelType) -> PathBuf {
    store
        .join("v2")
        .join(model_type.as_str().to_ascii_lowercase())
}

/// The `.json` files of a folder, sorted (none when it does not exist).
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
}

/// Moves the registrations of this crate's first layout (`<home>/model/<type>/`) to
/// Xinference's v2 folder. Only files that parse as a family move, and none replaces a file
/// already there: the same folder names hold Xinference 0.x's v1 files, which stay where they
/// are.
fn migrate_legacy_files(model_type: ModelType, legacy: &Path, v2: &Path) {
    for path in json_files(legacy) {
        let (Some(name), Ok(_)) = (path.file_name(), load_custom_file(model_type, &path)) else {
            continue;
        };
        let target = v2.join(name);
        if target.exists() {
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(v2).and_then(|()| std::fs::rename(&path, &target)) {
            tracing::warn!(
                "cannot move {} to {}: {e}",
                path.display(),
                target.display()
            );
        }
    }
}

fn load_custom_file(model_type: ModelType, path: &Path) -> Result<ModelFamily> {
    let text = std::fs::read_to_string(path)?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::bad_request(format!("invalid JSON: {e}")))?;
    ModelFamily::from_json(model_type, value, false)
}

/// Writes a file so that readers see either the old or the new content, never half of it.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
