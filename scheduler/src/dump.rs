//! Imported dumps: JSON lines with the Research API's field names, or the Kaggle "TikTok
//! trending" shape (`id, text, hashtags[].name, diggCount, shareCount, commentCount, playCount,
//! musicMeta{musicId, musicName, musicAuthor}, createTime`) as JSON lines, one array, or the
//! `{"collector": [...]}` document that dataset ships as. From a local file, or from every
//! object under an S3 prefix of the bucket.
//!
//! JSON lines are read line by line, so memory stays flat however large the file; a line that
//! does not parse is skipped and counted, and a dump with no usable line fails the run.
//!
//! A video's own file may lie beside the dump, named by its id (`<id>.mp4`, `.mov`, `.webm`,
//! `.mkv`): in the dump's folder, or under the same S3 prefix. Local files are copied to
//! `scraped/<id>.<ext>` in the bucket; either way the video row records the key, and the trainer
//! embeds the video's frames.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use reelq_shared::db::scraped::{Music, PulledVideo};
use reelq_shared::engagement::Counts;
use reelq_shared::storage::Store;

use crate::settings::DumpFormat;
use crate::source::{PullOutcome, RunContext, Source, SourceError};
use crate::tiktok::normalise_tag;
use crate::tiktok::protocol::ApiVideo;

/// Videos stored per transaction.
const BATCH: usize = 500;

/// A dump as a [`Source`].
pub struct DumpSource {
    location: Location,
    format: DumpFormat,
    store: Option<Store>,
}

enum Location {
    File(PathBuf),
    S3Prefix(String),
}

impl DumpSource {
    /// A source reading `path` (`s3://<prefix>` for objects of `store`'s bucket).
    pub fn new(path: &str, format: DumpFormat, store: Option<Store>) -> Self {
        let location = match path.strip_prefix("s3://") {
            Some(prefix) => Location::S3Prefix(prefix.to_owned()),
            None => Location::File(PathBuf::from(path)),
        };
        Self { location, format, store }
    }

    async fn run(&self, ctx: &mut RunContext) -> Result<PullOutcome, SourceError> {
        let mut tally = Tally::default();
        match &self.location {
            Location::File(path) => self.import_file(ctx, path, &mut tally).await?,
            Location::S3Prefix(prefix) => {
                let store = self.store.as_ref().ok_or_else(|| SourceError::failed("dump_unavailable", "no object storage configured"))?;
                let all = store.list_keys(prefix).await.map_err(|e| SourceError::failed("dump_unavailable", e.to_string()))?;
                let (videos, keys): (Vec<String>, Vec<String>) = all.into_iter().partition(|k| video_id_of(k).is_some());
                if keys.is_empty() {
                    return Err(SourceError::failed("dump_not_found", format!("no dump objects under s3://{prefix}")));
                }
                let dir = tempfile_dir()?;
                for key in keys {
                    if ctx.stop.is_cancelled() {
                        return Ok(PullOutcome::Stopped { code: "shutdown", reason: "the scheduler is shutting down".into() });
                    }
                    let local = dir.join("object.json");
                    store.download_to_file(&key, &local).await.map_err(|e| SourceError::failed("dump_unavailable", e.to_string()))?;
                    let result = self.import_file(ctx, &local, &mut tally).await;
                    let _ = tokio::fs::remove_file(&local).await;
                    result?;
                }
                let _ = tokio::fs::remove_dir_all(&dir).await;
                let pairs: Vec<(String, String)> = videos.iter().filter_map(|k| video_id_of(k).map(|id| (id.to_owned(), k.clone()))).collect();
                tally.videos += reelq_shared::db::scraped::set_video_keys(&ctx.pool, &pairs).await?;
            }
        }
        if tally.videos > 0 {
            tracing::info!(videos = tally.videos, "video files found beside the dump");
        }
        if tally.skipped > 0 {
            tracing::warn!(skipped = tally.skipped, imported = tally.imported, first_error = %tally.first_error, "dump lines skipped");
        }
        if tally.imported == 0 {
            return Err(SourceError::failed(
                "dump_invalid",
                format!("no usable video in the dump ({} unusable entries; first: {})", tally.skipped, tally.first_error),
            ));
        }
        Ok(PullOutcome::Complete)
    }

    /// Stores a batch, then, for a local dump, the video files beside it.
    async fn flush(&self, ctx: &mut RunContext, batch: &mut Vec<PulledVideo>, tally: &mut Tally) -> Result<(), SourceError> {
        ctx.store("dump", batch).await?;
        if let (Location::File(path), Some(store)) = (&self.location, &self.store) {
            let dir = path.parent().unwrap_or_else(|| Path::new("."));
            let mut pairs = Vec::new();
            for v in batch.iter() {
                let Some(file) = beside(dir, &v.id).await else { continue };
                let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("mp4").to_ascii_lowercase();
                let key = format!("scraped/{}.{ext}", v.id);
                let size = tokio::fs::metadata(&file).await.map(|m| m.len()).unwrap_or(0);
                // Already copied by an earlier import: the bucket's copy stands.
                if store.size(&key).await.ok().flatten() != Some(size) {
                    let content_type = format!(
                        "video/{}",
                        if ext == "mov" {
                            "quicktime"
                        } else if ext == "mkv" {
                            "x-matroska"
                        } else {
                            ext.as_str()
                        }
                    );
                    store
                        .upload_file(&key, &file, &content_type)
                        .await
                        .map_err(|e| SourceError::failed("dump_unavailable", format!("copying {}: {e}", file.display())))?;
                }
                pairs.push((v.id.clone(), key));
            }
            tally.videos += reelq_shared::db::scraped::set_video_keys(&ctx.pool, &pairs).await?;
        }
        batch.clear();
        Ok(())
    }

    async fn import_file(&self, ctx: &mut RunContext, path: &Path, tally: &mut Tally) -> Result<(), SourceError> {
        let file = tokio::fs::File::open(path).await.map_err(|e| SourceError::failed("dump_not_found", format!("cannot open {}: {e}", path.display())))?;
        let mut reader = BufReader::new(file);
        let mut batch = Vec::with_capacity(BATCH);
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            let n = reader.read_line(&mut line).await.map_err(|e| SourceError::failed("dump_unreadable", e.to_string()))?;
            if n == 0 {
                break;
            }
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            if first {
                first = false;
                // A document rather than lines: an array, or an object that does not close on
                // its first line (the Kaggle `{"collector": [...]}` file).
                let is_document = trimmed.starts_with('[') || serde_json::from_str::<Value>(trimmed).map(|v| v.get("collector").is_some()).unwrap_or(true);
                if is_document {
                    let mut rest = String::new();
                    reader.read_to_string(&mut rest).await.map_err(|e| SourceError::failed("dump_unreadable", e.to_string()))?;
                    let text = format!("{line}{rest}");
                    let items = match serde_json::from_str::<Value>(&text) {
                        // Not a document after all: JSON lines whose first line is broken.
                        Err(_) => {
                            text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str::<Value>(l.trim()).unwrap_or(Value::Null)).collect()
                        }
                        Ok(doc) => doc,
                    };
                    let items = match items {
                        Value::Array(items) => items,
                        Value::Object(mut o) => match o.remove("collector") {
                            Some(Value::Array(items)) => items,
                            _ => vec![Value::Object(o)],
                        },
                        _ => Vec::new(),
                    };
                    for item in items {
                        self.take(item, tally, &mut batch);
                        if batch.len() >= BATCH {
                            self.flush(ctx, &mut batch, tally).await?;
                        }
                    }
                    break;
                }
            }
            match serde_json::from_str::<Value>(trimmed) {
                Ok(v) => self.take(v, tally, &mut batch),
                Err(e) => tally.skip(format!("not JSON: {e}")),
            }
            if batch.len() >= BATCH {
                self.flush(ctx, &mut batch, tally).await?;
            }
        }
        self.flush(ctx, &mut batch, tally).await
    }

    fn take(&self, v: Value, tally: &mut Tally, batch: &mut Vec<PulledVideo>) {
        match parse_entry(v, self.format) {
            Ok(video) => {
                tally.imported += 1;
                batch.push(video);
            }
            Err(e) => tally.skip(e),
        }
    }
}

fn tempfile_dir() -> Result<PathBuf, SourceError> {
    let dir = std::env::temp_dir().join(format!("reelq-dump-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| SourceError::failed("dump_unreadable", e.to_string()))?;
    Ok(dir)
}

/// Extensions of video files a dump may carry.
const VIDEO_EXTENSIONS: &[&str] = &["mp4", "mov", "webm", "mkv"];

/// The video id a key or file name `…/<id>.<video extension>` stands for.
fn video_id_of(key: &str) -> Option<&str> {
    let name = key.rsplit('/').next()?;
    let (stem, ext) = name.rsplit_once('.')?;
    (VIDEO_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)) && !stem.is_empty()).then_some(stem)
}

/// The video file of `id` in `dir`, if there is one. Ids with path characters have none.
async fn beside(dir: &Path, id: &str) -> Option<PathBuf> {
    if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
        return None;
    }
    for ext in VIDEO_EXTENSIONS {
        let p = dir.join(format!("{id}.{ext}"));
        if tokio::fs::metadata(&p).await.is_ok_and(|m| m.is_file()) {
            return Some(p);
        }
    }
    None
}

#[derive(Default)]
struct Tally {
    /// Videos whose own file was found.
    videos: u64,
    imported: u64,
    skipped: u64,
    first_error: String,
}

impl Tally {
    fn skip(&mut self, why: String) {
        if self.skipped == 0 {
            self.first_error = why;
        }
        self.skipped += 1;
    }
}

impl Source for DumpSource {
    fn name(&self) -> &'static str {
        "dump"
    }

    fn pull<'a>(&'a self, ctx: &'a mut RunContext) -> BoxFuture<'a, Result<PullOutcome, SourceError>> {
        Box::pin(self.run(ctx))
    }
}

/// One entry of the Kaggle trending shape.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KaggleVideo {
    #[serde(deserialize_with = "string_or_number")]
    id: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    hashtags: Vec<KaggleTag>,
    #[serde(default)]
    digg_count: i64,
    #[serde(default)]
    share_count: i64,
    #[serde(default)]
    comment_count: i64,
    #[serde(default)]
    play_count: i64,
    #[serde(default)]
    music_meta: Option<KaggleMusic>,
    #[serde(deserialize_with = "seconds")]
    create_time: i64,
    #[serde(default)]
    region: Option<String>,
}

#[derive(Debug, Deserialize)]
struct KaggleTag {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KaggleMusic {
    #[serde(deserialize_with = "string_or_number")]
    music_id: String,
    #[serde(default)]
    music_name: String,
    #[serde(default)]
    music_author: String,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("expected a string or a number, got {other}"))),
    }
}

fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n.as_i64().ok_or_else(|| serde::de::Error::custom("createTime out of range")),
        Value::String(s) => s.trim().parse().map_err(|_| serde::de::Error::custom(format!("createTime `{s}` is not a number"))),
        other => Err(serde::de::Error::custom(format!("createTime: expected seconds, got {other}"))),
    }
}

/// Extra fields a reelq JSON-lines dump may carry beside the Research API's.
#[derive(Debug, Deserialize, Default)]
struct MusicNames {
    #[serde(default)]
    music_name: String,
    #[serde(default)]
    music_author: String,
}

/// Parses one entry; the error says why it is unusable.
pub fn parse_entry(v: Value, format: DumpFormat) -> Result<PulledVideo, String> {
    let kaggle = match format {
        DumpFormat::Kaggle => true,
        DumpFormat::Jsonl => false,
        DumpFormat::Auto => v.get("diggCount").is_some() || v.get("playCount").is_some() || v.get("musicMeta").is_some(),
    };
    let video = if kaggle {
        let k: KaggleVideo = serde_json::from_value(v).map_err(|e| format!("not a Kaggle entry: {e}"))?;
        PulledVideo {
            id: k.id,
            description: k.text,
            region: k.region.map(|r| r.trim().to_ascii_uppercase()).filter(|r| !r.is_empty()),
            create_time: time(k.create_time)?,
            hashtags: tags(k.hashtags.iter().map(|t| t.name.as_str())),
            music: k.music_meta.filter(|m| !m.music_id.is_empty()).map(|m| Music { id: m.music_id, name: m.music_name, author: m.music_author }),
            counts: Counts { views: k.play_count.max(0), likes: k.digg_count.max(0), comments: k.comment_count.max(0), shares: k.share_count.max(0) },
        }
    } else {
        let names: MusicNames = serde_json::from_value(v.clone()).unwrap_or_default();
        let a: ApiVideo = serde_json::from_value(v).map_err(|e| format!("not a video line: {e}"))?;
        PulledVideo {
            id: a.id,
            description: a.video_description.unwrap_or_default(),
            region: a.region_code.map(|r| r.trim().to_ascii_uppercase()).filter(|r| !r.is_empty()),
            create_time: time(a.create_time)?,
            hashtags: tags(a.hashtag_names.iter().flatten().map(String::as_str)),
            music: a.music_id.filter(|m| !m.is_empty()).map(|id| Music { id, name: names.music_name, author: names.music_author }),
            counts: Counts {
                views: a.view_count.unwrap_or(0).max(0),
                likes: a.like_count.unwrap_or(0).max(0),
                comments: a.comment_count.unwrap_or(0).max(0),
                shares: a.share_count.unwrap_or(0).max(0),
            },
        }
    };
    if video.id.is_empty() {
        return Err("empty id".into());
    }
    Ok(video)
}

fn time(secs: i64) -> Result<DateTime<Utc>, String> {
    DateTime::<Utc>::from_timestamp(secs, 0).filter(|t| t.timestamp() > 0).ok_or_else(|| format!("create time {secs} is out of range"))
}

fn tags<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = names.map(normalise_tag).filter(|t| !t.is_empty()).collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_files_are_named_by_their_id() {
        assert_eq!(video_id_of("dumps/2026/7301.mp4"), Some("7301"));
        assert_eq!(video_id_of("7301.MOV"), Some("7301"));
        assert_eq!(video_id_of("dumps/part-1.jsonl"), None);
        assert_eq!(video_id_of("dumps/.mp4"), None);
        assert_eq!(video_id_of("noextension"), None);
    }
    use serde_json::json;

    #[test]
    fn parses_the_kaggle_shape() {
        let v = json!({
            "id": "6900000000000000001", "text": "hello #Dance", "createTime": "1604000000",
            "hashtags": [{"name": "Dance"}, {"name": "fyp"}, {"name": "dance"}],
            "diggCount": 10, "shareCount": 2, "commentCount": 3, "playCount": 1000,
            "musicMeta": {"musicId": "555", "musicName": "Song", "musicAuthor": "Band"},
            "authorMeta": {"name": "ignored"}
        });
        let p = parse_entry(v, DumpFormat::Auto).expect("parses");
        assert_eq!(p.id, "6900000000000000001");
        assert_eq!(p.hashtags, vec!["dance", "fyp"]);
        assert_eq!(p.counts, Counts { views: 1000, likes: 10, comments: 3, shares: 2 });
        assert_eq!(p.music, Some(Music { id: "555".into(), name: "Song".into(), author: "Band".into() }));
        assert_eq!(p.create_time.timestamp(), 1_604_000_000);
    }

    #[test]
    fn parses_research_api_lines_and_refuses_nonsense() {
        let v = json!({"id": 7300000000000000001u64, "create_time": 1700000000, "region_code": "us", "view_count": 5,
                       "music_id": 42, "music_name": "Tune", "hashtag_names": ["#A"]});
        let p = parse_entry(v, DumpFormat::Auto).expect("parses");
        assert_eq!(p.region.as_deref(), Some("US"));
        assert_eq!(p.music.as_ref().map(|m| (m.id.as_str(), m.name.as_str())), Some(("42", "Tune")));
        assert_eq!(p.hashtags, vec!["a"]);
        assert!(parse_entry(json!({"id": "1"}), DumpFormat::Auto).is_err(), "no create time");
        assert!(parse_entry(json!({"playCount": 1, "createTime": 5}), DumpFormat::Auto).is_err(), "no id");
        assert!(parse_entry(json!([1, 2]), DumpFormat::Jsonl).is_err());
    }
}
