//! The song catalogue: tracks with their acoustic fingerprints, and the inverted index of
//! fingerprint keys that proposes candidate (track, offset) pairs for an excerpt. The keys and
//! the verification of candidates are `reelq_media::fingerprint`'s; this module only stores
//! and looks up.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::{DbError, timed};

/// A track to add.
#[derive(Debug, Clone, Default)]
pub struct NewTrack {
    pub title: String,
    pub artist: String,
    /// The audio upload it was fingerprinted from.
    pub video_id: Option<Uuid>,
    /// The pulled sound it is.
    pub music_id: Option<String>,
    pub duration_secs: f32,
    /// Chromaprint items.
    pub fingerprint: Vec<u32>,
}

/// A catalogue track's description.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Track {
    pub id: i64,
    pub title: String,
    pub artist: String,
    /// The pulled sound (TikTok music id) it is, when known.
    pub music_id: Option<String>,
    /// The upload it was fingerprinted from, while that upload exists.
    pub video_id: Option<Uuid>,
    pub duration_secs: f32,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

const TRACK_COLUMNS: &str = "id, title, artist, music_id, video_id, duration_secs, created_at";

/// Items as PostgreSQL stores them: the same 32 bits read as signed.
fn to_db(items: &[u32]) -> Vec<i32> {
    items.iter().map(|&i| i as i32).collect()
}

/// Adds a track with its index keys (`keys` gives each item's keys); returns its id. A track
/// made from the same upload, or of the same pulled sound, is replaced: adding again (a retried
/// job, a better recording) never leaves two.
pub async fn insert(db: &sqlx::PgPool, track: &NewTrack, keys: impl Fn(u32) -> [u32; 2]) -> Result<i64, DbError> {
    let mut tx = timed("songs.begin", db.begin()).await?;
    timed(
        "songs.replace",
        sqlx::query("DELETE FROM tracks WHERE video_id = $1 OR music_id = $2").bind(track.video_id).bind(&track.music_id).execute(&mut *tx),
    )
    .await?;
    let id: i64 = timed(
        "songs.insert_track",
        sqlx::query_scalar(
            r#"INSERT INTO tracks (title, artist, video_id, music_id, duration_secs, fingerprint)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"#,
        )
        .bind(&track.title)
        .bind(&track.artist)
        .bind(track.video_id)
        .bind(&track.music_id)
        .bind(track.duration_secs)
        .bind(to_db(&track.fingerprint))
        .fetch_one(&mut *tx),
    )
    .await?;
    let (mut ks, mut positions) = (Vec::with_capacity(track.fingerprint.len() * 2), Vec::with_capacity(track.fingerprint.len() * 2));
    for (pos, &item) in track.fingerprint.iter().enumerate() {
        for k in keys(item) {
            ks.push(k as i32);
            positions.push(pos as i32);
        }
    }
    timed(
        "songs.insert_keys",
        sqlx::query("INSERT INTO track_keys (key, track_id, position) SELECT k, $1, p FROM unnest($2::int[], $3::int[]) AS u(k, p)")
            .bind(id)
            .bind(&ks)
            .bind(&positions)
            .execute(&mut *tx),
    )
    .await?;
    timed("songs.commit", tx.commit()).await?;
    Ok(id)
}

/// The (track, offset in items) pairs most of an excerpt's keys point to, best first, with at
/// least two votes. `keys` are the excerpt's keys and `positions` the item each belongs to.
pub async fn candidates(db: impl PgExecutor<'_>, keys: &[u32], positions: &[i32], limit: i64) -> Result<Vec<(i64, i64, i64)>, DbError> {
    let keys: Vec<i32> = keys.iter().map(|&k| k as i32).collect();
    timed(
        "songs.candidates",
        sqlx::query_as(
            r#"SELECT t.track_id, (t.position - q.p)::bigint AS "offset", count(*) AS votes
               FROM unnest($1::int[], $2::int[]) AS q(k, p) JOIN track_keys t ON t.key = q.k
               GROUP BY 1, 2 HAVING count(*) >= 2
               ORDER BY votes DESC, 1, 2 LIMIT $3"#,
        )
        .bind(&keys)
        .bind(positions)
        .bind(limit)
        .fetch_all(db),
    )
    .await
}

/// The fingerprints of these tracks.
pub async fn fingerprints(db: impl PgExecutor<'_>, ids: &[i64]) -> Result<Vec<(i64, Vec<u32>)>, DbError> {
    let rows: Vec<(i64, Vec<i32>)> =
        timed("songs.fingerprints", sqlx::query_as("SELECT id, fingerprint FROM tracks WHERE id = ANY ($1)").bind(ids).fetch_all(db)).await?;
    Ok(rows.into_iter().map(|(id, items)| (id, items.into_iter().map(|i| i as u32).collect())).collect())
}

/// A track's description.
pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Track>, DbError> {
    let sql = format!("SELECT {TRACK_COLUMNS} FROM tracks WHERE id = $1");
    timed("songs.get", sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(db)).await
}

/// Tracks newest first, `limit` from after the track `before` (an id), with the catalogue's
/// size.
pub async fn list(db: &sqlx::PgPool, before: Option<i64>, limit: i64) -> Result<(Vec<Track>, i64), DbError> {
    let sql = format!("SELECT {TRACK_COLUMNS} FROM tracks WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2");
    let tracks = timed("songs.list", sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(before).bind(limit).fetch_all(db)).await?;
    let total = timed("songs.count", sqlx::query_scalar("SELECT count(*) FROM tracks").fetch_one(db)).await?;
    Ok((tracks, total))
}

/// Removes a track and its keys; whether there was one.
pub async fn delete(db: impl PgExecutor<'_>, id: i64) -> Result<bool, DbError> {
    Ok(timed("songs.delete", sqlx::query("DELETE FROM tracks WHERE id = $1").bind(id).execute(db)).await?.rows_affected() == 1)
}

/// A pulled sound's name and author, if it was pulled.
pub async fn pulled_sound(db: impl PgExecutor<'_>, music_id: &str) -> Result<Option<(String, String)>, DbError> {
    timed("songs.pulled_sound", sqlx::query_as("SELECT name, author FROM music WHERE id = $1").bind(music_id).fetch_optional(db)).await
}

/// The stored file of a pulled video that uses `music_id` (the earliest posted: on TikTok a
/// sound is first heard in the video that made it), if a dump brought one.
pub async fn pulled_audio_key(db: impl PgExecutor<'_>, music_id: &str) -> Result<Option<String>, DbError> {
    timed(
        "songs.pulled_audio_key",
        sqlx::query_scalar("SELECT video_key FROM scraped_videos WHERE music_id = $1 AND video_key IS NOT NULL ORDER BY create_time, id LIMIT 1")
            .bind(music_id)
            .fetch_optional(db),
    )
    .await
}

/// Pulled sounds not yet in the catalogue whose audio a dump brought, most used first.
pub async fn pulled_sounds_missing(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<String>, DbError> {
    timed(
        "songs.pulled_sounds_missing",
        sqlx::query_scalar(
            r#"SELECT v.music_id FROM scraped_videos v
               WHERE v.music_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tracks t WHERE t.music_id = v.music_id)
               GROUP BY v.music_id HAVING bool_or(v.video_key IS NOT NULL)
               ORDER BY count(*) DESC, v.music_id LIMIT $1"#,
        )
        .bind(limit)
        .fetch_all(db),
    )
    .await
}
