//! The virality score, its log-scale training target, percentiles among pulled videos, and
//! the correlations used to fit and to evaluate it.
//!
//! ```text
//! virality = views + (1 − ρ(views, likes))·likes + (1 − ρ(views, comments))·comments
//!                  + (1 − ρ(views, shares))·shares
//! ```
//! with Pearson correlations ρ measured over the pulled snapshot set: an interaction that merely
//! follows views adds little, one that says more than views do adds more.
//!
//! [`regressor`] learns to predict the log-scale target (and views) from a video's features.

pub mod regressor;

pub use regressor::{
    Estimate, REGRESSOR_FORMAT, RegressorError, RegressorEvaluation, RegressorOptions, Sample, ViewRange, ViralityRegressor, quantile_rank, split_by_time,
    train,
};

use super::Counts;

/// Pearson correlations of likes, comments and shares with views over a population.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ViralityModel {
    /// ρ(views, likes).
    pub corr_likes: f64,
    /// ρ(views, comments).
    pub corr_comments: f64,
    /// ρ(views, shares).
    pub corr_shares: f64,
}

impl ViralityModel {
    /// Measures the correlations over `population`. A correlation that cannot be measured
    /// (fewer than two videos, or a constant column) counts as 0, so that the interaction
    /// keeps its full weight rather than vanishing.
    pub fn fit(population: &[Counts]) -> Self {
        let views: Vec<f64> = population.iter().map(|c| c.views as f64).collect();
        let column = |f: fn(&Counts) -> i64| -> f64 {
            let ys: Vec<f64> = population.iter().map(|c| f(c) as f64).collect();
            pearson(&views, &ys).unwrap_or(0.0)
        };
        Self { corr_likes: column(|c| c.likes), corr_comments: column(|c| c.comments), corr_shares: column(|c| c.shares) }
    }

    /// The virality of one video.
    pub fn score(&self, c: &Counts) -> f64 {
        c.views as f64
            + (1.0 - self.corr_likes) * c.likes as f64
            + (1.0 - self.corr_comments) * c.comments as f64
            + (1.0 - self.corr_shares) * c.shares as f64
    }

    /// The log-scale regression target of one video, `ln(1 + virality)`.
    pub fn target(&self, c: &Counts) -> f64 {
        log_target(self.score(c))
    }
}

/// `ln(1 + v)`: compresses the heavy tail of virality into a range a regressor can fit.
/// Negative inputs (impossible for real counts) are clamped to 0.
pub fn log_target(virality: f64) -> f64 {
    virality.max(0.0).ln_1p()
}

/// Pearson correlation; `None` for fewer than two pairs, unequal lengths, or a constant series.
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    if xs.len() != ys.len() || xs.len() < 2 {
        return None;
    }
    let n = xs.len() as f64;
    let mx = xs.iter().sum::<f64>() / n;
    let my = ys.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        let (dx, dy) = (x - mx, y - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Spearman rank correlation (Pearson over ranks, ties sharing their average rank), for
/// evaluating a predictor of virality by the order it puts videos in.
pub fn spearman(xs: &[f64], ys: &[f64]) -> Option<f64> {
    if xs.len() != ys.len() {
        return None;
    }
    pearson(&ranks(xs), &ranks(ys))
}

/// 1-based ranks, ties getting the mean of the ranks they span. NaNs sort last.
fn ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut out = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Percentile (0–100) of `value` among `population`: the share of the population at or below
/// it, ties counted half, so that the median of a population sits at 50. `None` for an empty
/// population.
pub fn percentile(value: f64, population: &[f64]) -> Option<f64> {
    if population.is_empty() {
        return None;
    }
    let below = population.iter().filter(|&&p| p < value).count() as f64;
    let equal = population.iter().filter(|&&p| p == value).count() as f64;
    Some(100.0 * (below + 0.5 * equal) / population.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(views: i64, likes: i64, comments: i64, shares: i64) -> Counts {
        Counts { views, likes, comments, shares }
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    // Three videos, worked by hand:
    //   views    = 100, 200, 300   (mean 200, deviations −100, 0, 100; Σd² = 20 000)
    //   likes    = 10, 20, 30      → exactly proportional: ρ = 1
    //   comments = 5, 1, 3         (mean 3, deviations 2, −2, 0; Σd² = 8)
    //              Σ dv·dc = −200 + 0 + 0 = −200 → ρ = −200 / (√20 000 · √8) = −200/400 = −0.5
    //   shares   = 1, 1, 1         → constant: ρ unmeasurable, counts as 0
    fn population() -> Vec<Counts> {
        vec![c(100, 10, 5, 1), c(200, 20, 1, 1), c(300, 30, 3, 1)]
    }

    #[test]
    fn correlations_match_hand_computation() {
        let m = ViralityModel::fit(&population());
        close(m.corr_likes, 1.0);
        close(m.corr_comments, -0.5);
        close(m.corr_shares, 0.0);
    }

    #[test]
    fn virality_weights_interactions_by_how_little_they_follow_views() {
        let m = ViralityModel::fit(&population());
        // 100 + (1−1)·10 + (1+0.5)·5 + (1−0)·1 = 100 + 0 + 7.5 + 1 = 108.5
        close(m.score(&c(100, 10, 5, 1)), 108.5);
        // 200 + 0 + 1.5·1 + 1 = 202.5
        close(m.score(&c(200, 20, 1, 1)), 202.5);
        close(m.target(&c(100, 10, 5, 1)), 109.5f64.ln());
        close(log_target(0.0), 0.0);
        close(log_target(-3.0), 0.0);
    }

    #[test]
    fn pearson_refuses_what_it_cannot_measure() {
        assert_eq!(pearson(&[1.0], &[2.0]), None);
        assert_eq!(pearson(&[1.0, 2.0], &[2.0]), None);
        assert_eq!(pearson(&[1.0, 1.0], &[2.0, 3.0]), None);
        close(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).expect("defined"), -1.0);
    }

    #[test]
    fn spearman_uses_average_ranks_for_ties() {
        // xs ranks: 1, 2.5, 2.5, 4 ; ys ranks: 1, 2, 3, 4.
        // mean 2.5 each; dx = −1.5, 0, 0, 1.5 ; dy = −1.5, −0.5, 0.5, 1.5
        // Σdxdy = 2.25 + 2.25 = 4.5 ; Σdx² = 4.5 ; Σdy² = 5 → ρ = 4.5/√22.5 = 0.948683…
        let r = spearman(&[10.0, 20.0, 20.0, 40.0], &[1.0, 2.0, 3.0, 4.0]).expect("defined");
        close(r, 4.5 / 22.5f64.sqrt());
        // A monotone but non-linear relation is a perfect rank correlation.
        close(spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 8.0, 27.0, 1000.0]).expect("defined"), 1.0);
    }

    #[test]
    fn percentile_counts_ties_half() {
        let pop = [1.0, 2.0, 3.0, 4.0];
        close(percentile(2.0, &pop).expect("non-empty"), 37.5); // (1 + 0.5) / 4
        close(percentile(5.0, &pop).expect("non-empty"), 100.0);
        close(percentile(0.0, &pop).expect("non-empty"), 0.0);
        assert_eq!(percentile(1.0, &[]), None);
    }
}
