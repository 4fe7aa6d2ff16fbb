//! A stand-in for the TikTok Research API over a synthetic dataset: the same OAuth token
//! endpoint, the same video query with `cursor` / `search_id` paging and the same error bodies.
//! It reproduces, on demand, what makes the real API hard to live with: tokens that stop
//! working, search ids that expire, 429s and a spent daily quota.
//!
//! The dataset is related in known ways, so that models trained on it have something to learn:
//! captions are made of words about their hashtags' topics ([`topic_words`]) and views scale
//! with the hashtags ([`view_multiplier`]); [`dataset`] states the rules.
//!
//! Used by the tests, and by `reelq-scheduler tiktok-stub` for local runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{NaiveDate, Utc};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::protocol::{self, Condition, QueryRequest, codes};

/// Hashtags of the synthetic dataset.
pub const VOCABULARY: &[&str] = &["fyp", "dance", "cooking", "travel", "comedy", "pets", "fitness", "music", "fashion", "diy"];
/// Regions of the synthetic dataset.
pub const REGIONS: &[&str] = &["US", "GB", "DE", "FR", "BR"];

/// What the stub serves and which quirks it reproduces.
#[derive(Debug, Clone)]
pub struct StubConfig {
    /// Accepted client key.
    pub client_key: String,
    /// Accepted client secret.
    pub client_secret: String,
    /// Videos in the dataset.
    pub videos: usize,
    /// Days the dataset spans, ending at `end_date`.
    pub days: u32,
    /// Last day of the dataset.
    pub end_date: NaiveDate,
    /// Seed of the dataset.
    pub seed: u64,
    /// Lifetime of a token, as announced in `expires_in`.
    pub token_ttl_secs: u64,
    /// A token is refused with `access_token_invalid` after this many queries.
    pub token_expires_after_calls: Option<u32>,
    /// The first search's id expires after it served this many pages (once).
    pub search_id_expires_after_pages: Option<u32>,
    /// The first this-many queries are answered 429 `rate_limit_exceeded`.
    pub rate_limited_calls: u32,
    /// Queries answered per day before 429 `daily_quota_limit_exceeded`.
    pub daily_request_quota: Option<u32>,
    /// Added to every query, to make runs overlap in tests.
    pub latency_ms: u64,
}

impl Default for StubConfig {
    fn default() -> Self {
        Self {
            client_key: "stub-key".into(),
            client_secret: "stub-secret".into(),
            videos: 500,
            days: 14,
            end_date: Utc::now().date_naive(),
            seed: 42,
            token_ttl_secs: 7_200,
            token_expires_after_calls: None,
            search_id_expires_after_pages: None,
            rate_limited_calls: 0,
            daily_request_quota: None,
            latency_ms: 0,
        }
    }
}

/// One synthetic video.
#[derive(Debug, Clone, PartialEq)]
pub struct StubVideo {
    /// Video id.
    pub id: u64,
    /// Caption.
    pub description: String,
    /// Unix seconds.
    pub create_time: i64,
    /// Region code.
    pub region: String,
    /// Hashtags.
    pub hashtags: Vec<String>,
    /// Music id.
    pub music_id: u64,
    /// Counters.
    pub views: i64,
    /// Likes.
    pub likes: i64,
    /// Comments.
    pub comments: i64,
    /// Shares.
    pub shares: i64,
}

/// Counts of what the stub did, for assertions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StubStats {
    /// Tokens issued.
    pub tokens_issued: u32,
    /// Query requests received (answered or refused).
    pub queries: u32,
    /// Pages answered successfully.
    pub pages: u32,
    /// Queries refused with `access_token_invalid`.
    pub token_refusals: u32,
    /// Queries refused with `rate_limit_exceeded`.
    pub rate_limited: u32,
    /// Queries refused because their search id expired.
    pub search_ids_expired: u32,
    /// Queries refused with `daily_quota_limit_exceeded`.
    pub quota_refusals: u32,
    /// Queries refused with `invalid_params` for another reason.
    pub invalid_params: u32,
    /// Most queries in progress at once.
    pub max_in_flight: u32,
}

struct Search {
    matches: Vec<usize>,
    pages: u32,
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, u32>,
    searches: HashMap<String, Search>,
    search_expired_once: bool,
    in_flight: u32,
    stats: StubStats,
    next_id: u64,
}

struct StubState {
    config: StubConfig,
    dataset: Vec<StubVideo>,
    inner: Mutex<Inner>,
}

/// A running stub.
pub struct StubServer {
    addr: SocketAddr,
    state: Arc<StubState>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl StubServer {
    /// Serves `config` on `bind` (port 0 picks one).
    pub async fn start(config: StubConfig, bind: &str) -> std::io::Result<Self> {
        let dataset = dataset(&config);
        let state = Arc::new(StubState { config, dataset, inner: Mutex::new(Inner::default()) });
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let app = router(state.clone());
        let token = stop.clone();
        let task = reelq_shared::telemetry::spawn_named("tiktok-stub", async move {
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await {
                tracing::error!(error = %e, "the TikTok stub stopped");
            }
        });
        Ok(Self { addr, state, stop, task })
    }

    /// `http://ADDR`, the `base_url` to configure.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it did so far.
    pub fn stats(&self) -> StubStats {
        self.state.inner.lock().map(|i| i.stats).unwrap_or_default()
    }

    /// The dataset it serves.
    pub fn dataset(&self) -> &[StubVideo] {
        &self.state.dataset
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The stub's routes over `state`.
fn router(state: Arc<StubState>) -> Router {
    Router::new().route("/v2/oauth/token/", post(token)).route("/v2/research/video/query/", post(query)).with_state(state)
}

/// Words and phrases about a hashtag's topic, from which captions are written: every tag of
/// [`VOCABULARY`] but `fyp` has its own, and no phrase of one tag occurs in another's or in the
/// captions' common wording, so the words of a caption name exactly its topic tags. `fyp` (and
/// any tag outside the vocabulary) has none: it is generic, unpredictable from the text by design.
pub fn topic_words(tag: &str) -> &'static [&'static str] {
    match tag {
        "dance" => &["choreography", "dance moves", "a dance challenge", "my dance routine", "freestyle dancing", "footwork drills", "dance practice"],
        "cooking" => {
            &["a pasta recipe", "my kitchen", "dinner", "baking bread", "homemade pizza", "meal prep", "a chocolate cake", "garlic and olive oil"]
        }
        "travel" => &["the beach", "the airport", "our hotel", "the mountains", "a road trip", "an old town tour", "my passport", "a sunset flight"],
        "comedy" => &["a prank", "a funny skit", "a stand-up bit", "my roommate's reaction", "a hilarious fail", "a parody", "a sketch about my brother"],
        "pets" => &["my puppy", "my cat", "the dog park", "a tiny kitten", "a rescue dog", "a vet visit", "a hamster"],
        "fitness" => &["a workout", "the gym", "squats", "leg day", "a morning run", "push-ups", "a HIIT session"],
        "music" => &["a guitar cover", "singing", "the piano", "my new song", "a drum solo", "an acoustic session", "a violin melody"],
        "fashion" => &["an outfit", "a style haul", "thrift finds", "a fit check", "new sneakers", "streetwear", "a denim jacket"],
        "diy" => &["woodworking", "a home project", "fresh paint", "a shelf I built", "my power drill", "a room makeover", "upcycled furniture"],
        _ => &[],
    }
}

/// How a hashtag scales a video's views: `dance` ×3 down to `diy` ×0.5; `fyp` and tags outside
/// the vocabulary ×1.
pub fn view_multiplier(tag: &str) -> f64 {
    match tag {
        "dance" => 3.0,
        "comedy" => 2.0,
        "pets" => 1.6,
        "fashion" => 1.3,
        "music" => 1.2,
        "fitness" => 0.9,
        "cooking" => 0.8,
        "travel" => 0.7,
        "diy" => 0.5,
        _ => 1.0,
    }
}

// The captions' common wording, about no topic: openings, links between topic phrases,
// endings, and what a video with no topic tag (only `fyp`) is about.
const OPENINGS: &[&str] =
    &["trying", "all about", "a day of", "pov:", "quick look at", "obsessed with", "first time trying", "can't get enough of", "sunday plans:", "rating"];
const LINKS: &[&str] = &[" and ", " with ", " plus ", " then "];
const ENDINGS: &[&str] = &["", "", " tonight", " today", " this weekend", ", wait for it", " part 2", " again", " lol"];
const NO_TOPIC: &[&str] = &["something new", "my life lately", "the little things", "random thoughts", "this", "whatever this is"];

/// The caption's generator, one per video and apart from the dataset's main sequence, so the
/// wording can change without moving any video's tags, region, music or counters.
struct Wording(u64);

impl Wording {
    fn new(seed: u64, i: usize) -> Self {
        let mut w = Self(seed ^ 0x5EED_CA97_10A5_0000);
        let mixed = w.next() ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        Self(mixed)
    }

    /// SplitMix64.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick(&mut self, from: &[&'static str]) -> &'static str {
        from[(self.next() % from.len() as u64) as usize]
    }

    /// A short sentence about `tags`: one phrase from each topic tag (two when there is only
    /// one), in a random order, between a common opening and ending.
    fn sentence(&mut self, tags: &[String]) -> String {
        let topics: Vec<&[&str]> = tags.iter().map(|t| topic_words(t)).filter(|w| !w.is_empty()).collect();
        let mut phrases: Vec<&str> = Vec::new();
        for words in &topics {
            let first = (self.next() % words.len() as u64) as usize;
            phrases.push(words[first]);
            if topics.len() == 1 && words.len() > 1 {
                // Another of the same tag's phrases.
                let second = (first + 1 + (self.next() % (words.len() as u64 - 1)) as usize) % words.len();
                phrases.push(words[second]);
            }
        }
        if phrases.is_empty() {
            phrases.push(self.pick(NO_TOPIC));
        }
        for k in (1..phrases.len()).rev() {
            phrases.swap(k, (self.next() % (k as u64 + 1)) as usize);
        }
        let mut s = format!("{} {}", self.pick(OPENINGS), phrases[0]);
        for p in &phrases[1..] {
            s.push_str(self.pick(LINKS));
            s.push_str(p);
        }
        s.push_str(self.pick(ENDINGS));
        s
    }
}

/// The synthetic dataset: deterministic for a seed. `dance` grows over the span (it is in a
/// tenth of the oldest videos and in most of the newest), so trends have something to find.
///
/// It holds two relations for models to learn, both fixed here:
/// - **Caption → hashtags.** A caption is a short sentence followed by the hashtags,
///   `"{sentence} #tag1 #tag2"`. The sentence holds one phrase of [`topic_words`] for each of
///   the video's tags but `fyp` (two when it has one such tag) and otherwise only common words
///   that belong to no topic, so with the `#tags` stripped the words still name every topic tag,
///   and never `fyp`. The wording comes from its own generator seeded by `(seed, index)`.
/// - **Hashtags → views.** `views = round(base × Π view_multiplier(tag))` over the video's
///   tags, with `base` uniform in `100..100_100`: `dance` ×3, `comedy` ×2, `pets` ×1.6,
///   `fashion` ×1.3, `music` ×1.2, `fyp` ×1, `fitness` ×0.9, `cooking` ×0.8, `travel` ×0.7,
///   `diy` ×0.5. Log-views are thus the sum of one term per tag plus noise. Likes, comments
///   and shares are views divided by random factors (about 2–21, 50–249 and 100–499).
///
/// Which tags, region, music and base each video gets does not depend on the wording.
pub fn dataset(config: &StubConfig) -> Vec<StubVideo> {
    let mut rng = config.seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let mut next = move || {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        rng >> 33
    };
    // Nothing posted in the future: today's videos end now.
    let end = config.end_date.and_hms_opt(23, 59, 59).map(|t| t.and_utc().timestamp()).unwrap_or_default().min(Utc::now().timestamp());
    let span = i64::from(config.days.max(1)) * 86_400;
    (0..config.videos)
        .map(|i| {
            // Spread evenly over the span, newest first.
            let age = span * i as i64 / config.videos.max(1) as i64;
            let freshness = 1.0 - age as f64 / span as f64;
            let mut tags = vec![VOCABULARY[(next() % VOCABULARY.len() as u64) as usize].to_owned()];
            if (next() % 1000) as f64 / 1000.0 < 0.1 + 0.7 * freshness {
                tags.push("dance".into());
            }
            if next() % 3 == 0 {
                tags.push("fyp".into());
            }
            tags.sort();
            tags.dedup();
            let base = 100 + (next() % 100_000) as i64;
            let views = (base as f64 * tags.iter().map(|t| view_multiplier(t)).product::<f64>()).round() as i64;
            let sentence = Wording::new(config.seed, i).sentence(&tags);
            StubVideo {
                id: 7_300_000_000_000_000_000 + i as u64,
                description: format!("{sentence} #{}", tags.join(" #")),
                create_time: end - age,
                region: REGIONS[(next() % REGIONS.len() as u64) as usize].to_owned(),
                hashtags: tags,
                music_id: 6_900_000_000_000_000_000 + next() % 20,
                views,
                likes: views / (2 + (next() % 20) as i64),
                comments: views / (50 + (next() % 200) as i64),
                shares: views / (100 + (next() % 400) as i64),
            }
        })
        .collect()
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({"data": {}, "error": {"code": code, "message": message.into(), "log_id": uuid::Uuid::new_v4().simple().to_string()}});
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn token(State(state): State<Arc<StubState>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
        && form.get("client_key") == Some(&state.config.client_key)
        && form.get("client_secret") == Some(&state.config.client_secret);
    if !ok {
        let body = json!({"error": "invalid_client", "error_description": "Client key or secret is incorrect.", "log_id": "stub"});
        return (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    }
    let Ok(mut inner) = state.inner.lock() else { return error(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL_ERROR, "") };
    inner.next_id += 1;
    let token = format!("clt.stub{}{}", inner.next_id, uuid::Uuid::new_v4().simple());
    inner.tokens.insert(token.clone(), 0);
    inner.stats.tokens_issued += 1;
    let body = json!({"access_token": token, "expires_in": state.config.token_ttl_secs, "token_type": "Bearer"});
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn query(State(state): State<Arc<StubState>>, UrlQuery(params): UrlQuery<HashMap<String, String>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Ok(mut inner) = state.inner.lock() {
        inner.in_flight += 1;
        inner.stats.max_in_flight = inner.stats.max_in_flight.max(inner.in_flight);
    }
    if state.config.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(state.config.latency_ms)).await;
    }
    let response = answer(&state, &params, &headers, &body);
    if let Ok(mut inner) = state.inner.lock() {
        inner.in_flight -= 1;
    }
    response
}

fn answer(state: &StubState, params: &HashMap<String, String>, headers: &HeaderMap, body: &Bytes) -> Response {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Ok(mut inner) = state.inner.lock() else { return error(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL_ERROR, "") };
    inner.stats.queries += 1;
    let calls = inner.stats.queries;

    // Authentication first, as the real API does.
    let token_ok = match bearer.and_then(|b| inner.tokens.get_mut(b)) {
        Some(uses) => {
            *uses += 1;
            state.config.token_expires_after_calls.is_none_or(|n| *uses <= n)
        }
        None => false,
    };
    if !token_ok {
        inner.stats.token_refusals += 1;
        return error(StatusCode::UNAUTHORIZED, codes::ACCESS_TOKEN_INVALID, "The access token is invalid or has expired.");
    }
    if calls <= state.config.rate_limited_calls {
        inner.stats.rate_limited += 1;
        return error(StatusCode::TOO_MANY_REQUESTS, codes::RATE_LIMIT_EXCEEDED, "API rate limit exceeded, please retry later.");
    }
    if let Some(quota) = state.config.daily_request_quota {
        let answered = inner.stats.pages + inner.stats.search_ids_expired + inner.stats.invalid_params;
        if answered >= quota {
            inner.stats.quota_refusals += 1;
            return error(StatusCode::TOO_MANY_REQUESTS, codes::DAILY_QUOTA_LIMIT_EXCEEDED, "Daily quota limit exceeded.");
        }
    }

    let request: QueryRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            inner.stats.invalid_params += 1;
            return error(StatusCode::BAD_REQUEST, codes::INVALID_PARAMS, format!("Invalid request body: {e}"));
        }
    };
    let fields: Vec<String> = match params.get("fields") {
        Some(f) if !f.is_empty() => f.split(',').map(|s| s.trim().to_owned()).collect(),
        _ => {
            inner.stats.invalid_params += 1;
            return error(StatusCode::BAD_REQUEST, codes::INVALID_PARAMS, "The fields parameter is required.");
        }
    };
    if let Err(m) = validate(&request, &fields) {
        inner.stats.invalid_params += 1;
        return error(StatusCode::BAD_REQUEST, codes::INVALID_PARAMS, m);
    }

    let search_id = match &request.search_id {
        Some(id) => {
            let expire = state.config.search_id_expires_after_pages;
            let first_expiry = !inner.search_expired_once;
            let Some(search) = inner.searches.get(id) else {
                inner.stats.search_ids_expired += 1;
                return error(StatusCode::BAD_REQUEST, codes::INVALID_PARAMS, format!("Invalid search_id {id}: unknown or expired."));
            };
            if first_expiry && expire.is_some_and(|n| search.pages >= n) {
                inner.searches.remove(id);
                inner.search_expired_once = true;
                inner.stats.search_ids_expired += 1;
                return error(StatusCode::BAD_REQUEST, codes::INVALID_PARAMS, format!("Invalid search_id {id}: the search has expired."));
            }
            id.clone()
        }
        None => {
            let matches: Vec<usize> = state.dataset.iter().enumerate().filter(|(_, v)| matches(v, &request)).map(|(i, _)| i).collect();
            inner.next_id += 1;
            let id = format!("{}{:06}", 7_100_000_000_000u64 + inner.next_id, calls);
            inner.searches.insert(id.clone(), Search { matches, pages: 0 });
            id
        }
    };
    let Some(search) = inner.searches.get_mut(&search_id) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, codes::INTERNAL_ERROR, "search vanished");
    };
    search.pages += 1;
    let start = usize::try_from(request.cursor.unwrap_or(0)).unwrap_or(usize::MAX).min(search.matches.len());
    let end = (start + request.max_count as usize).min(search.matches.len());
    let videos: Vec<Value> = search.matches[start..end].iter().map(|&i| render(&state.dataset[i], &fields)).collect();
    let has_more = end < search.matches.len();
    inner.stats.pages += 1;
    let body = json!({
        "data": {"videos": videos, "cursor": end, "has_more": has_more, "search_id": search_id},
        "error": {"code": codes::OK, "message": "", "log_id": uuid::Uuid::new_v4().simple().to_string()},
    });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

const KNOWN_FIELDS: &[&str] = &[
    "id",
    "video_description",
    "create_time",
    "region_code",
    "share_count",
    "view_count",
    "like_count",
    "comment_count",
    "music_id",
    "hashtag_names",
    "username",
    "effect_ids",
    "playlist_id",
    "voice_to_text",
    "is_stem_verified",
    "video_duration",
    "hashtag_info_list",
    "video_mention_list",
    "video_label",
];

fn validate(r: &QueryRequest, fields: &[String]) -> Result<(), String> {
    if let Some(f) = fields.iter().find(|f| !KNOWN_FIELDS.contains(&f.as_str())) {
        return Err(format!("Unknown field `{f}` in fields."));
    }
    if !(1..=100).contains(&r.max_count) {
        return Err("max_count must be between 1 and 100.".into());
    }
    let start = NaiveDate::parse_from_str(&r.start_date, protocol::DATE_FORMAT).map_err(|_| "start_date must be YYYYMMDD.".to_owned())?;
    let end = NaiveDate::parse_from_str(&r.end_date, protocol::DATE_FORMAT).map_err(|_| "end_date must be YYYYMMDD.".to_owned())?;
    if end < start {
        return Err("end_date must not be before start_date.".into());
    }
    if (end - start).num_days() > protocol::MAX_WINDOW_DAYS {
        return Err("end_date must be no more than 30 days after start_date.".into());
    }
    let conditions = r.query.and.iter().chain(&r.query.or).chain(&r.query.not);
    let mut any = false;
    for c in conditions {
        any = true;
        if !["IN", "EQ"].contains(&c.operation.as_str()) {
            return Err(format!("Unsupported operation `{}`.", c.operation));
        }
        if !["hashtag_name", "region_code", "music_id", "video_id", "keyword"].contains(&c.field_name.as_str()) {
            return Err(format!("Unsupported field_name `{}`.", c.field_name));
        }
        if c.field_values.is_empty() {
            return Err("field_values must not be empty.".into());
        }
    }
    if !any {
        return Err("The query needs at least one condition.".into());
    }
    Ok(())
}

fn holds(v: &StubVideo, c: &Condition) -> bool {
    let values = |x: &str| c.field_values.iter().any(|f| f.eq_ignore_ascii_case(x));
    match c.field_name.as_str() {
        "hashtag_name" => v.hashtags.iter().any(|h| values(h)),
        "region_code" => values(&v.region),
        "music_id" => values(&v.music_id.to_string()),
        "video_id" => values(&v.id.to_string()),
        "keyword" => c.field_values.iter().any(|k| v.description.to_lowercase().contains(&k.to_lowercase())),
        _ => false,
    }
}

fn matches(v: &StubVideo, r: &QueryRequest) -> bool {
    let Some(day) = chrono::DateTime::from_timestamp(v.create_time, 0).map(|t| t.date_naive().format(protocol::DATE_FORMAT).to_string()) else {
        return false;
    };
    day >= r.start_date
        && day <= r.end_date
        && r.query.and.iter().all(|c| holds(v, c))
        && (r.query.or.is_empty() || r.query.or.iter().any(|c| holds(v, c)))
        && !r.query.not.iter().any(|c| holds(v, c))
}

fn render(v: &StubVideo, fields: &[String]) -> Value {
    let mut o = serde_json::Map::new();
    for f in fields {
        let value = match f.as_str() {
            "id" => json!(v.id),
            "video_description" => json!(v.description),
            "create_time" => json!(v.create_time),
            "region_code" => json!(v.region),
            "share_count" => json!(v.shares),
            "view_count" => json!(v.views),
            "like_count" => json!(v.likes),
            "comment_count" => json!(v.comments),
            "music_id" => json!(v.music_id),
            "hashtag_names" => json!(v.hashtags),
            _ => continue,
        };
        o.insert(f.clone(), value);
    }
    // The API always sends the id, even when not asked for.
    o.entry("id").or_insert_with(|| json!(v.id));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64) -> StubConfig {
        // A past end date, so the dataset does not move with the clock.
        StubConfig { videos: 500, days: 14, seed, end_date: NaiveDate::from_ymd_opt(2026, 1, 31).expect("date"), ..StubConfig::default() }
    }

    /// The caption without its hashtags, as a classifier sees it.
    fn sentence(v: &StubVideo) -> &str {
        v.description.split_once(" #").map_or(v.description.as_str(), |(s, _)| s)
    }

    fn median(mut xs: Vec<i64>) -> i64 {
        xs.sort_unstable();
        xs[xs.len() / 2]
    }

    #[test]
    fn every_tag_but_fyp_has_topic_words_of_its_own() {
        for tag in VOCABULARY {
            assert_eq!(topic_words(tag).is_empty(), *tag == "fyp", "{tag}");
        }
        assert!(topic_words("unknown").is_empty());
    }

    #[test]
    fn the_words_of_a_caption_name_exactly_its_topic_tags() {
        for seed in [42, 7] {
            for v in dataset(&config(seed)) {
                let words = sentence(&v);
                assert!(!words.is_empty() && !words.contains('#'), "{}", v.description);
                assert_eq!(v.description, format!("{words} #{}", v.hashtags.join(" #")));
                let named: Vec<&str> = VOCABULARY.iter().copied().filter(|t| topic_words(t).iter().any(|w| words.contains(w))).collect();
                let topics: Vec<&str> = VOCABULARY.iter().copied().filter(|t| *t != "fyp" && v.hashtags.iter().any(|h| h == t)).collect();
                assert_eq!(named, topics, "{}", v.description);
                if let [only] = topics.as_slice() {
                    let phrases = topic_words(only).iter().filter(|w| words.contains(*w)).count();
                    assert!(phrases >= 2, "one topic tag gives two of its phrases: {}", v.description);
                }
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_dataset() {
        assert_eq!(dataset(&config(42)), dataset(&config(42)));
        assert_ne!(dataset(&config(42)), dataset(&config(43)));
    }

    #[test]
    fn tags_regions_music_and_base_views_are_those_of_the_captionless_dataset() {
        // Captured from the dataset before captions and view multipliers existed (seed 42):
        // tags, region, music id offset and views, which are now the base.
        let before: [(&[&str], &str, u64, i64); 8] = [
            (&["dance", "fitness", "fyp"], "GB", 9, 6394),
            (&["comedy", "dance", "fyp"], "FR", 9, 90614),
            (&["comedy", "dance"], "US", 0, 54234),
            (&["cooking", "dance", "fyp"], "FR", 8, 84326),
            (&["dance", "fyp"], "BR", 5, 84694),
            (&["dance", "music"], "GB", 7, 72259),
            (&["dance", "fyp", "travel"], "FR", 15, 41320),
            (&["dance", "diy"], "DE", 1, 91844),
        ];
        let videos = dataset(&config(42));
        for (v, (tags, region, music, base)) in videos.iter().zip(before) {
            assert_eq!(v.hashtags, tags, "{v:?}");
            assert_eq!((v.region.as_str(), v.music_id - 6_900_000_000_000_000_000), (region, music), "{v:?}");
            let multiplier: f64 = tags.iter().map(|t| view_multiplier(t)).product();
            assert_eq!(v.views, (base as f64 * multiplier).round() as i64, "{v:?}");
        }
        // dance ×3, fitness ×0.9, fyp ×1.
        assert_eq!(videos[0].views, 17_264);
    }

    #[test]
    fn dance_videos_get_more_views_than_diy_videos() {
        let videos = dataset(&config(42));
        let views = |with: &str, without: &str| -> Vec<i64> {
            videos.iter().filter(|v| v.hashtags.iter().any(|h| h == with) && !v.hashtags.iter().any(|h| h == without)).map(|v| v.views).collect()
        };
        let (dance, diy) = (views("dance", "diy"), views("diy", "dance"));
        assert!(dance.len() >= 20 && diy.len() >= 20, "{} dance and {} diy videos", dance.len(), diy.len());
        let (dance, diy) = (median(dance), median(diy));
        assert!(dance > 3 * diy, "median views: dance {dance}, diy {diy}");
    }

    #[test]
    fn counters_follow_views() {
        for v in dataset(&config(42)) {
            assert!(v.views >= 50, "{v:?}");
            assert!(v.likes <= v.views / 2 && v.likes >= v.views / 21, "{v:?}");
            assert!(v.comments <= v.views / 50 && v.shares <= v.views / 100, "{v:?}");
        }
    }
}
