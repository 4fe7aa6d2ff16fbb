//! The `[scheduler]` section: the health server, the TikTok Research API, trend scoring, and
//! the schedules themselves (`[scheduler.schedules.<name>]`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use secrecy::SecretString;
use serde::Deserialize;

use reelq_shared::config::ConfigError;

/// The `[scheduler]` section. Its keys are flat (`tiktok_…`, `trends_…`) so that each one has
/// a plain `REELQ__SCHEDULER__KEY` variable; only the schedules are nested tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Address of the health and metrics server; port 0 picks one.
    pub health_bind: String,
    /// How often cron slots and pending runs are looked for.
    pub poll_interval_ms: u64,
    /// Base URL of the TikTok Research API; the stub (`reelq-scheduler tiktok-stub`) in
    /// development.
    pub tiktok_base_url: String,
    /// Client key of the research app (`REELQ__SCHEDULER__TIKTOK_CLIENT_KEY`).
    pub tiktok_client_key: SecretString,
    /// Client secret of the research app (`REELQ__SCHEDULER__TIKTOK_CLIENT_SECRET`).
    pub tiktok_client_secret: SecretString,
    /// Requests allowed per UTC day, shared by every schedule and replica.
    pub tiktok_daily_request_limit: u32,
    /// Records (videos) allowed per UTC day.
    pub tiktok_daily_record_limit: u32,
    /// Videos asked for per request (the API allows at most 100).
    pub tiktok_max_count: u32,
    /// Timeout of one HTTP call to the API.
    pub tiktok_request_timeout_ms: u64,
    /// Rate-limited (HTTP 429) answers tolerated in a row before the run fails.
    pub tiktok_max_rate_limit_retries: u32,
    /// First back-off after a 429, doubled each time.
    pub tiktok_backoff_base_ms: u64,
    /// Times a window's search is restarted after its `search_id` expired, before the run fails.
    pub tiktok_max_search_restarts: u32,
    /// Length of the recent trend window (and of the previous one it is compared with), ending
    /// at the newest pulled video.
    pub trends_window_hours: u64,
    /// Additive smoothing of the shares in the trend score.
    pub trends_smoothing: f64,
    /// Least videos a tag needs in the recent window to trend.
    pub trends_min_support: i64,
    /// Trending tags kept per region.
    pub trends_per_region_limit: usize,
    /// The newest pulled videos that wider tags are learned from.
    pub links_posts: i64,
    /// Least videos a tag and its wider tag must share.
    pub links_min_together: i64,
    /// Least share of a tag's videos that must carry its wider tag.
    pub links_min_share: f64,
    /// Most wider tags kept per tag.
    pub links_per_tag: i64,
    /// The schedules, by name (`[scheduler.schedules.<name>]`).
    pub schedules: BTreeMap<String, ScheduleSettings>,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        let t = TikTokSettings::default();
        let tr = TrendSettings::default();
        Self {
            health_bind: "127.0.0.1:8082".to_owned(),
            poll_interval_ms: 1_000,
            tiktok_base_url: t.base_url,
            tiktok_client_key: t.client_key,
            tiktok_client_secret: t.client_secret,
            tiktok_daily_request_limit: t.daily_request_limit,
            tiktok_daily_record_limit: t.daily_record_limit,
            tiktok_max_count: t.max_count,
            tiktok_request_timeout_ms: t.request_timeout_ms,
            tiktok_max_rate_limit_retries: t.max_rate_limit_retries,
            tiktok_backoff_base_ms: t.backoff_base_ms,
            tiktok_max_search_restarts: t.max_search_restarts,
            trends_window_hours: tr.window_hours,
            trends_smoothing: tr.smoothing,
            trends_min_support: tr.min_support,
            trends_per_region_limit: tr.per_region_limit,
            links_posts: tr.links.posts,
            links_min_together: tr.links.min_together,
            links_min_share: tr.links.min_share,
            links_per_tag: tr.links.per_tag,
            schedules: BTreeMap::new(),
        }
    }
}

impl SchedulerSettings {
    /// The TikTok keys, together.
    pub fn tiktok(&self) -> TikTokSettings {
        TikTokSettings {
            base_url: self.tiktok_base_url.clone(),
            client_key: self.tiktok_client_key.clone(),
            client_secret: self.tiktok_client_secret.clone(),
            daily_request_limit: self.tiktok_daily_request_limit,
            daily_record_limit: self.tiktok_daily_record_limit,
            max_count: self.tiktok_max_count,
            request_timeout_ms: self.tiktok_request_timeout_ms,
            max_rate_limit_retries: self.tiktok_max_rate_limit_retries,
            backoff_base_ms: self.tiktok_backoff_base_ms,
            max_search_restarts: self.tiktok_max_search_restarts,
        }
    }

    /// Replaces the TikTok keys.
    pub fn set_tiktok(&mut self, t: TikTokSettings) {
        self.tiktok_base_url = t.base_url;
        self.tiktok_client_key = t.client_key;
        self.tiktok_client_secret = t.client_secret;
        self.tiktok_daily_request_limit = t.daily_request_limit;
        self.tiktok_daily_record_limit = t.daily_record_limit;
        self.tiktok_max_count = t.max_count;
        self.tiktok_request_timeout_ms = t.request_timeout_ms;
        self.tiktok_max_rate_limit_retries = t.max_rate_limit_retries;
        self.tiktok_backoff_base_ms = t.backoff_base_ms;
        self.tiktok_max_search_restarts = t.max_search_restarts;
    }

    /// The trend keys, together.
    pub fn trends(&self) -> TrendSettings {
        TrendSettings {
            window_hours: self.trends_window_hours,
            smoothing: self.trends_smoothing,
            min_support: self.trends_min_support,
            per_region_limit: self.trends_per_region_limit,
            links: LinkSettings {
                posts: self.links_posts,
                min_together: self.links_min_together,
                min_share: self.links_min_share,
                per_tag: self.links_per_tag,
            },
        }
    }
}

/// Credentials and limits of the TikTok Research API (the `tiktok_*` keys).
#[derive(Debug, Clone)]
pub struct TikTokSettings {
    /// Base URL.
    pub base_url: String,
    /// Client key.
    pub client_key: SecretString,
    /// Client secret.
    pub client_secret: SecretString,
    /// Requests allowed per UTC day.
    pub daily_request_limit: u32,
    /// Records allowed per UTC day.
    pub daily_record_limit: u32,
    /// Videos per request.
    pub max_count: u32,
    /// Timeout of one HTTP call.
    pub request_timeout_ms: u64,
    /// 429s tolerated in a row.
    pub max_rate_limit_retries: u32,
    /// First back-off after a 429.
    pub backoff_base_ms: u64,
    /// Restarts of a window after an expired `search_id`.
    pub max_search_restarts: u32,
}

impl Default for TikTokSettings {
    fn default() -> Self {
        Self {
            base_url: "https://open.tiktokapis.com".to_owned(),
            client_key: SecretString::from(""),
            client_secret: SecretString::from(""),
            daily_request_limit: 1_000,
            daily_record_limit: 100_000,
            max_count: 100,
            request_timeout_ms: 30_000,
            max_rate_limit_retries: 5,
            backoff_base_ms: 1_000,
            max_search_restarts: 3,
        }
    }
}

/// How trending hashtags are scored after each pull (the `trends_*` keys).
#[derive(Debug, Clone)]
pub struct TrendSettings {
    /// Length of the recent window (and of the previous one it is compared with), ending at the
    /// newest pulled video.
    pub window_hours: u64,
    /// Additive smoothing of the shares.
    pub smoothing: f64,
    /// Least videos a tag needs in the recent window.
    pub min_support: i64,
    /// Tags kept per region.
    pub per_region_limit: usize,
    /// How wider tags are learned (the `links_*` keys).
    pub links: LinkSettings,
}

impl Default for TrendSettings {
    fn default() -> Self {
        Self { window_hours: 72, smoothing: 1.0, min_support: 3, per_region_limit: 200, links: LinkSettings::default() }
    }
}

/// How wider tags are learned from pulled videos after each pull (the `links_*` keys): a tag
/// that at least `min_share` of a tag's videos carry, at least `min_together` of them, and that
/// more videos carry overall.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// The newest pulled videos read.
    pub posts: i64,
    pub min_together: i64,
    pub min_share: f64,
    /// Most wider tags kept per tag.
    pub per_tag: i64,
}

impl Default for LinkSettings {
    fn default() -> Self {
        Self { posts: 100_000, min_together: 5, min_share: 0.3, per_tag: 4 }
    }
}

/// Where a schedule's data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The TikTok Research API.
    Tiktok,
    /// A dump file or S3 prefix.
    Dump,
    /// Not a pull: enqueues a training job (`training` says how) and waits for its outcome.
    Train,
}

impl SourceKind {
    /// Name stored with runs and videos.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tiktok => "tiktok",
            Self::Dump => "dump",
            Self::Train => "train",
        }
    }
}

/// Layout of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    /// Decided per line: the Kaggle trending shape when it has `diggCount` or `playCount`,
    /// otherwise reelq's JSON lines.
    #[default]
    Auto,
    /// One JSON object per line with the Research API's field names.
    Jsonl,
    /// The Kaggle "TikTok trending" shape (`diggCount`, `musicMeta`, …), as JSON lines or one
    /// JSON array.
    Kaggle,
}

/// `[scheduler.schedules.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Cron expression, five fields (minute first) or six (seconds first), in UTC.
    pub cron: String,
    /// `tiktok`, `dump`, or `train` (retrain the models on what was pulled).
    pub source: SourceKind,
    /// A disabled schedule is registered but never run, not even when triggered.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// TikTok: videos with any of these hashtags (a list, or comma-separated in the
    /// environment).
    #[serde(default, deserialize_with = "list")]
    pub hashtags: Vec<String>,
    /// TikTok: videos from any of these regions (ISO codes; a list, or comma-separated).
    #[serde(default, deserialize_with = "list")]
    pub regions: Vec<String>,
    /// TikTok: days back from today (UTC) the pull covers, split into windows of at most 30
    /// days.
    #[serde(default = "default_days_back")]
    pub days_back: u32,
    /// Dump: a file path, or `s3://<prefix>` for every object under a prefix of the bucket.
    #[serde(default)]
    pub path: Option<String>,
    /// Dump: its layout.
    #[serde(default)]
    pub format: DumpFormat,
    /// Train: what to train and how to judge it (every field has a default).
    #[serde(default)]
    pub training: reelq_shared::training::TrainingRequest,
}

/// A list, or one comma-separated string: schedule tables are named by the operator, so their
/// keys cannot be declared as list keys of the environment source in advance.
fn list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(s) => s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect(),
    })
}

fn yes() -> bool {
    true
}

fn default_days_back() -> u32 {
    7
}

impl SchedulerSettings {
    /// Checks the section, naming the key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.health_bind.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid("scheduler.health_bind", "must be an address such as 0.0.0.0:8082"));
        }
        if self.poll_interval_ms == 0 {
            return Err(ConfigError::invalid("scheduler.poll_interval_ms", "must be positive"));
        }
        let t = self.tiktok();
        if url::Url::parse(&t.base_url).is_err() {
            return Err(ConfigError::invalid("scheduler.tiktok_base_url", "must be a URL"));
        }
        if !(1..=100).contains(&t.max_count) {
            return Err(ConfigError::invalid("scheduler.tiktok_max_count", "must be between 1 and 100"));
        }
        if t.daily_request_limit == 0 || i32::try_from(t.daily_request_limit).is_err() {
            return Err(ConfigError::invalid("scheduler.tiktok_daily_request_limit", "must be between 1 and 2^31 - 1"));
        }
        if t.daily_record_limit == 0 || i32::try_from(t.daily_record_limit).is_err() {
            return Err(ConfigError::invalid("scheduler.tiktok_daily_record_limit", "must be between 1 and 2^31 - 1"));
        }
        if self.trends_window_hours == 0 || self.trends_window_hours > 24 * 365 {
            return Err(ConfigError::invalid("scheduler.trends_window_hours", "must be between 1 and 8760"));
        }
        if !(self.trends_smoothing.is_finite() && self.trends_smoothing > 0.0) {
            return Err(ConfigError::invalid("scheduler.trends_smoothing", "must be positive"));
        }
        if self.trends_per_region_limit == 0 {
            return Err(ConfigError::invalid("scheduler.trends_per_region_limit", "must be positive"));
        }
        if self.links_posts < 1 {
            return Err(ConfigError::invalid("scheduler.links_posts", "must be positive"));
        }
        if self.links_min_together < 1 {
            return Err(ConfigError::invalid("scheduler.links_min_together", "must be positive"));
        }
        if !(self.links_min_share > 0.0 && self.links_min_share <= 1.0) {
            return Err(ConfigError::invalid("scheduler.links_min_share", "must be above 0 and at most 1"));
        }
        if !(0..=16).contains(&self.links_per_tag) {
            return Err(ConfigError::invalid("scheduler.links_per_tag", "must be between 0 and 16 (0 learns none)"));
        }
        for (name, s) in &self.schedules {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)) {
                return Err(ConfigError::invalid("scheduler.schedules", format!("schedule name `{name}`: letters, digits, '_' and '-' only")));
            }
            crate::cron::parse(&s.cron).map_err(|e| ConfigError::invalid("scheduler.schedules.*.cron", format!("schedule `{name}`: {e}")))?;
            match s.source {
                SourceKind::Tiktok => {
                    if s.hashtags.is_empty() && s.regions.is_empty() {
                        return Err(ConfigError::invalid(
                            "scheduler.schedules.*.hashtags",
                            format!("schedule `{name}`: a tiktok pull needs hashtags or regions"),
                        ));
                    }
                    if s.days_back == 0 {
                        return Err(ConfigError::invalid("scheduler.schedules.*.days_back", format!("schedule `{name}`: must be positive")));
                    }
                    if t.client_key_missing() && s.enabled {
                        return Err(ConfigError::invalid(
                            "scheduler.tiktok_client_key",
                            format!("schedule `{name}` pulls from TikTok: set tiktok_client_key and tiktok_client_secret"),
                        ));
                    }
                }
                SourceKind::Dump => {
                    if s.path.as_deref().is_none_or(str::is_empty) {
                        return Err(ConfigError::invalid("scheduler.schedules.*.path", format!("schedule `{name}`: a dump needs a path")));
                    }
                }
                SourceKind::Train => {
                    s.training.validate().map_err(|m| ConfigError::invalid("scheduler.schedules.*.training", format!("schedule `{name}`: {m}")))?;
                }
            }
        }
        Ok(())
    }
}

impl TikTokSettings {
    fn client_key_missing(&self) -> bool {
        use secrecy::ExposeSecret as _;
        self.client_key.expose_secret().is_empty() || self.client_secret.expose_secret().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use crate::Settings;

    fn load(dir: &Path, vars: &[(&str, &str)]) -> Result<Settings, reelq_shared::config::ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        reelq_shared::config::load_from(dir, "none", ::config::Environment::with_prefix("REELQ").source(Some(map)))
    }

    #[test]
    fn the_reference_file_holds_the_scheduler_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reference = include_str!("../../config/reference.toml");
        std::fs::write(dir.path().join("default.toml"), reference).expect("write");
        let loaded = load(dir.path(), &[]).expect("loads");
        assert_eq!(format!("{:?}", loaded.scheduler), format!("{:?}", Settings::default().scheduler));
    }

    #[test]
    fn schedules_load_from_tables_and_the_environment_and_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("default.toml"),
            "[scheduler]\ntiktok_client_key = \"k\"\ntiktok_client_secret = \"s\"\n\
             [scheduler.schedules.trending]\ncron = \"0 */6 * * *\"\nsource = \"tiktok\"\nhashtags = [\"fyp\"]\n\
             [scheduler.schedules.kaggle]\ncron = \"30 3 * * *\"\nsource = \"dump\"\npath = \"s3://dumps/\"\nformat = \"kaggle\"\n",
        )
        .expect("write");
        let s = load(dir.path(), &[("REELQ__SCHEDULER__SCHEDULES__TRENDING__DAYS_BACK", "3")]).expect("loads");
        assert_eq!(s.scheduler.schedules["trending"].days_back, 3);
        assert_eq!(s.scheduler.schedules["trending"].hashtags, vec!["fyp"]);
        let s = load(dir.path(), &[("REELQ__SCHEDULER__SCHEDULES__TRENDING__HASHTAGS", "dance, fyp")]).expect("loads");
        assert_eq!(s.scheduler.schedules["trending"].hashtags, vec!["dance", "fyp"]);
        assert_eq!(s.scheduler.schedules["kaggle"].format, super::DumpFormat::Kaggle);
        // The secret never shows in logs of the settings.
        assert!(!format!("{s:?}").contains("\"k\""));

        let err = load(dir.path(), &[("REELQ__SCHEDULER__SCHEDULES__TRENDING__CRON", "every day")]).expect_err("bad cron");
        assert!(err.to_string().contains("cron"), "{err}");
        let err = load(dir.path(), &[("REELQ__SCHEDULER__TIKTOK_CLIENT_KEY", "")]).expect_err("no credentials");
        assert!(err.to_string().contains("tiktok_client_key"), "{err}");
        let err = load(dir.path(), &[("REELQ__SCHEDULER__TIKTOK_MAX_COUNT", "500")]).expect_err("too many");
        assert!(err.to_string().contains("tiktok_max_count"), "{err}");
        let s = load(dir.path(), &[("REELQ__SCHEDULER__LINKS_MIN_SHARE", "0.5")]).expect("loads");
        assert_eq!(s.scheduler.trends().links.min_share, 0.5);
        for (key, bad) in
            [("LINKS_MIN_SHARE", "0"), ("LINKS_MIN_SHARE", "1.5"), ("LINKS_MIN_TOGETHER", "0"), ("LINKS_POSTS", "0"), ("LINKS_PER_TAG", "17")]
        {
            let err = load(dir.path(), &[(&format!("REELQ__SCHEDULER__{key}") as &str, bad)]).expect_err(key);
            assert!(err.to_string().contains(&key.to_lowercase()), "{key}={bad}: {err}");
        }
    }
}
