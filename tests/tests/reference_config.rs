//! Keeps `config/reference.toml` true: it loads as a configuration equal to the built-in
//! defaults, names every key of the api and worker settings under its section, and documents
//! each key with its `REELQ__SECTION__KEY` variable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use secrecy::ExposeSecret;

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/reference.toml");

#[test]
fn reference_config_names_every_key_with_its_default_and_variable() {
    let text = std::fs::read_to_string(REFERENCE).expect("config/reference.toml is readable");
    let reference = parse_reference(&text);

    // 1. The file is a valid configuration for both binaries, equal to the built-in defaults.
    let dir = tempfile::tempdir().expect("create a temporary folder");
    std::fs::write(dir.path().join("default.toml"), &text).expect("copy the reference file");

    let api: reelq_api::Settings = load(dir.path());
    let api_default = reelq_api::Settings::default();
    assert_eq!(format!("{api:?}"), format!("{api_default:?}"), "reference values differ from the api defaults");
    assert_secrets_equal(&api.common(), &api_default.common());
    assert!(api.api.dev_api_key.is_none(), "api.dev_api_key must stay commented out");
    assert!(api.api.metrics_token.is_none(), "api.metrics_token must stay commented out");

    let worker: reelq_worker::Settings = load(dir.path());
    let worker_default = reelq_worker::Settings::default();
    assert_eq!(format!("{worker:?}"), format!("{worker_default:?}"), "reference values differ from the worker defaults");
    assert!(worker.worker.scratch_dir.is_none(), "worker.scratch_dir must stay commented out");

    // 2. Every field of every section appears as `key =` (or `# key =`) under its section, and
    //    the file names no key the settings do not have.
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for debug in [format!("{api_default:?}"), format!("{worker_default:?}")] {
        for (section, key) in debug_keys(&debug) {
            expected.entry(section).or_default().insert(key);
        }
    }
    assert!(expected.len() >= 8, "expected at least 8 sections in the settings, found {expected:?}");
    for (section, keys) in &expected {
        let documented: BTreeSet<String> = reference.iter().filter(|e| &e.section == section).map(|e| e.key.clone()).collect();
        let missing: Vec<_> = keys.difference(&documented).collect();
        assert!(missing.is_empty(), "config/reference.toml lacks [{section}] keys {missing:?}");
        let unknown: Vec<_> = documented.difference(keys).collect();
        assert!(unknown.is_empty(), "config/reference.toml names unknown [{section}] keys {unknown:?}");
    }

    // 3. Each key's comment names its own variable, and no other one.
    for entry in &reference {
        let variable = format!("REELQ__{}__{}", entry.section.to_uppercase(), entry.key.to_uppercase());
        let named: Vec<&str> = entry.comment.iter().flat_map(|line| variables_in(line)).collect();
        assert!(named.contains(&variable.as_str()), "{}.{} (line {}) is not documented with {variable}", entry.section, entry.key, entry.line);
        assert!(
            named.iter().all(|v| *v == variable),
            "{}.{} (line {}) names variables {named:?}; only {variable} belongs there",
            entry.section,
            entry.key,
            entry.line
        );
    }
}

fn load<T: serde::de::DeserializeOwned + reelq_shared::config::Validate>(dir: &Path) -> T {
    let environment = ::config::Environment::with_prefix("REELQ").source(Some(HashMap::new()));
    reelq_shared::config::load_from(dir, "none", environment).unwrap_or_else(|e| panic!("config/reference.toml does not load: {e}"))
}

/// The secrets are redacted in `Debug`, so their values are compared here.
fn assert_secrets_equal(loaded: &reelq_shared::config::CommonSettings, default: &reelq_shared::config::CommonSettings) {
    let pairs = [
        ("database.url", &loaded.database.url, &default.database.url),
        ("amqp.url", &loaded.amqp.url, &default.amqp.url),
        ("storage.secret_key", &loaded.storage.secret_key, &default.storage.secret_key),
        ("webhooks.signing_secret", &loaded.webhooks.signing_secret, &default.webhooks.signing_secret),
    ];
    for (key, loaded, default) in pairs {
        assert_eq!(loaded.expose_secret(), default.expose_secret(), "{key} differs from its default");
    }
}

/// One `key = value` or `# key = value` line of the reference file.
#[derive(Debug)]
struct Entry {
    section: String,
    key: String,
    line: usize,
    /// The comment lines directly above the key.
    comment: Vec<String>,
}

fn parse_reference(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut section: Option<String> = None;
    let mut comment: Vec<String> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            comment.clear();
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_owned());
            comment.clear();
        } else if let Some(key) = key_of(line.strip_prefix('#').map(str::trim_start).unwrap_or(line)) {
            let Some(section) = section.clone() else {
                comment.push(line.to_owned());
                continue;
            };
            entries.push(Entry { section, key, line: index + 1, comment: std::mem::take(&mut comment) });
        } else if line.starts_with('#') {
            comment.push(line.to_owned());
        } else {
            panic!("config/reference.toml line {}: unexpected `{line}`", index + 1);
        }
    }
    entries
}

/// The key of a `key = value` line.
fn key_of(line: &str) -> Option<String> {
    let (key, _) = line.split_once(" = ")?;
    (!key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).then(|| key.to_owned())
}

/// `REELQ__…` words of a line.
fn variables_in(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("REELQ__"))
}

/// `(section, key)` pairs of a settings value's `Debug` output: the field names one level
/// inside a section struct, which is itself one level inside the settings struct. Quoted
/// strings are skipped.
fn debug_keys(debug: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut depth = 0usize;
    let mut section = String::new();
    let mut chars = debug.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut end = start + c.len_utf8();
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        end = i + c.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                if !debug[end..].starts_with(": ") {
                    continue;
                }
                let name = &debug[start..end];
                match depth {
                    1 => section = name.to_owned(),
                    2 => pairs.push((section.clone(), name.to_owned())),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    pairs
}
