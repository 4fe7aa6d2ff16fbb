//! Trending hashtags: a tag trends in a region when its share of the region's recent videos
//! grew against the window before. Shares, not counts, so that a pull that happened to fetch
//! more videos does not make everything trend.
//!
//! `score = ln(((r + α) / (R + α)) / ((p + α) / (P + α)))` with `r`, `p` the tag's videos in the
//! recent and previous windows, `R`, `P` all videos in them, and α an additive smoothing that
//! keeps a tag unseen before from scoring infinity. Tags with fewer than `min_support` recent
//! videos are left out: two videos are an anecdote, not a trend.

/// Counts of one tag in the two windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagCounts {
    /// The hashtag.
    pub hashtag: String,
    /// Videos carrying it in the recent window.
    pub recent: i64,
    /// Videos carrying it in the previous window.
    pub previous: i64,
}

/// Parameters of the score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendParams {
    /// Additive smoothing α.
    pub smoothing: f64,
    /// Least recent videos a tag needs.
    pub min_support: i64,
}

/// A scored tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// The hashtag.
    pub hashtag: String,
    /// Log growth of its share; positive means growing.
    pub score: f64,
    /// Videos in the recent window.
    pub recent: i64,
    /// Videos in the previous window.
    pub previous: i64,
}

/// Scores the tags of one region, best first; `recent_total` and `previous_total` are all
/// videos of the region in each window. Only growing tags (score > 0) are kept.
pub fn score(tags: &[TagCounts], recent_total: i64, previous_total: i64, params: TrendParams) -> Vec<Trend> {
    let a = params.smoothing.max(1e-9);
    let mut out: Vec<Trend> = tags
        .iter()
        .filter(|t| t.recent >= params.min_support.max(1))
        .map(|t| {
            let recent_share = (t.recent as f64 + a) / (recent_total as f64 + a);
            let previous_share = (t.previous as f64 + a) / (previous_total as f64 + a);
            Trend { hashtag: t.hashtag.clone(), score: (recent_share / previous_share).ln(), recent: t.recent, previous: t.previous }
        })
        .filter(|t| t.score > 0.0)
        .collect();
    out.sort_by(|x, y| y.score.total_cmp(&x.score).then(y.recent.cmp(&x.recent)).then(x.hashtag.cmp(&y.hashtag)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tag: &str, recent: i64, previous: i64) -> TagCounts {
        TagCounts { hashtag: tag.into(), recent, previous }
    }

    #[test]
    fn scores_growth_of_share_with_smoothing_and_support() {
        let params = TrendParams { smoothing: 1.0, min_support: 3 };
        // Windows of 9 recent and 19 previous videos.
        // new:    r=4, p=0 → ln((5/10) / (1/20)) = ln(10)
        // steady: r=3, p=7 → ln((4/10) / (8/20)) = ln(1) = 0 → dropped (not growing)
        // rare:   r=2      → below support
        let trends = score(&[t("steady", 3, 7), t("new", 4, 0), t("rare", 2, 0)], 9, 19, params);
        assert_eq!(trends.len(), 1, "{trends:?}");
        assert_eq!(trends[0].hashtag, "new");
        assert!((trends[0].score - 10f64.ln()).abs() < 1e-12, "{}", trends[0].score);
    }

    #[test]
    fn more_videos_alone_do_not_make_a_tag_trend() {
        let params = TrendParams { smoothing: 1.0, min_support: 1 };
        // The same 10 % share in both windows, with ten times the volume recently.
        let trends = score(&[t("flat", 99, 9)], 989, 89, params);
        assert!(trends.is_empty(), "{trends:?}");
    }
}
