//! Training and evaluating the hashtag head: one-vs-rest logistic regression over the fused
//! embeddings, fitted with Adam on the full data set, then measured on a time-based held-out
//! split with the figures a ranked suggestion list is judged by (P@5, R@5, mAP).
//!
//! Pure computation: the caller gathers examples (from pulled videos, feedback, stored
//! embeddings) and stores the artifact.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{FORMAT, LinearHead, normalised, sigmoid};

/// One labelled video.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// When the video was posted; the split keeps the newest for evaluation.
    pub at: i64,
    pub text: Vec<f32>,
    /// Empty when the video has no image embedding.
    pub image: Vec<f32>,
    /// Indices into the label list.
    pub labels: Vec<usize>,
}

/// How to fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainOptions {
    pub epochs: usize,
    pub learning_rate: f32,
    /// L2 penalty on the weights (not the biases).
    pub l2: f32,
    /// Share of the newest examples held out for evaluation.
    pub holdout: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self { epochs: 60, learning_rate: 0.05, l2: 1e-4, holdout: 0.2 }
    }
}

/// Held-out figures of a ranked suggestion list.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    /// Mean share of the top five that are true tags.
    pub p_at_5: f64,
    /// Mean share of the true tags found in the top five.
    pub r_at_5: f64,
    /// Mean average precision over examples.
    pub map: f64,
    pub examples: usize,
}

impl Evaluation {
    /// As stored with a model version.
    pub fn as_metrics(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("p_at_5".to_owned(), self.p_at_5),
            ("r_at_5".to_owned(), self.r_at_5),
            ("map".to_owned(), self.map),
            ("eval_examples".to_owned(), self.examples as f64),
        ])
    }
}

/// Why training could not run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TrainError {
    #[error("not enough labelled examples: {0} (need at least 10, with some held out)")]
    TooFew(usize),
    #[error("examples disagree on the embedding size: {0}")]
    Shape(String),
    #[error("no labels")]
    NoLabels,
}

/// Identifies the artifact being trained.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadSpec {
    pub version: String,
    pub text_model: String,
    pub image_model: Option<String>,
    pub labels: Vec<String>,
}

/// Splits by time (newest `holdout` share held out), fits on the rest, evaluates on the held-out
/// part, and returns the head (with its figures in `metrics`) and the evaluation.
pub fn train_and_evaluate(spec: &HeadSpec, examples: Vec<Example>, opts: &TrainOptions) -> Result<(LinearHead, Evaluation), TrainError> {
    if examples.len() < 10 {
        return Err(TrainError::TooFew(examples.len()));
    }
    let (examples, test) = split_by_time(examples, opts.holdout);
    let mut head = fit(spec, &examples, opts)?;
    let eval = evaluate(&head, &test);
    head.metrics = eval.as_metrics();
    head.metrics.insert("train_examples".into(), examples.len() as f64);
    Ok((head, eval))
}

/// Fits one logistic regression per label on every example.
pub fn fit(spec: &HeadSpec, examples: &[Example], opts: &TrainOptions) -> Result<LinearHead, TrainError> {
    if spec.labels.is_empty() {
        return Err(TrainError::NoLabels);
    }
    let first = examples.first().ok_or(TrainError::TooFew(0))?;
    let text_dim = first.text.len();
    let image_dim = if spec.image_model.is_some() { examples.iter().map(|e| e.image.len()).max().unwrap_or(0) } else { 0 };
    let width = text_dim + image_dim;
    // Features are built once: normalised text, then normalised image or zeros.
    let mut x = Vec::with_capacity(examples.len() * width);
    for e in examples {
        if e.text.len() != text_dim {
            return Err(TrainError::Shape(format!("text embeddings of {} and {} values", text_dim, e.text.len())));
        }
        x.extend(normalised(&e.text));
        if image_dim > 0 {
            if e.image.len() == image_dim {
                x.extend(normalised(&e.image));
            } else {
                x.extend(std::iter::repeat_n(0.0, image_dim));
            }
        }
    }
    let n = examples.len();
    let labels = spec.labels.len();
    let mut y = vec![0.0f32; n * labels];
    for (i, e) in examples.iter().enumerate() {
        for &l in e.labels.iter().filter(|l| **l < labels) {
            y[i * labels + l] = 1.0;
        }
    }

    // Labels are independent (one-vs-rest) and Adam works element by element, so fitting them
    // in parallel chunks gives exactly the single-threaded result, just sooner.
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(labels).max(1);
    let per = labels.div_ceil(threads);
    let chunks: Vec<(Vec<f32>, Vec<f32>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..labels)
            .step_by(per)
            .map(|first| {
                let (x, y) = (&x, &y);
                let range = first..(first + per).min(labels);
                scope.spawn(move || fit_labels(x, y, n, width, labels, range, opts))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut w = Vec::with_capacity(labels * width);
    let mut b = Vec::with_capacity(labels);
    for (cw, cb) in chunks {
        w.extend(cw);
        b.extend(cb);
    }

    Ok(LinearHead {
        format: FORMAT.to_owned(),
        version: spec.version.clone(),
        text_model: spec.text_model.clone(),
        text_dim,
        image_model: spec.image_model.clone().filter(|_| image_dim > 0),
        image_dim,
        labels: spec.labels.clone(),
        weights: w.chunks(width).map(<[f32]>::to_vec).collect(),
        bias: b,
        metrics: BTreeMap::new(),
    })
}

/// Fits the labels in `range` (full-batch Adam): their weight rows and biases.
fn fit_labels(x: &[f32], y: &[f32], n: usize, width: usize, labels: usize, range: std::ops::Range<usize>, opts: &TrainOptions) -> (Vec<f32>, Vec<f32>) {
    let k = range.len();
    let mut w = vec![0.0f32; k * width];
    // Start each bias at the label's log-odds, so rare tags begin rare.
    let mut b: Vec<f32> = range
        .clone()
        .map(|l| {
            let p = ((0..n).map(|i| y[i * labels + l]).sum::<f32>() + 0.5) / (n as f32 + 1.0);
            (p / (1.0 - p)).ln()
        })
        .collect();
    let mut adam_w = Adam::new(w.len());
    let mut adam_b = Adam::new(b.len());
    let mut gw = vec![0.0f32; w.len()];
    let mut gb = vec![0.0f32; k];
    for _ in 0..opts.epochs {
        gw.iter_mut().for_each(|g| *g = 0.0);
        gb.iter_mut().for_each(|g| *g = 0.0);
        for i in 0..n {
            let xi = &x[i * width..(i + 1) * width];
            for j in 0..k {
                let row = &w[j * width..(j + 1) * width];
                let err = sigmoid(b[j] + row.iter().zip(xi).map(|(a, c)| a * c).sum::<f32>()) - y[i * labels + range.start + j];
                gb[j] += err;
                if err.abs() > 1e-6 {
                    for (g, v) in gw[j * width..(j + 1) * width].iter_mut().zip(xi) {
                        *g += err * v;
                    }
                }
            }
        }
        let scale = 1.0 / n as f32;
        for (g, wv) in gw.iter_mut().zip(&w) {
            *g = *g * scale + opts.l2 * wv;
        }
        gb.iter_mut().for_each(|g| *g *= scale);
        adam_w.step(&mut w, &gw, opts.learning_rate);
        adam_b.step(&mut b, &gb, opts.learning_rate);
    }
    (w, b)
}

/// P@5, R@5 and mAP of the head's rankings on `examples`.
pub fn evaluate(head: &LinearHead, examples: &[Example]) -> Evaluation {
    let (mut p5, mut r5, mut ap_sum, mut count) = (0.0, 0.0, 0.0, 0usize);
    for e in examples.iter().filter(|e| !e.labels.is_empty()) {
        let image = (!e.image.is_empty()).then_some(e.image.as_slice());
        let Ok(probs) = head.predict(&e.text, image) else { continue };
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|a, b| probs[*b].total_cmp(&probs[*a]));
        // A true tag the head does not know stays in the truth as a miss.
        let truth: Vec<usize> = e.labels.clone();
        if truth.is_empty() {
            continue;
        }
        let hits5 = order.iter().take(5).filter(|l| truth.contains(l)).count() as f64;
        p5 += hits5 / 5.0;
        r5 += hits5 / truth.len() as f64;
        let (mut hits, mut precision_sum) = (0.0, 0.0);
        for (rank, l) in order.iter().enumerate() {
            if truth.contains(l) {
                hits += 1.0;
                precision_sum += hits / (rank + 1) as f64;
            }
        }
        ap_sum += precision_sum / truth.len() as f64;
        count += 1;
    }
    let d = count.max(1) as f64;
    Evaluation { p_at_5: p5 / d, r_at_5: r5 / d, map: ap_sum / d, examples: count }
}

/// [`evaluate`] for a head with another label list: `examples` label into `labels`, which are
/// mapped onto the head's own; a true tag the head does not know counts as a miss. This is how
/// the promoted version is measured on a candidate's held-out examples, for a fair comparison.
pub fn evaluate_relabelled(head: &LinearHead, examples: &[Example], labels: &[String]) -> Evaluation {
    let index: std::collections::HashMap<&str, usize> = head.labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let mapped: Vec<Example> = examples
        .iter()
        .map(|e| Example {
            labels: e.labels.iter().map(|&l| labels.get(l).and_then(|n| index.get(n.as_str()).copied()).unwrap_or(usize::MAX)).collect(),
            ..e.clone()
        })
        .collect();
    evaluate(head, &mapped)
}

/// Splits by time: the newest `holdout` share (at least one) for evaluation, the rest to fit.
pub fn split_by_time(mut examples: Vec<Example>, holdout: f64) -> (Vec<Example>, Vec<Example>) {
    examples.sort_by_key(|e| e.at);
    let held = ((examples.len() as f64) * holdout).round().max(1.0) as usize;
    let test = examples.split_off(examples.len().saturating_sub(held));
    (examples, test)
}

/// Whether a candidate replaces the current version: its held-out mAP must beat the current
/// one's by `margin`. Without a current version any candidate with a figure is promoted.
pub fn should_promote(candidate: &Evaluation, current: Option<&Evaluation>, margin: f64) -> bool {
    candidate.examples > 0 && current.is_none_or(|c| candidate.map >= c.map + margin)
}

struct Adam {
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    fn new(n: usize) -> Self {
        Self { m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        self.t += 1;
        let (c1, c2) = (1.0 - B1.powi(self.t), 1.0 - B2.powi(self.t));
        for ((p, g), (m, v)) in params.iter_mut().zip(grads).zip(self.m.iter_mut().zip(self.v.iter_mut())) {
            *m = B1 * *m + (1.0 - B1) * g;
            *v = B2 * *v + (1.0 - B2) * g * g;
            *p -= lr * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Examples whose embedding points along its label's axis, with noise from a fixed
    /// generator; label `k` lives on dimensions `2k` and `2k+1`.
    fn data(n: usize, labels: usize, noise: f32, seed: u64) -> Vec<Example> {
        let mut state = seed;
        let mut rand = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        (0..n)
            .map(|i| {
                let label = i % labels;
                let mut text: Vec<f32> = (0..labels * 2).map(|_| noise * rand()).collect();
                text[label * 2] += 1.0;
                text[label * 2 + 1] += 0.5;
                Example { at: i as i64, text, image: Vec::new(), labels: vec![label] }
            })
            .collect()
    }

    fn spec(labels: usize) -> HeadSpec {
        HeadSpec { version: "t1".into(), text_model: "m@1".into(), image_model: None, labels: (0..labels).map(|l| format!("#tag{l}")).collect() }
    }

    #[test]
    fn learns_separable_tags_and_ranks_the_true_one_first() {
        let (head, eval) = train_and_evaluate(&spec(8), data(400, 8, 0.3, 7), &TrainOptions::default()).expect("enough examples");
        assert!(eval.map > 0.95 && eval.r_at_5 > 0.99, "{eval:?}");
        assert!((eval.p_at_5 - 0.2).abs() < 0.01, "one true tag of five: {eval:?}");
        assert_eq!(eval.examples, 80);
        assert_eq!(head.metrics["map"], eval.map);
        head.check().expect("a consistent head");
    }

    #[test]
    fn a_model_trained_on_noise_measures_worse_and_is_not_promoted() {
        let good = train_and_evaluate(&spec(8), data(400, 8, 0.3, 7), &TrainOptions::default()).expect("enough examples").1;
        // Labels shuffled away from the embeddings: nothing to learn.
        let mut noisy = data(400, 8, 0.3, 7);
        for (i, e) in noisy.iter_mut().enumerate() {
            e.labels = vec![(i * 5 + i / 3) % 8];
        }
        let bad = train_and_evaluate(&spec(8), noisy, &TrainOptions::default()).expect("enough examples").1;
        assert!(bad.map < good.map - 0.3, "{bad:?} vs {good:?}");
        assert!(!should_promote(&bad, Some(&good), 0.01));
        assert!(should_promote(&good, Some(&bad), 0.01));
        assert!(should_promote(&bad, None, 0.01));
    }

    #[test]
    fn evaluation_matches_hand_computed_figures() {
        // Two labels; the head ranks #tag1 first for every example.
        let head = LinearHead {
            format: FORMAT.into(),
            version: "h".into(),
            text_model: "m".into(),
            text_dim: 1,
            image_model: None,
            image_dim: 0,
            labels: vec!["#tag0".into(), "#tag1".into()],
            weights: vec![vec![0.0], vec![0.0]],
            bias: vec![-1.0, 1.0],
            metrics: BTreeMap::new(),
        };
        let ex = |labels: Vec<usize>| Example { at: 0, text: vec![1.0], image: Vec::new(), labels };
        let eval = evaluate(&head, &[ex(vec![1]), ex(vec![0])]);
        // AP: 1 for the first, 1/2 for the second; P@5 = 1/5 each; R@5 = 1 each.
        assert!((eval.map - 0.75).abs() < 1e-9, "{eval:?}");
        assert!((eval.p_at_5 - 0.2).abs() < 1e-9 && (eval.r_at_5 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn too_few_examples_is_an_error() {
        assert_eq!(train_and_evaluate(&spec(2), data(5, 2, 0.1, 1), &TrainOptions::default()).expect_err("five examples"), TrainError::TooFew(5));
    }
}
