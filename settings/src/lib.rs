//! Layered configuration: `config/default.toml`, then `config/{REELQ_ENV}.toml`, then
//! `REELQ__SECTION__KEY` environment variables. Every field has a default that works against
//! local services, so a bare `cargo run` starts.
//!
//! Each binary defines its own `Settings` from the sections it reads and loads it with [`load`].
//! The sections of the services' infrastructure live in `reelq-shared`; the analysis sections in
//! `reelq-analysis`.

use std::path::PathBuf;

use serde::de::DeserializeOwned;

/// A configuration that cannot be used, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file or variable could not be read or had the wrong type for its key.
    #[error("configuration could not be loaded: {0}")]
    Load(#[from] ::config::ConfigError),
    /// A value was read but is not acceptable.
    #[error("configuration key `{key}` is invalid: {message}")]
    Invalid {
        /// Dotted key, as in the files (`worker.concurrency`).
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// Shorthand for an [`ConfigError::Invalid`] error.
    pub fn invalid(key: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { key, message: message.into() }
    }
}

/// Settings that can check themselves after loading.
pub trait Validate {
    /// Returns the first unacceptable value, naming its key.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Keys whose environment values are comma-separated lists.
const LIST_KEYS: &[&str] = &["amqp.retry_delays_ms"];

/// Loads settings of type `T` from the config directory and the environment.
///
/// The directory is `REELQ_CONFIG_DIR` (default `config`), the environment name `REELQ_ENV`
/// (default `local`). Missing files are skipped, so the built-in defaults apply.
pub fn load<T: DeserializeOwned + Validate>() -> Result<T, ConfigError> {
    let dir = std::env::var("REELQ_CONFIG_DIR").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("config"));
    let env_name = std::env::var("REELQ_ENV").unwrap_or_else(|_| "local".to_owned());
    load_from(&dir, &env_name, ::config::Environment::with_prefix("REELQ"))
}

/// Loads settings from an explicit directory, environment name and variable source.
pub fn load_from<T: DeserializeOwned + Validate>(dir: &std::path::Path, env_name: &str, environment: ::config::Environment) -> Result<T, ConfigError> {
    let mut env = environment.prefix_separator("__").separator("__").try_parsing(true).list_separator(",");
    for key in LIST_KEYS {
        env = env.with_list_parse_key(key);
    }
    let settings: T = ::config::Config::builder()
        .add_source(::config::File::from(dir.join("default.toml")).required(false))
        .add_source(::config::File::from(dir.join(format!("{env_name}.toml"))).required(false))
        .add_source(env)
        .build()?
        .try_deserialize()?;
    settings.validate()?;
    Ok(settings)
}
