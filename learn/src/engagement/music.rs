//! Music that fits a set of hashtags: the sounds used by pulled videos carrying those hashtags,
//! ranked by the engagement those videos earned, `Σviews + 2·Σlikes + 3·Σcomments + 4·Σshares`
//! over each video's latest snapshot. Rarer, more deliberate interactions weigh more.
//!
//! With a half-life, a video's contribution is multiplied by `0.5^(age / half_life)`, so that a
//! sound that was big last year does not outrank one that is big this week.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Counts;

/// One pulled video's use of a sound.
#[derive(Debug, Clone, PartialEq)]
pub struct MusicUse {
    /// TikTok music id.
    pub music_id: String,
    /// Title, when known.
    pub name: String,
    /// Author, when known.
    pub author: String,
    /// When the video was posted.
    pub create_time: DateTime<Utc>,
    /// The video's latest counters.
    pub counts: Counts,
}

/// A ranked sound.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct MusicScore {
    /// TikTok music id.
    pub music_id: String,
    /// Title, when known.
    pub name: String,
    /// Author, when known.
    pub author: String,
    /// Weighted engagement; higher is better.
    pub score: f64,
    /// Pulled videos that use it.
    pub videos: u32,
}

/// Engagement weight of one video's counters.
pub fn engagement(c: &Counts) -> f64 {
    c.views as f64 + 2.0 * c.likes as f64 + 3.0 * c.comments as f64 + 4.0 * c.shares as f64
}

/// Ranks the sounds of `uses`, best first, at most `limit`. `half_life` (if any) decays each
/// video's weight by its age at `now`; videos from the future count as new. Ties go to the
/// sound used by more videos, then to the smaller id, so the order is stable.
pub fn rank(uses: &[MusicUse], half_life: Option<chrono::Duration>, now: DateTime<Utc>, limit: usize) -> Vec<MusicScore> {
    let mut by_id: HashMap<&str, MusicScore> = HashMap::new();
    for u in uses {
        let decay = match half_life {
            Some(h) if h > chrono::Duration::zero() => {
                let age = (now - u.create_time).num_milliseconds().max(0) as f64;
                0.5f64.powf(age / h.num_milliseconds() as f64)
            }
            _ => 1.0,
        };
        let entry = by_id.entry(u.music_id.as_str()).or_insert_with(|| MusicScore {
            music_id: u.music_id.clone(),
            name: u.name.clone(),
            author: u.author.clone(),
            score: 0.0,
            videos: 0,
        });
        entry.score += decay * engagement(&u.counts);
        entry.videos += 1;
    }
    let mut out: Vec<MusicScore> = by_id.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.videos.cmp(&a.videos)).then(a.music_id.cmp(&b.music_id)));
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(id: &str, days_old: i64, views: i64, likes: i64, comments: i64, shares: i64) -> MusicUse {
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("valid");
        MusicUse {
            music_id: id.into(),
            name: format!("song {id}"),
            author: "someone".into(),
            create_time: now - chrono::Duration::days(days_old),
            counts: Counts { views, likes, comments, shares },
        }
    }

    #[test]
    fn sums_weighted_engagement_per_sound() {
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("valid");
        let uses = vec![
            used("a", 0, 100, 10, 1, 1), // 100 + 20 + 3 + 4 = 127
            used("a", 0, 10, 0, 0, 0),   // 10 → a = 137
            used("b", 0, 50, 20, 10, 5), // 50 + 40 + 30 + 20 = 140
        ];
        let r = rank(&uses, None, now, 10);
        assert_eq!(r.iter().map(|m| m.music_id.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(r[0].score, 140.0);
        assert_eq!(r[1].score, 137.0);
        assert_eq!(r[1].videos, 2);
        assert_eq!(rank(&uses, None, now, 1).len(), 1);
    }

    #[test]
    fn half_life_favours_recent_use() {
        let now = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).expect("valid");
        // Old "a" has 4× the engagement of new "b", but is three half-lives old: 400/8 = 50 < 100.
        let uses = vec![used("a", 21, 400, 0, 0, 0), used("b", 0, 100, 0, 0, 0)];
        let r = rank(&uses, Some(chrono::Duration::days(7)), now, 10);
        assert_eq!(r[0].music_id, "b");
        assert!((r[1].score - 50.0).abs() < 1e-9, "{}", r[1].score);
        assert_eq!(rank(&uses, None, now, 10)[0].music_id, "a");
    }
}
