//! A learned virality regressor: ridge regression from a video's feature vector to its
//! log-scale virality target `ln(1 + virality)` and to `ln(1 + views)`, with an expected view
//! range and a percentile among the pulled videos.
//!
//! The artifact is plain JSON, like the hashtag head's, so that a version can be inspected and
//! diffed by hand:
//!
//! ```json
//! {
//!   "format": "reelq-virality-ridge/1",
//!   "version": "2026-11-23T20:00:00Z-3f2a",
//!   "feature_model": "minilm-l6-v2@1+meta/1", "dim": 390,
//!   "correlations": { "corr_likes": 0.91, "corr_comments": 0.62, "corr_shares": 0.55 },
//!   "weights": [...dim floats...], "bias": 7.1,
//!   "view_weights": [...dim floats...], "view_bias": 6.9,
//!   "view_residuals": [-1.4, 1.2],
//!   "population": [...101 floats, the 0th to 100th percentile of ln(1 + virality)...],
//!   "metrics": { "spearman": 0.41, "spearman_views": 0.40, "train_examples": 80000, "eval_examples": 20000 }
//! }
//! ```
//!
//! The fit solves the ridge normal equations in f64 with a hand-written Cholesky decomposition:
//! one pass over the data accumulates `XᵀX` (upper triangle only) and `Xᵀy` for both targets,
//! so that 100 000 videos × ~390 features fit in a few seconds with no linear-algebra crate.
//! The newest videos (by posting time) are held out and the shipped weights are the ones
//! fitted without them, so that the reported figures describe the shipped model honestly.
//!
//! Pure computation: the caller builds the feature vectors, pulls the counts and stores the
//! artifact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Counts, ViralityModel, log_target, spearman};

/// The format string this code reads and writes.
pub const REGRESSOR_FORMAT: &str = "reelq-virality-ridge/1";

/// The fewest samples [`train`] accepts: fewer cannot both fit and leave a held-out part that
/// says anything.
pub const MIN_SAMPLES: usize = 10;

/// How many quantiles `population` holds: the 0th to the 100th percentile, one per point.
pub const POPULATION_QUANTILES: usize = 101;

/// Rows are centred this many at a time while `XᵀX` is accumulated, so that a block stays in
/// cache while every tile of `XᵀX` sweeps it.
const BLOCK: usize = 64;

/// Side of the square tile of `XᵀX` whose sums are kept in registers while a block is swept
/// (16 sums: half the vector registers of the baseline x86-64 target). [`outer_tile`] is
/// written out for this size.
const TILE: usize = 4;

/// One pulled video for training or evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When the video was posted (unix seconds); the newest are held out for evaluation, as the
    /// model will be asked about videos newer than any it was trained on.
    pub at: i64,
    /// The video's feature vector, built by the worker; opaque here, but every sample of a
    /// training set must have the same length.
    pub features: Vec<f32>,
    /// The engagement counts the targets are computed from.
    pub counts: Counts,
}

/// How to fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegressorOptions {
    /// Ridge penalty added to the diagonal of the centred `XᵀX` (a sum over training rows, not
    /// a mean, so its pull weakens as the data grows); the intercept is not penalised. Keeps the
    /// system solvable when features are collinear or constant.
    pub l2: f64,
    /// Share of the newest samples held out for evaluation, in `(0, 1)`.
    pub holdout: f64,
}

impl Default for RegressorOptions {
    fn default() -> Self {
        Self { l2: 1.0, holdout: 0.2 }
    }
}

impl RegressorOptions {
    fn check(&self) -> Result<(), RegressorError> {
        if !self.l2.is_finite() || self.l2 < 0.0 {
            return Err(RegressorError::Options(format!("l2 must be a finite number ≥ 0, not {}", self.l2)));
        }
        if !(self.holdout > 0.0 && self.holdout < 1.0) {
            return Err(RegressorError::Options(format!("holdout must lie strictly between 0 and 1, not {}", self.holdout)));
        }
        Ok(())
    }
}

/// Why a regressor cannot be trained, loaded or asked.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegressorError {
    /// Fewer samples than [`MIN_SAMPLES`] (the count is given).
    #[error("not enough samples: {0} (need at least {MIN_SAMPLES})")]
    TooFew(usize),
    /// Feature vectors of different lengths, or an artifact whose arrays disagree with its
    /// header.
    #[error("inconsistent feature sizes: {0}")]
    Shape(String),
    /// A NaN or infinite feature or weight.
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// An option out of range.
    #[error("invalid regressor options: {0}")]
    Options(String),
    /// `XᵀX + l2·I` could not be factorised.
    #[error("the normal equations are singular (collinear or constant features with l2 = 0?)")]
    Singular,
    /// The artifact does not parse as this struct.
    #[error("the regressor artifact is not valid JSON: {0}")]
    Json(String),
    /// The artifact's `format` is not [`REGRESSOR_FORMAT`].
    #[error("unsupported regressor format `{0}` (this build reads `{REGRESSOR_FORMAT}`)")]
    Format(String),
}

/// The trained regressor: the artifact the trainer writes, the model registry stores and
/// workers load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViralityRegressor {
    /// Always [`REGRESSOR_FORMAT`]; checked on load so that an old build refuses a new layout.
    pub format: String,
    /// Registry version; estimates name it.
    pub version: String,
    /// What built the feature vectors (e.g. `minilm-l6-v2@1+meta/1`); opaque here, but a worker
    /// must build features the same way for the weights to mean anything.
    pub feature_model: String,
    /// Length of the feature vector.
    pub dim: usize,
    /// The virality formula's correlations, fitted on all samples' counts of this pull, so that
    /// the target the weights learned is the one the percentiles and evaluation use.
    pub correlations: ViralityModel,
    /// Weights of the `ln(1 + virality)` predictor, `dim` long.
    pub weights: Vec<f64>,
    /// Intercept of the `ln(1 + virality)` predictor.
    pub bias: f64,
    /// Weights of the `ln(1 + views)` predictor, `dim` long.
    pub view_weights: Vec<f64>,
    /// Intercept of the `ln(1 + views)` predictor.
    pub view_bias: f64,
    /// The 10th and 90th percentiles of held-out residuals of `ln(1 + views)` (actual −
    /// predicted): added to a prediction they give an 80 % range measured on unseen videos.
    pub view_residuals: (f64, f64),
    /// The 0th to 100th percentiles of `ln(1 + virality)` over all samples, so that a
    /// prediction can be placed among the pulled videos without storing them.
    pub population: Vec<f64>,
    /// Held-out figures by name: at least `spearman`, `spearman_views`, `rmse`, `rmse_views`,
    /// `train_examples` and `eval_examples`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

/// What the regressor says about one video.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Predicted virality, `exp(log_virality) − 1`.
    pub virality: f64,
    /// Predicted `ln(1 + virality)`, clamped at 0 since no real video scores below it.
    pub log_virality: f64,
    /// Where `log_virality` falls among the pulled videos, 0–100 (see [`quantile_rank`]).
    pub percentile: f64,
    /// The expected number of views and an 80 % range around it.
    pub expected_views: ViewRange,
}

/// An expected view count with a range measured from held-out errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRange {
    /// Views at the 10th percentile of held-out errors (never above `expected`).
    pub low: i64,
    /// `exp(predicted ln(1 + views)) − 1`: the model's central (median-like) estimate.
    pub expected: i64,
    /// Views at the 90th percentile of held-out errors (never below `expected`).
    pub high: i64,
}

/// How well a regressor ranks videos it was not trained on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressorEvaluation {
    /// Spearman correlation of predicted against actual `ln(1 + virality)`; 0 when undefined
    /// (fewer than two examples, or constant predictions or actuals).
    pub spearman: f64,
    /// Spearman correlation of predicted against actual `ln(1 + views)`; 0 when undefined.
    pub spearman_views: f64,
    /// How many samples were scored (those whose features fit the model).
    pub examples: usize,
}

/// Sorts `samples` by posting time and splits off the newest `holdout` share for evaluation:
/// at least one sample is held out and, when there are two or more, at least one is kept for
/// training. Returns `(training, held_out)`, both in time order.
pub fn split_by_time(mut samples: Vec<Sample>, holdout: f64) -> (Vec<Sample>, Vec<Sample>) {
    samples.sort_by_key(|s| s.at);
    let n = samples.len();
    let held = match n {
        0 | 1 => n,
        // A NaN or negative share rounds to 0 here and is lifted to 1 by the clamp.
        _ => ((n as f64 * holdout).round() as usize).clamp(1, n - 1),
    };
    let test = samples.split_off(n - held);
    (samples, test)
}

/// Fits the regressor: checks the samples, measures the virality correlations and the
/// population quantiles over all of them, splits by time, fits both ridge predictors on the
/// training part and measures them on the held-out part. The returned artifact carries the
/// held-out figures in `metrics`; its weights are those fitted without the held-out part.
pub fn train(
    version: &str,
    feature_model: &str,
    samples: Vec<Sample>,
    opts: &RegressorOptions,
) -> Result<(ViralityRegressor, RegressorEvaluation), RegressorError> {
    opts.check()?;
    if samples.len() < MIN_SAMPLES {
        return Err(RegressorError::TooFew(samples.len()));
    }
    let dim = samples[0].features.len();
    for (i, s) in samples.iter().enumerate() {
        if s.features.len() != dim {
            return Err(RegressorError::Shape(format!("sample {i} has {} features, the first has {dim}", s.features.len())));
        }
        if let Some(j) = s.features.iter().position(|v| !v.is_finite()) {
            return Err(RegressorError::NonFinite(format!("feature {j} of sample {i} is {}", s.features[j])));
        }
    }

    let counts: Vec<Counts> = samples.iter().map(|s| s.counts).collect();
    let correlations = ViralityModel::fit(&counts);
    let mut all_targets: Vec<f64> = counts.iter().map(|c| correlations.target(c)).collect();
    all_targets.sort_by(f64::total_cmp);
    let population: Vec<f64> = (0..POPULATION_QUANTILES).map(|k| quantile_sorted(&all_targets, k as f64 / (POPULATION_QUANTILES - 1) as f64)).collect();

    let (train_part, held_out) = split_by_time(samples, opts.holdout);
    let rows: Vec<&[f32]> = train_part.iter().map(|s| s.features.as_slice()).collect();
    let y_virality: Vec<f64> = train_part.iter().map(|s| correlations.target(&s.counts)).collect();
    let y_views: Vec<f64> = train_part.iter().map(|s| log_target(s.counts.views as f64)).collect();
    let [(weights, bias), (view_weights, view_bias)] = ridge(&rows, dim, [&y_virality, &y_views], opts.l2)?;

    let mut model = ViralityRegressor {
        format: REGRESSOR_FORMAT.to_owned(),
        version: version.to_owned(),
        feature_model: feature_model.to_owned(),
        dim,
        correlations,
        weights,
        bias,
        view_weights,
        view_bias,
        view_residuals: (0.0, 0.0),
        population,
        metrics: BTreeMap::new(),
    };

    let (mut residuals, mut sq_virality, mut sq_views) = (Vec::with_capacity(held_out.len()), 0.0, 0.0);
    for s in &held_out {
        let (pv, pw) = model.raw(&s.features);
        let actual_views = log_target(s.counts.views as f64);
        residuals.push(actual_views - pw);
        sq_views += (actual_views - pw).powi(2);
        sq_virality += (correlations.target(&s.counts) - pv).powi(2);
    }
    residuals.sort_by(f64::total_cmp);
    model.view_residuals = (quantile_sorted(&residuals, 0.1), quantile_sorted(&residuals, 0.9));
    model.check()?;

    let eval = model.evaluate(&held_out);
    let held = held_out.len().max(1) as f64;
    model.metrics = BTreeMap::from([
        ("spearman".to_owned(), eval.spearman),
        ("spearman_views".to_owned(), eval.spearman_views),
        ("rmse".to_owned(), (sq_virality / held).sqrt()),
        ("rmse_views".to_owned(), (sq_views / held).sqrt()),
        ("train_examples".to_owned(), train_part.len() as f64),
        ("eval_examples".to_owned(), eval.examples as f64),
    ]);
    Ok((model, eval))
}

impl ViralityRegressor {
    /// Parses and checks an artifact.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RegressorError> {
        let model: Self = serde_json::from_slice(bytes).map_err(|e| RegressorError::Json(e.to_string()))?;
        model.check()?;
        Ok(model)
    }

    /// The artifact's bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks the format and that every array has the size the header promises and holds
    /// finite numbers, so that a damaged artifact fails at load rather than at prediction.
    pub fn check(&self) -> Result<(), RegressorError> {
        if self.format != REGRESSOR_FORMAT {
            return Err(RegressorError::Format(self.format.clone()));
        }
        if self.weights.len() != self.dim || self.view_weights.len() != self.dim {
            return Err(RegressorError::Shape(format!(
                "dim is {}, but there are {} weights and {} view weights",
                self.dim,
                self.weights.len(),
                self.view_weights.len()
            )));
        }
        if self.population.len() != POPULATION_QUANTILES {
            return Err(RegressorError::Shape(format!("{} population quantiles, expected {POPULATION_QUANTILES}", self.population.len())));
        }
        let c = &self.correlations;
        let scalars = [self.bias, self.view_bias, self.view_residuals.0, self.view_residuals.1, c.corr_likes, c.corr_comments, c.corr_shares];
        if self.weights.iter().chain(&self.view_weights).chain(&self.population).chain(&scalars).any(|v| !v.is_finite()) {
            return Err(RegressorError::NonFinite("a weight, bias, residual, correlation or quantile".into()));
        }
        if self.population.windows(2).any(|w| w[0] > w[1]) {
            return Err(RegressorError::Shape("population quantiles are not in increasing order".into()));
        }
        if self.view_residuals.0 > self.view_residuals.1 {
            return Err(RegressorError::Shape("the low view residual is above the high one".into()));
        }
        Ok(())
    }

    /// What the model says about one video whose features were built by `feature_model`.
    ///
    /// `log_virality` is clamped at 0; `percentile` interpolates between the population
    /// quantiles (see [`quantile_rank`]); the view range adds the held-out residual
    /// percentiles to the predicted `ln(1 + views)`, and each bound is clamped at 0 views and
    /// ordered around `expected`, so that a one-sided error history collapses that side of the
    /// range onto the estimate rather than producing a range that excludes it.
    pub fn predict(&self, features: &[f32]) -> Result<Estimate, RegressorError> {
        if features.len() != self.dim {
            return Err(RegressorError::Shape(format!("{} features, the model expects {}", features.len(), self.dim)));
        }
        if let Some(j) = features.iter().position(|v| !v.is_finite()) {
            return Err(RegressorError::NonFinite(format!("feature {j} is {}", features[j])));
        }
        let (pv, pw) = self.raw(features);
        let log_virality = pv.max(0.0);
        let views = |log: f64| -> i64 { log.exp_m1().max(0.0).round() as i64 };
        let expected = views(pw);
        Ok(Estimate {
            virality: log_virality.exp_m1(),
            log_virality,
            percentile: quantile_rank(log_virality, &self.population).unwrap_or(50.0),
            expected_views: ViewRange {
                low: views(pw + self.view_residuals.0).min(expected),
                expected,
                high: views(pw + self.view_residuals.1).max(expected),
            },
        })
    }

    /// Scores this model on `held_out`, with the actual targets computed by its own
    /// correlations. Samples whose features do not fit (wrong length, non-finite) are skipped
    /// and not counted.
    pub fn evaluate(&self, held_out: &[Sample]) -> RegressorEvaluation {
        self.evaluate_against(held_out, &self.correlations)
    }

    /// Scores this model on `held_out`, with the actual targets computed by `target`. The
    /// predictions are ranked unclamped, so that videos predicted below zero keep their order
    /// instead of tying at 0. To
    /// compare the current model with a candidate fairly, score both on the candidate's
    /// held-out set against the same `target` (the candidate's correlations, fitted on the
    /// freshest pull), so that neither is judged by a formula the other did not share.
    pub fn evaluate_against(&self, held_out: &[Sample], target: &ViralityModel) -> RegressorEvaluation {
        let usable = held_out.iter().filter(|s| s.features.len() == self.dim && s.features.iter().all(|v| v.is_finite()));
        let (mut pred_v, mut pred_w, mut actual_v, mut actual_w) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for s in usable {
            let (pv, pw) = self.raw(&s.features);
            pred_v.push(pv);
            pred_w.push(pw);
            actual_v.push(target.target(&s.counts));
            actual_w.push(log_target(s.counts.views as f64));
        }
        RegressorEvaluation {
            spearman: spearman(&pred_v, &actual_v).unwrap_or(0.0),
            spearman_views: spearman(&pred_w, &actual_w).unwrap_or(0.0),
            examples: pred_v.len(),
        }
    }

    /// Unclamped predictions of `ln(1 + virality)` and `ln(1 + views)`; the caller has checked
    /// the length.
    fn raw(&self, features: &[f32]) -> (f64, f64) {
        let (mut v, mut w) = (self.bias, self.view_bias);
        for ((x, a), b) in features.iter().zip(&self.weights).zip(&self.view_weights) {
            let x = f64::from(*x);
            v += a * x;
            w += b * x;
        }
        (v, w)
    }
}

/// Percentile (0–100) of `value` against evenly spaced `quantiles` (the 0th, …, 100th
/// percentile when there are 101), interpolated linearly between neighbouring quantiles so the
/// answer moves smoothly with the value rather than in steps of one percent. Below the first
/// quantile it is 0 and above the last 100; where several quantiles equal `value` (a tied
/// population) it is the middle of their span, as [`super::percentile`] counts ties half.
/// `None` for no quantiles.
pub fn quantile_rank(value: f64, quantiles: &[f64]) -> Option<f64> {
    let last = quantiles.len().checked_sub(1)?;
    if last == 0 {
        return Some(if value < quantiles[0] {
            0.0
        } else if value > quantiles[0] {
            100.0
        } else {
            50.0
        });
    }
    let step = 100.0 / last as f64;
    // First quantile ≥ value and first quantile > value: the span between is tied with it.
    let lo = quantiles.partition_point(|&q| q < value);
    let hi = quantiles.partition_point(|&q| q <= value);
    let position = if hi > lo {
        (lo + hi - 1) as f64 / 2.0
    } else if lo == 0 {
        0.0
    } else if lo > last {
        last as f64
    } else {
        let (a, b) = (quantiles[lo - 1], quantiles[lo]);
        (lo - 1) as f64 + (value - a) / (b - a)
    };
    Some(position * step)
}

/// The `p`-quantile (0–1) of sorted `xs`, interpolating linearly between order statistics (the
/// usual "type 7" definition: the median of 1, 2, 3, 4 is 2.5). 0 for an empty slice.
fn quantile_sorted(xs: &[f64], p: f64) -> f64 {
    let Some(last) = xs.len().checked_sub(1) else { return 0.0 };
    let h = last as f64 * p.clamp(0.0, 1.0);
    let i = h.floor() as usize;
    match xs.get(i + 1) {
        Some(next) => xs[i] + (h - i as f64) * (next - xs[i]),
        None => xs[last],
    }
}

/// Ridge regression of each target on `rows` (all `dim` long), with centred features so that
/// the intercept is not penalised: solves `(XcᵀXc + l2·I) w = Xcᵀ(y − ȳ)` and sets
/// `b = ȳ − x̄·w`. The targets share `XᵀX`, so it is accumulated and factorised once.
fn ridge<const T: usize>(rows: &[&[f32]], dim: usize, targets: [&[f64]; T], l2: f64) -> Result<[(Vec<f64>, f64); T], RegressorError> {
    let n = rows.len();
    if n == 0 {
        return Err(RegressorError::TooFew(0));
    }
    let mut means = vec![0.0f64; dim];
    for row in rows {
        for (m, x) in means.iter_mut().zip(*row) {
            *m += f64::from(*x);
        }
    }
    means.iter_mut().for_each(|m| *m /= n as f64);
    let target_means: [f64; T] = targets.map(|y| y.iter().sum::<f64>() / n as f64);

    // `XᵀX` is accumulated over the features padded to a multiple of TILE (the padding stays
    // zero), tile by tile over the upper triangle only; tiles on the diagonal also fill a few
    // cells below it, which the mirroring below overwrites.
    let padded = dim.div_ceil(TILE) * TILE;
    let mut upper = vec![0.0f64; padded * padded];
    let mut xty: [Vec<f64>; T] = std::array::from_fn(|_| vec![0.0f64; dim]);
    // Row-major blocks of centred rows, `padded` wide.
    let mut block = vec![0.0f64; BLOCK * padded];
    let mut yblock = [[0.0f64; BLOCK]; T];
    for start in (0..n).step_by(BLOCK) {
        let len = (n - start).min(BLOCK);
        for (r, row) in rows[start..start + len].iter().enumerate() {
            for ((cell, x), m) in block[r * padded..].iter_mut().zip(*row).zip(&means) {
                *cell = f64::from(*x) - m;
            }
            for ((yb, y), ym) in yblock.iter_mut().zip(&targets).zip(&target_means) {
                yb[r] = y[start + r] - ym;
            }
        }
        let filled = &block[..len * padded];
        for i0 in (0..padded).step_by(TILE) {
            for j0 in (i0..padded).step_by(TILE) {
                let tile = outer_tile(filled, padded, i0, j0);
                for (a, sums) in tile.iter().enumerate() {
                    let cells = &mut upper[(i0 + a) * padded + j0..][..TILE];
                    cells.iter_mut().zip(sums).for_each(|(cell, s)| *cell += s);
                }
            }
        }
        for (acc, yb) in xty.iter_mut().zip(&yblock) {
            for (row, y) in filled.chunks_exact(padded).zip(yb) {
                acc.iter_mut().zip(row).for_each(|(a, x)| *a += x * y);
            }
        }
    }
    let mut xtx = vec![0.0f64; dim * dim];
    for i in 0..dim {
        for j in i..dim {
            xtx[i * dim + j] = upper[i * padded + j];
            xtx[j * dim + i] = upper[i * padded + j];
        }
        xtx[i * dim + i] += l2;
    }
    cholesky(&mut xtx, dim)?;
    Ok(std::array::from_fn(|t| {
        let w = cholesky_solve(&xtx, dim, xty[t].clone());
        let b = target_means[t] - w.iter().zip(&means).map(|(w, m)| w * m).sum::<f64>();
        (w, b)
    }))
}

/// `Σ_r x[r][i0 + a] · x[r][j0 + b]` for a, b in 0..TILE over the rows of `block` (row-major,
/// `width` wide): a register-sized tile of `XᵀX`, so that each value loaded serves TILE
/// multiply-adds and the sums stay in registers for the whole block. Written out by hand
/// because an unoptimised (test) build runs this about ten times faster than nested iterator
/// loops, while an optimised one compiles both to the same vector code.
fn outer_tile(block: &[f64], width: usize, i0: usize, j0: usize) -> [[f64; TILE]; TILE] {
    let mut acc = [[0.0f64; TILE]; TILE];
    let mut start = 0;
    while start < block.len() {
        let (xi, xj) = (&block[start + i0..start + i0 + TILE], &block[start + j0..start + j0 + TILE]);
        start += width;
        acc[0][0] += xi[0] * xj[0];
        acc[0][1] += xi[0] * xj[1];
        acc[0][2] += xi[0] * xj[2];
        acc[0][3] += xi[0] * xj[3];
        acc[1][0] += xi[1] * xj[0];
        acc[1][1] += xi[1] * xj[1];
        acc[1][2] += xi[1] * xj[2];
        acc[1][3] += xi[1] * xj[3];
        acc[2][0] += xi[2] * xj[0];
        acc[2][1] += xi[2] * xj[1];
        acc[2][2] += xi[2] * xj[2];
        acc[2][3] += xi[2] * xj[3];
        acc[3][0] += xi[3] * xj[0];
        acc[3][1] += xi[3] * xj[1];
        acc[3][2] += xi[3] * xj[2];
        acc[3][3] += xi[3] * xj[3];
    }
    acc
}

/// Factorises the symmetric positive-definite row-major `n × n` matrix `a` in place as `L·Lᵀ`
/// (row by row, so each step is a dot product of two contiguous row prefixes), leaving `L` in
/// the lower triangle; only the lower triangle is read, and the upper one is left as it was. A
/// pivot that is not positive, or that keeps less than a 10⁻¹² share of its diagonal after
/// cancellation, means the matrix is singular for practical purposes.
fn cholesky(a: &mut [f64], n: usize) -> Result<(), RegressorError> {
    for i in 0..n {
        let (done, rest) = a.split_at_mut(i * n);
        let row_i = &mut rest[..n];
        for j in 0..i {
            let row_j = &done[j * n..j * n + j + 1];
            let s = row_i[j] - prefix_dot(&row_i[..j], &row_j[..j]);
            row_i[j] = s / row_j[j];
        }
        let diagonal = row_i[i];
        let pivot = diagonal - prefix_dot(&row_i[..i], &row_i[..i]);
        if !pivot.is_finite() || pivot <= 0.0 || pivot <= diagonal.abs() * 1e-12 {
            return Err(RegressorError::Singular);
        }
        row_i[i] = pivot.sqrt();
    }
    Ok(())
}

fn prefix_dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solves `L·Lᵀ x = b` with the factor [`cholesky`] left in `l`: forward, then back
/// substitution.
fn cholesky_solve(l: &[f64], n: usize, mut b: Vec<f64>) -> Vec<f64> {
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * b[k]).sum();
        b[i] = (b[i] - s) / l[i * n + i];
    }
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * b[k]).sum();
        b[i] = (b[i] - s) / l[i * n + i];
    }
    b
}

#[cfg(test)]
mod tests;
