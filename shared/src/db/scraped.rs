//! Videos pulled from TikTok (the Research API or imported dumps), their engagement snapshots
//! and music, and the trending hashtags computed from them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;

use super::{DbError, timed};
use crate::engagement::Counts;
use crate::engagement::music::MusicUse;
use crate::engagement::trends::Trend;

/// A sound, as a source reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Music {
    /// TikTok music id.
    pub id: String,
    /// Title; empty when the source does not say.
    pub name: String,
    /// Author; empty when the source does not say.
    pub author: String,
}

/// One video as a source reports it, already normalised (hashtags lower case without '#',
/// region upper case).
#[derive(Debug, Clone, PartialEq)]
pub struct PulledVideo {
    /// TikTok video id.
    pub id: String,
    /// Caption.
    pub description: String,
    /// Region code, when known.
    pub region: Option<String>,
    /// When it was posted.
    pub create_time: DateTime<Utc>,
    /// Hashtags.
    pub hashtags: Vec<String>,
    /// Its sound: the id alone (the Research API) or with name and author (dumps).
    pub music: Option<Music>,
    /// Counters at the time of the pull.
    pub counts: Counts,
}

/// Upserts a batch of videos, their music and one snapshot each (taken at `taken_at`) in one
/// transaction. Pulling the same video twice at the same instant stores one snapshot.
pub async fn upsert_batch(conn: &mut PgConnection, videos: &[PulledVideo], source: &str, taken_at: DateTime<Utc>) -> Result<(), DbError> {
    use sqlx::Connection as _;
    let mut tx = timed("scraped.begin", conn.begin()).await?;
    for v in videos {
        if let Some(m) = &v.music {
            // A later pull without a name must not erase the one a dump gave.
            timed(
                "music.upsert",
                sqlx::query!(
                    r#"INSERT INTO music (id, name, author) VALUES ($1, $2, $3)
                       ON CONFLICT (id) DO UPDATE SET
                           name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE music.name END,
                           author = CASE WHEN EXCLUDED.author <> '' THEN EXCLUDED.author ELSE music.author END,
                           updated_at = now()"#,
                    m.id,
                    m.name,
                    m.author
                )
                .execute(&mut *tx),
            )
            .await?;
        }
        timed(
            "scraped_videos.upsert",
            sqlx::query!(
                r#"INSERT INTO scraped_videos (id, description, region, create_time, hashtags, music_id, source)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (id) DO UPDATE SET
                       description = EXCLUDED.description,
                       region = COALESCE(EXCLUDED.region, scraped_videos.region),
                       create_time = EXCLUDED.create_time,
                       hashtags = EXCLUDED.hashtags,
                       music_id = COALESCE(EXCLUDED.music_id, scraped_videos.music_id),
                       source = EXCLUDED.source,
                       updated_at = now()"#,
                v.id,
                v.description,
                v.region,
                v.create_time,
                &v.hashtags,
                v.music.as_ref().map(|m| m.id.as_str()),
                source
            )
            .execute(&mut *tx),
        )
        .await?;
        timed(
            "video_snapshots.insert",
            sqlx::query!(
                r#"INSERT INTO video_snapshots (video_id, taken_at, views, likes, comments, shares)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (video_id, taken_at) DO UPDATE SET
                       views = EXCLUDED.views, likes = EXCLUDED.likes, comments = EXCLUDED.comments, shares = EXCLUDED.shares"#,
                v.id,
                taken_at,
                v.counts.views.max(0),
                v.counts.likes.max(0),
                v.counts.comments.max(0),
                v.counts.shares.max(0)
            )
            .execute(&mut *tx),
        )
        .await?;
    }
    timed("scraped.commit", tx.commit()).await
}

/// Records the object keys of pulled videos' own files (`(video id, key)` pairs); ids not
/// stored are ignored. Returns how many videos were updated.
pub async fn set_video_keys(db: impl PgExecutor<'_>, pairs: &[(String, String)]) -> Result<u64, DbError> {
    if pairs.is_empty() {
        return Ok(0);
    }
    let (ids, keys): (Vec<String>, Vec<String>) = pairs.iter().cloned().unzip();
    timed(
        "scraped_videos.set_video_keys",
        sqlx::query("UPDATE scraped_videos v SET video_key = u.key FROM unnest($1::text[], $2::text[]) AS u(id, key) WHERE v.id = u.id")
            .bind(&ids)
            .bind(&keys)
            .execute(db),
    )
    .await
    .map(|r| r.rows_affected())
}

/// The object keys of those of `ids` that have their own file.
pub async fn video_keys(db: impl PgExecutor<'_>, ids: &[String]) -> Result<Vec<(String, String)>, DbError> {
    timed(
        "scraped_videos.video_keys",
        sqlx::query_as::<_, (String, String)>("SELECT id, video_key FROM scraped_videos WHERE id = ANY($1) AND video_key IS NOT NULL")
            .bind(ids)
            .fetch_all(db),
    )
    .await
}

/// Number of pulled videos.
pub async fn count_videos(db: impl PgExecutor<'_>) -> Result<i64, DbError> {
    timed("scraped_videos.count", sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM scraped_videos"#).fetch_one(db)).await
}

/// Latest counters of up to `limit` pulled videos, newest posts first: the population the
/// virality model is fitted on and percentiles are taken against.
pub async fn latest_counts(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<Counts>, DbError> {
    let rows = timed(
        "video_snapshots.latest",
        sqlx::query!(
            r#"SELECT s.views, s.likes, s.comments, s.shares
               FROM scraped_videos v
               JOIN LATERAL (SELECT * FROM video_snapshots s WHERE s.video_id = v.id ORDER BY taken_at DESC LIMIT 1) s ON true
               ORDER BY v.create_time DESC
               LIMIT $1"#,
            limit
        )
        .fetch_all(db),
    )
    .await?;
    Ok(rows.into_iter().map(|r| Counts { views: r.views, likes: r.likes, comments: r.comments, shares: r.shares }).collect())
}

/// Uses of sounds by pulled videos carrying any of `hashtags` (in `region` when given), with
/// each video's latest counters: the input of [`crate::engagement::music::rank`].
pub async fn music_uses(db: impl PgExecutor<'_>, hashtags: &[String], region: Option<&str>, max_videos: i64) -> Result<Vec<MusicUse>, DbError> {
    let rows = timed(
        "scraped.music_uses",
        sqlx::query!(
            r#"SELECT v.music_id AS "music_id!", COALESCE(m.name, '') AS "name!", COALESCE(m.author, '') AS "author!",
                      v.create_time, s.views, s.likes, s.comments, s.shares
               FROM scraped_videos v
               JOIN LATERAL (SELECT * FROM video_snapshots s WHERE s.video_id = v.id ORDER BY taken_at DESC LIMIT 1) s ON true
               LEFT JOIN music m ON m.id = v.music_id
               WHERE v.hashtags && $1 AND v.music_id IS NOT NULL AND ($2::text IS NULL OR v.region = $2)
               ORDER BY v.create_time DESC
               LIMIT $3"#,
            hashtags,
            region,
            max_videos
        )
        .fetch_all(db),
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| MusicUse {
            music_id: r.music_id,
            name: r.name,
            author: r.author,
            create_time: r.create_time,
            counts: Counts { views: r.views, likes: r.likes, comments: r.comments, shares: r.shares },
        })
        .collect())
}

/// Posting time of the newest pulled video: the anchor of the trend windows, so that a dump of
/// last year's videos still yields last year's trends.
pub async fn newest_create_time(db: impl PgExecutor<'_>) -> Result<Option<DateTime<Utc>>, DbError> {
    timed("scraped.newest", sqlx::query_scalar!("SELECT max(create_time) FROM scraped_videos").fetch_one(db)).await
}

/// Per region (`''` when unknown), videos in the recent window `(recent_start, anchor]` and in
/// the previous window `(previous_start, recent_start]`.
pub async fn window_totals(
    db: impl PgExecutor<'_>,
    previous_start: DateTime<Utc>,
    recent_start: DateTime<Utc>,
    anchor: DateTime<Utc>,
) -> Result<Vec<(String, i64, i64)>, DbError> {
    let rows = timed(
        "scraped.window_totals",
        sqlx::query!(
            r#"SELECT COALESCE(region, '') AS "region!",
                      count(*) FILTER (WHERE create_time > $2) AS "recent!",
                      count(*) FILTER (WHERE create_time <= $2) AS "previous!"
               FROM scraped_videos
               WHERE create_time > $1 AND create_time <= $3
               GROUP BY 1"#,
            previous_start,
            recent_start,
            anchor
        )
        .fetch_all(db),
    )
    .await?;
    Ok(rows.into_iter().map(|r| (r.region, r.recent, r.previous)).collect())
}

/// Per region and hashtag, videos in the two windows of [`window_totals`].
pub async fn window_tag_counts(
    db: impl PgExecutor<'_>,
    previous_start: DateTime<Utc>,
    recent_start: DateTime<Utc>,
    anchor: DateTime<Utc>,
) -> Result<Vec<(String, String, i64, i64)>, DbError> {
    let rows = timed(
        "scraped.window_tag_counts",
        sqlx::query!(
            r#"SELECT COALESCE(v.region, '') AS "region!", t.tag AS "tag!",
                      count(*) FILTER (WHERE v.create_time > $2) AS "recent!",
                      count(*) FILTER (WHERE v.create_time <= $2) AS "previous!"
               FROM scraped_videos v, unnest(v.hashtags) AS t(tag)
               WHERE v.create_time > $1 AND v.create_time <= $3
               GROUP BY 1, 2"#,
            previous_start,
            recent_start,
            anchor
        )
        .fetch_all(db),
    )
    .await?;
    Ok(rows.into_iter().map(|r| (r.region, r.tag, r.recent, r.previous)).collect())
}

/// Replaces every region's trending tags with `trends` (region → scored tags), in one
/// transaction, so that readers never see a half-written table.
pub async fn replace_trending(conn: &mut PgConnection, trends: &[(String, Vec<Trend>)]) -> Result<(), DbError> {
    use sqlx::Connection as _;
    let mut tx = timed("trending.begin", conn.begin()).await?;
    timed("trending_hashtags.clear", sqlx::query!("DELETE FROM trending_hashtags").execute(&mut *tx)).await?;
    for (region, tags) in trends {
        for t in tags {
            timed(
                "trending_hashtags.insert",
                sqlx::query!(
                    r#"INSERT INTO trending_hashtags (region, hashtag, score, recent_count, previous_count)
                       VALUES ($1, $2, $3, $4, $5)"#,
                    region,
                    t.hashtag,
                    t.score,
                    i32::try_from(t.recent).unwrap_or(i32::MAX),
                    i32::try_from(t.previous).unwrap_or(i32::MAX)
                )
                .execute(&mut *tx),
            )
            .await?;
        }
    }
    timed("trending.commit", tx.commit()).await
}

/// A trending hashtag as readers see it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TrendingTag {
    /// The hashtag, lower case, without '#'.
    pub hashtag: String,
    /// Region code, or `""` for all regions together.
    pub region: String,
    /// Log growth of the tag's share of recent videos; higher trends harder.
    pub score: f64,
    /// Videos with the tag in the recent window.
    pub recent_count: i32,
    /// Videos with the tag in the window before.
    pub previous_count: i32,
    /// When the score was computed.
    pub computed_at: DateTime<Utc>,
}

/// The hashtags pulled videos carry most, with how many carry each: tags used at least
/// `min_count` times, at most `limit`, most used first. The worker's hashtag vocabulary grows
/// with them.
pub async fn frequent_hashtags(db: impl PgExecutor<'_>, min_count: i64, limit: i64) -> Result<Vec<(String, i64)>, DbError> {
    timed(
        "scraped.frequent_hashtags",
        sqlx::query_as(
            r#"SELECT t, count(*) FROM scraped_videos, unnest(hashtags) AS t
               GROUP BY t HAVING count(*) >= $1 ORDER BY count(*) DESC, t LIMIT $2"#,
        )
        .bind(min_count)
        .bind(limit)
        .fetch_all(db),
    )
    .await
}

/// The current trending tags of `region` (`None`: all regions together), best first. The
/// worker's hashtag vocabulary reads this.
pub async fn trending(db: impl PgExecutor<'_>, region: Option<&str>, limit: i64) -> Result<Vec<TrendingTag>, DbError> {
    timed(
        "trending_hashtags.list",
        sqlx::query_as!(
            TrendingTag,
            r#"SELECT hashtag, region, score, recent_count, previous_count, computed_at FROM trending_hashtags
               WHERE region = COALESCE($1, '')
               ORDER BY score DESC, recent_count DESC, hashtag
               LIMIT $2"#,
            region,
            limit
        )
        .fetch_all(db),
    )
    .await
}

/// How [`replace_links`] learns wider tags from pulled posts.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkParams {
    /// The newest pulled posts read.
    pub posts: i64,
    /// Least posts a tag and its wider tag must share.
    pub min_together: i64,
    /// Least share of a tag's posts that carry the wider tag too.
    pub min_share: f64,
    /// Most wider tags kept per tag, those carried most often with it first.
    pub per_tag: i64,
    /// Tags that fit any post (without `#`): never a wider tag.
    pub generic: Vec<String>,
}

/// A wider tag learned from pulled posts.
#[derive(Debug, Clone, PartialEq)]
pub struct HashtagLink {
    /// The tag, lower case without `#`.
    pub hashtag: String,
    /// A tag more posts carry, carried by at least `min_share` of the tag's posts.
    pub wider: String,
    /// Posts carrying both.
    pub together: i32,
    /// The share of the tag's posts that carry the wider tag.
    pub share: f64,
}

/// Relearns the wider tags from the newest pulled posts and replaces the table in one
/// transaction: for each tag, the tags carried by at least `min_share` of its posts (and at
/// least `min_together` of them) that more posts carry overall, the `per_tag` most carried with
/// it. Returns how many links it stored.
pub async fn replace_links(conn: &mut PgConnection, p: &LinkParams) -> Result<u64, DbError> {
    use sqlx::Connection as _;
    let mut tx = timed("hashtag_links.begin", conn.begin()).await?;
    timed("hashtag_links.clear", sqlx::query("DELETE FROM hashtag_links").execute(&mut *tx)).await?;
    let stored = timed(
        "hashtag_links.learn",
        sqlx::query(
            // Each post's tags with their use counts are paired within the post (no join, so
            // the plan stays linear in the posts read: 17 s for 100,000 posts of 8 tags).
            r#"WITH newest AS (
                   SELECT id, hashtags FROM scraped_videos ORDER BY create_time DESC NULLS LAST, id LIMIT $1
               ),
               tags AS (SELECT DISTINCT n.id, t.tag FROM newest n, unnest(n.hashtags) AS t(tag)),
               counted AS (SELECT id, tag, count(*) OVER (PARTITION BY tag) AS n FROM tags),
               posts AS (SELECT id, array_agg(tag) AS tags, array_agg(n) AS uses FROM counted WHERE n >= $2 GROUP BY id),
               pairs AS (
                   SELECT a.tag, a.n, b.tag AS wider, count(*) AS together
                   FROM posts p, unnest(p.tags, p.uses) AS a(tag, n), unnest(p.tags, p.uses) AS b(tag, n)
                   WHERE b.n > a.n AND NOT (b.tag = ANY($5))
                   GROUP BY a.tag, a.n, b.tag
                   HAVING count(*) >= $2
               ),
               kept AS (
                   SELECT tag, wider, together, together::float8 / n AS share,
                          row_number() OVER (PARTITION BY tag ORDER BY together DESC, wider) AS k
                   FROM pairs
                   WHERE together::float8 / n >= $3
               )
               INSERT INTO hashtag_links (hashtag, wider, together, share)
               SELECT tag, wider, together, share FROM kept WHERE k <= $4"#,
        )
        .bind(p.posts)
        .bind(p.min_together)
        .bind(p.min_share)
        .bind(p.per_tag)
        .bind(&p.generic)
        .execute(&mut *tx),
    )
    .await?
    .rows_affected();
    timed("hashtag_links.commit", tx.commit()).await?;
    Ok(stored)
}

/// The wider tags learned from pulled posts, at most `limit`, those carried most often first.
/// The worker's hashtag vocabulary links them.
pub async fn links(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<HashtagLink>, DbError> {
    let rows: Vec<(String, String, i32, f64)> = timed(
        "hashtag_links.list",
        sqlx::query_as("SELECT hashtag, wider, together, share FROM hashtag_links ORDER BY together DESC, hashtag, wider LIMIT $1")
            .bind(limit)
            .fetch_all(db),
    )
    .await?;
    Ok(rows.into_iter().map(|(hashtag, wider, together, share)| HashtagLink { hashtag, wider, together, share }).collect())
}
