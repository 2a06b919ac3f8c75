//! Loading: TOML file → environment overrides → typed [`Config`] → validation.
//!
//! Every error names where it came from (the file with line and column, or
//! the environment variable), the key, and the reason, and all problems found
//! by validation are reported at once.

use std::fmt;
use std::path::Path;

use super::Config;

/// Prefix of environment overrides: `IOC__SECTION__KEY`.
pub const ENV_PREFIX: &str = "IOC__";

/// One problem in a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Where: a file path (with `:line:column` when known) or `env IOC__...`.
    pub origin: String,
    /// The key, as a dotted path (`mqtt.port`, `camera[cam-01].village`).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.origin, self.key, self.reason)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("không đọc được tệp cấu hình {path} (cannot read config file): {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file (or the environment) holds invalid values.
    #[error("cấu hình không hợp lệ ({} lỗi):\n{}", .0.len(), .0.iter().map(|i| format!("  - {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigIssue>),
}

/// Load a config file, apply `IOC__*` overrides from the process
/// environment, and validate.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text, &path.display().to_string(), &env_overrides())
}

/// The `IOC__*` variables of the process environment.
pub(crate) fn env_overrides() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect()
}

/// Load from a TOML string named `origin`, with explicit overrides (pairs of
/// `IOC__A__B`, value). Used by [`load`] and by tests.
pub fn load_str(text: &str, origin: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
    // 1. The file alone, so errors carry line and column.
    let de = toml::Deserializer::parse(text).map_err(|e| {
        ConfigError::Invalid(vec![ConfigIssue {
            origin: with_position(origin, text, e.span()),
            key: String::new(),
            reason: e.message().to_string(),
        }])
    })?;
    let file_cfg: Result<Config, _> = serde_path_to_error::deserialize(de);
    let mut config = match file_cfg {
        Ok(c) => c,
        Err(e) => {
            let key = clean_path(&e.path().to_string());
            let inner = e.into_inner();
            return Err(ConfigError::Invalid(vec![ConfigIssue {
                origin: with_position(origin, text, inner.span()),
                key,
                reason: inner.message().to_string(),
            }]));
        }
    };

    // 2. Environment overrides on top of the file's values.
    if !env.is_empty() {
        config = apply_env(text, origin, env)?;
    }

    // 3. Semantic checks, all reported together, each placed in the file
    //    (line and column of its key) or at the variable that set it.
    let mut issues = match super::validate::validate(&config, origin) {
        Ok(mut site) => {
            site.commune = Some(config.commune.clone());
            site.villages = config.villages.iter().map(|v| v.id.clone()).collect();
            site.regime = config.report.regime;
            site.registry = super::Registry::from_config(&config);
            config.site = std::sync::Arc::new(site);
            return Ok(config);
        }
        Err(issues) => issues,
    };
    let positions = super::positions::Positions::new(text);
    for issue in &mut issues {
        let overridden = env.iter().find(|(name, _)| {
            name.strip_prefix(ENV_PREFIX)
                .is_some_and(|rest| rest.to_ascii_lowercase().replace("__", ".") == issue.key)
        });
        if let Some((name, _)) = overridden {
            issue.origin = format!("env {name}");
        } else if let Some(span) = positions.span(&issue.key) {
            issue.origin = with_position(origin, text, Some(span));
        }
    }
    Err(ConfigError::Invalid(issues))
}

fn apply_env(text: &str, origin: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut root: toml::Table = toml::from_str(text).map_err(|e: toml::de::Error| {
        ConfigError::Invalid(vec![ConfigIssue {
            origin: origin.to_string(),
            key: String::new(),
            reason: e.message().to_string(),
        }])
    })?;
    let mut issues = Vec::new();
    // path (dotted) → env var name, to attribute errors
    let mut sources: Vec<(String, String, String)> = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        if parts.iter().any(String::is_empty) {
            issues.push(ConfigIssue {
                origin: format!("env {name}"),
                key: rest.to_ascii_lowercase(),
                reason: "tên biến sai dạng: dùng IOC__MUC__KHOA, ví dụ IOC__MQTT__PORT".into(),
            });
            continue;
        }
        if let Err(reason) = set_path(&mut root, &parts, guess_value(value)) {
            issues.push(ConfigIssue {
                origin: format!("env {name}"),
                key: parts.join("."),
                reason,
            });
            continue;
        }
        sources.push((parts.join("."), name.clone(), value.clone()));
    }
    if !issues.is_empty() {
        return Err(ConfigError::Invalid(issues));
    }
    // Values such as a numeric password are first guessed as numbers; when
    // the target wants a string, retry with the string.
    for _ in 0..=sources.len() {
        let value = toml::Value::Table(root.clone());
        match serde_path_to_error::deserialize::<_, Config>(value) {
            Ok(c) => return Ok(c),
            Err(e) => {
                let key = clean_path(&e.path().to_string());
                let inner = e.into_inner();
                let wants_string = inner
                    .message()
                    .split("expected")
                    .nth(1)
                    .is_some_and(|t| t.contains("string"));
                if let Some((_, _, raw)) =
                    sources.iter().find(|(p, _, _)| *p == key && wants_string)
                {
                    let parts: Vec<String> = key.split('.').map(str::to_owned).collect();
                    let current = get_path(&root, &parts);
                    if !matches!(current, Some(toml::Value::String(_))) {
                        let _ = set_path(&mut root, &parts, toml::Value::String(raw.clone()));
                        continue;
                    }
                }
                let origin = sources
                    .iter()
                    .find(|(p, _, _)| *p == key)
                    .map(|(_, n, _)| format!("env {n}"))
                    .unwrap_or_else(|| origin.to_string());
                return Err(ConfigError::Invalid(vec![ConfigIssue {
                    origin,
                    key,
                    reason: inner.message().to_string(),
                }]));
            }
        }
    }
    Err(ConfigError::Invalid(vec![ConfigIssue {
        origin: "env".into(),
        key: String::new(),
        reason: "không áp dụng được các biến môi trường".into(),
    }]))
}

fn guess_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(f) = raw.parse::<f64>() {
        if f.is_finite() {
            return toml::Value::Float(f);
        }
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_string()),
    }
}

fn set_path(root: &mut toml::Table, parts: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = parts.split_last().ok_or_else(|| "empty key".to_string())?;
    let mut table = root;
    for p in parents {
        let entry = table
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(format!(
                    "`{p}` không phải một mục nên không chứa khóa con được"
                ))
            }
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

fn get_path<'a>(root: &'a toml::Table, parts: &[String]) -> Option<&'a toml::Value> {
    let (last, parents) = parts.split_last()?;
    let mut table = root;
    for p in parents {
        table = table.get(p)?.as_table()?;
    }
    table.get(last)
}

fn clean_path(p: &str) -> String {
    if p == "." {
        String::new()
    } else {
        p.to_string()
    }
}

fn with_position(origin: &str, text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let upto = &text[..span.start.min(text.len())];
            let line = upto.matches('\n').count() + 1;
            let col = upto
                .rsplit('\n')
                .next()
                .map(|l| l.chars().count())
                .unwrap_or(0)
                + 1;
            format!("{origin}:{line}:{col}")
        }
        None => origin.to_string(),
    }
}
