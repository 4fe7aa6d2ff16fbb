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
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Track {
    pub id: i64,
    pub title: String,
    pub artist: String,
    pub music_id: Option<String>,
    pub duration_secs: f32,
}

/// Items as PostgreSQL stores them: the same 32 bits read as signed.
fn to_db(items: &[u32]) -> Vec<i32> {
    items.iter().map(|&i| i as i32).collect()
}

/// Adds a track with its index keys (`keys` gives each item's keys); returns its id.
pub async fn insert(db: &sqlx::PgPool, track: &NewTrack, keys: impl Fn(u32) -> [u32; 2]) -> Result<i64, DbError> {
    let mut tx = timed("songs.begin", db.begin()).await?;
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
    timed("songs.get", sqlx::query_as("SELECT id, title, artist, music_id, duration_secs FROM tracks WHERE id = $1").bind(id).fetch_optional(db)).await
}
