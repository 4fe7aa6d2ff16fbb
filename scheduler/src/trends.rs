//! Recomputes the trending-hashtag table, and the wider tags learned from pulled videos, after
//! each pull that stored something (per region and for all regions together for the trends).

use std::collections::BTreeMap;

use sqlx::PgPool;

use reelq_shared::db::{DbError, scraped};
use reelq_shared::engagement::trends::{self, TagCounts, Trend, TrendParams};

use crate::settings::{LinkSettings, TrendSettings};

/// Scores every region and replaces the table. Returns the number of tags stored.
pub async fn refresh(pool: &PgPool, settings: &TrendSettings) -> Result<usize, DbError> {
    let Some(anchor) = scraped::newest_create_time(pool).await? else { return Ok(0) };
    let window = chrono::Duration::hours(i64::try_from(settings.window_hours).unwrap_or(i64::MAX / 7_200_000).min(24 * 365 * 10));
    let recent_start = anchor - window;
    let previous_start = recent_start - window;
    let totals = scraped::window_totals(pool, previous_start, recent_start, anchor).await?;
    let tags = scraped::window_tag_counts(pool, previous_start, recent_start, anchor).await?;

    // Videos without a region count towards "all regions" ("") only.
    let mut region_totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (region, recent, previous) in totals {
        let all = region_totals.entry(String::new()).or_default();
        all.0 += recent;
        all.1 += previous;
        if !region.is_empty() {
            region_totals.insert(region, (recent, previous));
        }
    }
    let mut region_tags: BTreeMap<String, BTreeMap<String, (i64, i64)>> = BTreeMap::new();
    for (region, tag, recent, previous) in tags {
        let all = region_tags.entry(String::new()).or_default().entry(tag.clone()).or_default();
        all.0 += recent;
        all.1 += previous;
        if !region.is_empty() {
            region_tags.entry(region).or_default().insert(tag, (recent, previous));
        }
    }

    let params = TrendParams { smoothing: settings.smoothing, min_support: settings.min_support };
    let mut scored: Vec<(String, Vec<Trend>)> = Vec::new();
    for (region, (recent_total, previous_total)) in region_totals {
        let counts: Vec<TagCounts> = region_tags
            .remove(&region)
            .unwrap_or_default()
            .into_iter()
            .map(|(hashtag, (recent, previous))| TagCounts { hashtag, recent, previous })
            .collect();
        let mut top = trends::score(&counts, recent_total, previous_total, params);
        top.truncate(settings.per_region_limit);
        scored.push((region, top));
    }
    let stored = scored.iter().map(|(_, t)| t.len()).sum();
    let mut conn = pool.acquire().await.map_err(|source| DbError::Query { query: "acquire", source })?;
    scraped::replace_trending(&mut conn, &scored).await?;
    tracing::info!(tags = stored, %anchor, "trending hashtags recomputed");
    Ok(stored)
}

/// Relearns the wider tags of pulled hashtags (`hashtag_links`) from the newest pulled videos.
/// Returns the number of links stored.
pub async fn learn_links(pool: &PgPool, settings: &LinkSettings) -> Result<u64, DbError> {
    let params = scraped::LinkParams {
        posts: settings.posts,
        min_together: settings.min_together,
        min_share: settings.min_share,
        per_tag: settings.per_tag,
        generic: reelq_shared::domain::GENERIC_HASHTAGS.iter().map(|t| t.trim_start_matches('#').to_owned()).collect(),
    };
    let mut conn = pool.acquire().await.map_err(|source| DbError::Query { query: "acquire", source })?;
    let stored = scraped::replace_links(&mut conn, &params).await?;
    tracing::info!(links = stored, "wider hashtags relearned");
    Ok(stored)
}
