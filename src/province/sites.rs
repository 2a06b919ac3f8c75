//! Loading a province: the process config (`PROCESS.toml`: `[province]`,
//! `[stream]` and the usual process sections) and one site config per
//! commune in a directory (docs/PROVINCE.md §6).
//!
//! A site file holds the site sections of a commune's own config
//! (`[commune]`, villages, devices, indicators, `[report]`, ...). Each is
//! loaded on its own first (so its errors carry its own line numbers), then
//! on top of the process sections, with its store under
//! `{store.path}/sites/{commune}`. A site that does not load is kept with
//! its error (shown on the screen and at `/readyz`); the others run.

use std::path::{Path, PathBuf};

use crate::config::{load_str, Config, ConfigError, ProvinceDef};

/// Sections a site file may hold (the rest belong to the process file).
pub const SITE_SECTIONS: &[&str] = &[
    "commune",
    "village",
    "camera",
    "speaker",
    "sensor",
    "procedure",
    "indicator",
    "mapped",
    "report",
    "devices",
    "warnings",
    "alerts",
    "broadcasts",
];

/// Sections of the process file that no site inherits.
const PROCESS_ONLY: &[&str] = &["province", "stream", "uplink", "influx", "commune"];

/// Why a province cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The process file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `[province]` is missing from the process file.
    #[error("{0}: thiếu mục [province] (id, name) — cần cho chế độ tỉnh (serve --sites)")]
    NoProvince(String),
    /// `[stream] url` is missing.
    #[error("{0}: thiếu [stream] url (địa chỉ cụm NATS nhận nhật ký của các xã)")]
    NoStream(String),
    /// The sites directory cannot be read.
    #[error("không đọc được thư mục cấu hình các xã {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One site file, loaded or not.
#[derive(Debug, Clone)]
pub struct SiteFile {
    /// The file.
    pub path: PathBuf,
    /// The commune id (from the file's `[commune] id`, else its name).
    pub id: String,
    /// Its config, or why it did not load (Vietnamese, with file and line).
    pub config: Result<Config, String>,
}

/// A loaded province.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The process config (its `[commune]` is the province itself).
    pub process: Config,
    /// `[province]`.
    pub province: ProvinceDef,
    /// Every site file, sorted by commune id.
    pub sites: Vec<SiteFile>,
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Load the process file (with `IOC__*` overrides from `env`) and every
/// `*.toml` in `dir`.
pub fn load(process: &Path, dir: &Path, env: &[(String, String)]) -> Result<Layout, LoadError> {
    let origin = process.display().to_string();
    let text = read(process)?;
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError::Invalid(vec![crate::config::ConfigIssue {
            origin: origin.clone(),
            key: String::new(),
            reason: e.message().to_string(),
        }])
    })?;
    if !table.contains_key("province") {
        return Err(LoadError::NoProvince(origin));
    }
    // The process file's own `[commune]` is the province (client ids,
    // logs): made from `[province]` when absent.
    if !table.contains_key("commune") {
        if let Some(p) = table.get("province").and_then(|v| v.as_table()) {
            let mut c = toml::Table::new();
            for k in ["id", "name"] {
                if let Some(v) = p.get(k) {
                    c.insert(k.into(), v.clone());
                }
            }
            if let Some(n) = p.get("name") {
                c.insert("province".into(), n.clone());
            }
            table.insert("commune".into(), toml::Value::Table(c));
        }
    }
    let process_text = toml::to_string(&table).unwrap_or_default();
    let config = load_str(&process_text, &origin, env)?;
    let province = config
        .province
        .clone()
        .ok_or_else(|| LoadError::NoProvince(origin.clone()))?;
    if config.stream.url.as_deref().unwrap_or("").trim().is_empty() {
        return Err(LoadError::NoStream(origin));
    }
    // What every site inherits: the process file after its overrides.
    let mut inherited: toml::Table = toml::Value::try_from(&config)
        .ok()
        .and_then(|v| v.as_table().cloned())
        .unwrap_or_default();
    for k in PROCESS_ONLY {
        inherited.remove(*k);
    }
    for k in SITE_SECTIONS {
        inherited.remove(*k);
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| LoadError::Dir {
            path: dir.display().to_string(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut sites: Vec<SiteFile> = paths
        .into_iter()
        .map(|p| load_site(&p, &inherited, &config.store.path))
        .collect();
    sites.sort_by(|a, b| a.id.cmp(&b.id));
    // Two files for one commune: the second is refused (their entries
    // would be counted twice).
    for i in 1..sites.len() {
        if sites[i].id == sites[i - 1].id && sites[i].config.is_ok() {
            let first = sites[i - 1].path.display().to_string();
            sites[i].config = Err(format!(
                "{}: xã `{}` đã có tệp cấu hình {first}",
                sites[i].path.display(),
                sites[i].id
            ));
        }
    }
    Ok(Layout {
        process: config,
        province,
        sites,
    })
}

fn load_site(path: &Path, inherited: &toml::Table, store_root: &Path) -> SiteFile {
    let origin = path.display().to_string();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |id: String, e: String| SiteFile {
        path: path.to_owned(),
        id,
        config: Err(e),
    };
    let text = match read(path) {
        Ok(t) => t,
        Err(e) => return fail(stem, e.to_string()),
    };
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            // The site alone, for the error's line and column.
            let msg = load_str(&text, &origin, &[])
                .err()
                .map_or_else(|| format!("{origin}: {e}"), |e| e.to_string());
            return fail(stem, msg);
        }
    };
    let id = table
        .get("commune")
        .and_then(|c| c.get("id"))
        .and_then(|v| v.as_str())
        .map_or(stem.clone(), str::to_owned);
    if let Some(k) = table.keys().find(|k| !SITE_SECTIONS.contains(&k.as_str())) {
        return fail(
            id,
            format!(
                "{origin}: mục `{k}` thuộc cấu hình tiến trình (PROCESS.toml), không đặt trong tệp của xã; tệp xã chỉ gồm: {}",
                SITE_SECTIONS.join(", ")
            ),
        );
    }
    if let Err(e) = load_str(&text, &origin, &[]) {
        return fail(id, e.to_string());
    }
    let mut merged = inherited.clone();
    for (k, v) in table {
        merged.insert(k, v);
    }
    let mut store = merged
        .get("store")
        .and_then(|v| v.as_table())
        .cloned()
        .unwrap_or_default();
    store.insert(
        "path".into(),
        toml::Value::String(
            store_root
                .join("sites")
                .join(&id)
                .to_string_lossy()
                .into_owned(),
        ),
    );
    merged.insert("store".into(), toml::Value::Table(store));
    // A province copy never connects to a broker of its own.
    merged.remove("mqtt");
    let merged_text = toml::to_string(&merged).unwrap_or_default();
    match load_str(&merged_text, &origin, &[]) {
        Ok(c) => SiteFile {
            path: path.to_owned(),
            id,
            config: Ok(c),
        },
        Err(e) => fail(id, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROCESS: &str =
        "[province]\nid = \"lai-chau\"\nname = \"Tỉnh Lai Châu\"\ninstance = \"a\"\n\
        [stream]\nurl = \"nats://127.0.0.1:4222\"\n[store]\npath = \"STORE\"\n";

    fn site(id: &str) -> String {
        format!(
            "[commune]\nid = \"{id}\"\nname = \"Xã {id}\"\nprovince = \"Lai Châu\"\n\
             [[village]]\nid = \"a\"\nname = \"Bản A\"\nlat = 22.4\nlon = 103.2\n"
        )
    }

    #[test]
    fn each_site_gets_its_own_store_and_a_broken_one_is_kept_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let process = dir.path().join("process.toml");
        std::fs::write(
            &process,
            PROCESS.replace("STORE", &store.display().to_string()),
        )
        .unwrap();
        let sites = dir.path().join("sites");
        std::fs::create_dir(&sites).unwrap();
        std::fs::write(sites.join("xa-b.toml"), site("xa-b")).unwrap();
        std::fs::write(sites.join("xa-a.toml"), site("xa-a")).unwrap();
        std::fs::write(
            sites.join("xa-c.toml"),
            site("xa-c") + "[[camera]]\nid = \"c1\"\nname = \"C\"\nvillage = \"khong-co\"\n",
        )
        .unwrap();
        std::fs::write(
            sites.join("xa-d.toml"),
            site("xa-d") + "[http]\nlisten = \"x\"\n",
        )
        .unwrap();
        std::fs::write(sites.join("notes.txt"), "not a site").unwrap();
        let layout = load(&process, &sites, &[]).unwrap();
        assert_eq!(layout.province.name, "Tỉnh Lai Châu");
        let ids: Vec<&str> = layout.sites.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["xa-a", "xa-b", "xa-c", "xa-d"]);
        let a = layout.sites[0].config.as_ref().unwrap();
        assert_eq!(a.commune.name, "Xã xa-a");
        assert_eq!(a.store.path, store.join("sites").join("xa-a"));
        let c = layout.sites[2].config.as_ref().unwrap_err();
        assert!(c.contains("xa-c.toml") && c.contains("khong-co"), "{c}");
        let d = layout.sites[3].config.as_ref().unwrap_err();
        assert!(d.contains("`http`"), "{d}");
    }

    #[test]
    fn a_process_file_without_province_or_stream_is_refused_in_words() {
        let dir = tempfile::tempdir().unwrap();
        let process = dir.path().join("p.toml");
        std::fs::write(&process, "[stream]\nurl = \"nats://127.0.0.1:4222\"\n").unwrap();
        let e = load(&process, dir.path(), &[]).unwrap_err().to_string();
        assert!(e.contains("[province]"), "{e}");
        std::fs::write(&process, "[province]\nid = \"p\"\nname = \"Tỉnh P\"\n").unwrap();
        let e = load(&process, dir.path(), &[]).unwrap_err().to_string();
        assert!(e.contains("[stream] url"), "{e}");
    }
}
