//! The learned part of hashtag ranking: a logistic model over the features each candidate tag
//! shows (where its words were found, how close its description is to what the video says,
//! the classifier's and the image model's opinion, how widely pulled data uses it), fitted
//! by [`fit`] on labelled videos, the tags a creator would post for them.
//!
//! The shipped weights (`assets/ranker.json`) are fitted by `reelq-hashtag-bench --fit` on the
//! tuning half of the hashtag benchmark and judged on its held-out half. Features the fitting
//! data never shows (the benchmark has no trained classifier and no image model) keep the
//! prior weight the artifact states for them, so a classifier still counts once one is
//! promoted.

use std::sync::{Arc, LazyLock};

use serde::{Deserialize, Serialize};

/// The artifact's format tag.
pub const FORMAT: &str = "reelq-hashtag-ranker/1";

/// The features of a candidate, in the order the weights use.
pub const FEATURES: [&str; 21] = [
    // The tag's own word (or the words of a compound tag, "leg day" for #legday) was said,
    // shown on screen, or written in the caption.
    "name_said",
    "name_shown",
    "name_captioned",
    // Its other keywords: 1 − e^(−0.45·distinct − 0.1·repeats).
    "keywords",
    // All the text support is one other keyword, found once.
    "one_weak_word",
    // The creator wrote the tag (or a variant) as a hashtag in the caption.
    "caption_hashtag",
    // Cosine of the content's sentence embedding with the tag's description, and how far it
    // falls below the best cosine in the vocabulary (0 for the best).
    "text_similarity",
    "text_margin",
    // The trained classifier's probability, and the zero-shot image match (0–1).
    "classifier",
    "visual",
    // Rank of the tag in pulled data, 1 for the most used, 0 when not pulled.
    "popularity",
    // Shipped in the curated seed; and a broad niche tag (#fitness, #food) as near the content
    // by text embedding as the nearest tag (1) down to 0.25 below it (0).
    "curated",
    "broad",
    "generic",
    // A tag the vocabulary does not know, spelled out by the video: a short on-screen line or
    // caption, words said, shown or written at least twice, and how many times (log).
    "new_line",
    "new_said",
    "new_count",
    // A known tag whose words the video only spelled out as a phrase.
    "name_phrase",
    // How near the tag's description is to those of the video's five likeliest other tags
    // (weighed by their likelihood under the prior weights), as the cosine's margin below the
    // most coherent candidate's: 0 for it, negative for a tag off the video's main topic (0 for
    // tags the vocabulary does not know).
    "coherence",
    // A broader tag (#gaming) of one of the video's five likeliest specific tags (#minecraft):
    // that tag's likelihood under the prior weights, 0 otherwise.
    "broader",
    // Its other keywords found in what the creator wrote (on-screen text, the caption), as
    // `keywords` counts them: written words carry no speech recognition errors.
    "keywords_written",
];

/// Number of features.
pub const N: usize = FEATURES.len();

/// A fitted ranking model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranker {
    pub format: String,
    pub version: String,
    pub features: Vec<String>,
    pub weights: Vec<f32>,
    pub bias: f32,
    /// Least score a suggestion needs unless `hashtags.min_score` says otherwise.
    pub min_score: f32,
    /// The log-odds of an acceptable candidate in the data it was fitted on. The fit weighs
    /// accepted and rejected candidates the same in total, so a score is the chance on a data
    /// set where half the candidates are right; adding this to its log-odds gives the chance on
    /// the real mix ([`Ranker::chance`]). Absent for hand-set weights and for rankers fitted
    /// before it was recorded, whose scores are shown as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_log_odds: Option<f32>,
    /// What it was fitted on, and its figures there.
    #[serde(default)]
    pub fitted_on: serde_json::Value,
}

static SHIPPED: LazyLock<Arc<Ranker>> = LazyLock::new(|| {
    Arc::new(Ranker::from_json(include_bytes!("../../assets/ranker.json")).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the shipped hashtag ranker is unreadable; using its prior weights");
        Ranker::prior()
    }))
});

impl Ranker {
    /// The weights shipped with reelq.
    pub fn shipped() -> &'static Ranker {
        &SHIPPED
    }

    /// The shipped weights, shared.
    pub fn shipped_arc() -> Arc<Ranker> {
        SHIPPED.clone()
    }

    /// Hand-set weights in logit space: the starting point of a fit, and what a feature the
    /// fitting data never shows keeps.
    pub fn prior() -> Ranker {
        let w = |name: &str| match name {
            "name_said" | "name_shown" | "name_captioned" => 2.0,
            "keywords" => 2.5,
            "one_weak_word" => -1.0,
            "caption_hashtag" => 4.0,
            "text_similarity" => 4.0,
            "text_margin" => 4.0,
            "classifier" => 5.0,
            "visual" => 3.0,
            "popularity" => 2.0,
            "curated" => 0.3,
            "broad" => 0.5,
            "generic" => -1.0,
            // A short on-screen line the vocabulary does not know scores 0.38 alone: after the
            // known tags the video supports well, since such tags took 35 top-5 slots over the
            // benchmark and a set of outside clips and were right in one.
            "new_line" => 2.5,
            "new_said" => 2.5,
            "new_count" => 0.7,
            "name_phrase" => 2.0,
            "coherence" => 2.0,
            "broader" => 2.0,
            "keywords_written" => 1.0,
            _ => 0.0,
        };
        Ranker {
            format: FORMAT.into(),
            version: "prior".into(),
            features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            weights: FEATURES.iter().map(|f| w(f)).collect(),
            bias: -3.0,
            min_score: 0.3,
            prior_log_odds: None,
            fitted_on: serde_json::Value::Null,
        }
    }

    /// Reads an artifact. It may lack features this build computes (it was fitted before they
    /// existed): they weigh 0 in it, which scores every candidate as it did then. A feature this
    /// build does not compute makes it unusable.
    pub fn from_json(bytes: &[u8]) -> Result<Ranker, String> {
        let mut r: Ranker = serde_json::from_slice(bytes).map_err(|e| format!("not a ranker artifact: {e}"))?;
        if r.format != FORMAT {
            return Err(format!("format `{}`, expected `{FORMAT}`", r.format));
        }
        let distinct: std::collections::BTreeSet<&str> = r.features.iter().map(String::as_str).collect();
        let known = distinct.iter().all(|f| FEATURES.contains(f));
        if !known || distinct.len() != r.features.len() || r.weights.len() != r.features.len() {
            return Err(format!("it weighs the features {:?}, this build computes {FEATURES:?}: refit it", r.features));
        }
        if r.features != FEATURES {
            let weights = FEATURES.iter().map(|f| r.features.iter().position(|g| g == f).map_or(0.0, |j| r.weights[j])).collect();
            r.weights = weights;
            r.features = FEATURES.iter().map(|f| (*f).to_owned()).collect();
        }
        if !(r.bias.is_finite()
            && r.weights.iter().all(|w| w.is_finite())
            && (0.0..1.0).contains(&r.min_score)
            && r.prior_log_odds.is_none_or(f32::is_finite))
        {
            return Err("a weight or the threshold is out of range".into());
        }
        Ok(r)
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// A candidate's score: the probability that a creator would post it, on data where half
    /// the candidates are right (the fit's balance). Candidates are ranked and cut by it.
    pub fn score(&self, x: &[f32; N]) -> f32 {
        sigmoid(self.logit(x))
    }

    /// The chance that a creator would post a candidate of `score`, on the mix of right and
    /// wrong candidates the ranker was fitted on: what a suggestion shows. Rises with the score.
    pub fn chance(&self, score: f32) -> f32 {
        match self.prior_log_odds {
            Some(odds) => sigmoid(log_odds(score) + odds),
            None => score,
        }
    }

    /// The score whose chance is `chance`: [`Ranker::chance`] undone, for a threshold given as
    /// a chance (`hashtags.min_score`).
    pub fn score_for_chance(&self, chance: f32) -> f32 {
        match self.prior_log_odds {
            Some(odds) => sigmoid(log_odds(chance) - odds),
            None => chance,
        }
    }

    fn logit(&self, x: &[f32; N]) -> f32 {
        self.bias + self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f32>()
    }

    /// How much each feature moved the logit, for ordering a suggestion's sources.
    pub fn contributions(&self, x: &[f32; N]) -> [f32; N] {
        let mut out = [0.0; N];
        for (i, (w, v)) in self.weights.iter().zip(x).enumerate() {
            out[i] = w * v;
        }
        out
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// The log-odds of `p`, kept finite at 0 and 1.
fn log_odds(p: f32) -> f32 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// One labelled candidate: its features and whether the video's creator would post it.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    pub x: [f32; N],
    pub accepted: bool,
}

/// How [`fit`] fits.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    pub epochs: usize,
    pub learning_rate: f32,
    /// L2 pull of each weight towards its prior.
    pub l2: f32,
    /// Features whose weights the data cannot judge: [`NOT_FITTED`] for the benchmark,
    /// [`NOT_FITTED_ON_POSTS`] for real posts.
    pub not_fitted: &'static [&'static str],
    /// Stops before `epochs` once no weight moves by more than this in an epoch (0: never).
    pub tolerance: f32,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self { epochs: 6_000, learning_rate: 1.0, l2: 0.002, not_fitted: &NOT_FITTED, tolerance: 0.0 }
    }
}

/// Features a benchmark whose acceptable tags come from a fixed list cannot judge (tags the
/// vocabulary does not know, a creator's own caption hashtags) or that it does not exercise
/// (the classifier, the image model): their weights are never fitted.
pub const NOT_FITTED: [&str; 6] = ["caption_hashtag", "new_line", "new_said", "new_count", "classifier", "visual"];

/// What real posts (pulled videos with the hashtags they were posted with, creators' feedback)
/// cannot judge: the trainer does not run the classifier or the image model over them. Their
/// labels are the tags actually posted, so tags the vocabulary does not know are judged too.
pub const NOT_FITTED_ON_POSTS: [&str; 2] = ["classifier", "visual"];

/// Features that make a candidate on their own (the others only add to other support).
const STANDALONE: [&str; 10] =
    ["name_said", "name_shown", "name_captioned", "keywords", "caption_hashtag", "classifier", "visual", "new_line", "new_said", "name_phrase"];

/// Fits a logistic model to `examples` by full-batch gradient descent from the `prior`, with an
/// L2 pull towards the prior. A feature in `opts.not_fitted` or zero in every example is not
/// fitted: one that can make a candidate on its own keeps the probability the prior gives a
/// candidate with that feature alone (its weight moves by as much as the bias does); the
/// others (`new_count`, `popularity`, which only add to other support) keep their weight.
/// Accepted and rejected candidates weigh the same in total, so that a video with fifty
/// candidates and three good tags still teaches what makes a tag good.
pub fn fit(prior: &Ranker, examples: &[Example], opts: &FitOptions) -> Ranker {
    let mut r = prior.clone();
    let seen: Vec<bool> = (0..N).map(|j| !opts.not_fitted.contains(&FEATURES[j]) && examples.iter().any(|e| e.x[j] != 0.0)).collect();
    let pos = examples.iter().filter(|e| e.accepted).count().max(1) as f32;
    let neg = examples.iter().filter(|e| !e.accepted).count().max(1) as f32;
    let total = pos + neg;
    for _ in 0..opts.epochs {
        let mut grad = [0.0f32; N];
        let mut grad_b = 0.0f32;
        for e in examples {
            let weight = if e.accepted { total / (2.0 * pos) } else { total / (2.0 * neg) };
            let err = (r.score(&e.x) - f32::from(u8::from(e.accepted))) * weight;
            for (g, v) in grad.iter_mut().zip(&e.x) {
                *g += err * v;
            }
            grad_b += err;
        }
        let n = examples.len().max(1) as f32;
        let mut largest = (opts.learning_rate * grad_b / n).abs();
        for j in 0..N {
            if seen[j] {
                let g = grad[j] / n + opts.l2 * (r.weights[j] - prior.weights[j]);
                r.weights[j] -= opts.learning_rate * g;
                largest = largest.max((opts.learning_rate * g).abs());
            }
        }
        r.bias -= opts.learning_rate * grad_b / n;
        if largest < opts.tolerance {
            break;
        }
    }
    for j in 0..N {
        if !seen[j] && STANDALONE.contains(&FEATURES[j]) {
            r.weights[j] = prior.weights[j] + prior.bias - r.bias;
        }
    }
    let accepted = examples.iter().filter(|e| e.accepted).count();
    let rejected = examples.len() - accepted;
    r.prior_log_odds = (accepted > 0 && rejected > 0).then(|| (accepted as f32 / rejected as f32).ln()).or(prior.prior_log_odds);
    r
}

/// The least chance of being acceptable that a fitted ranker's threshold lets a suggestion have:
/// one in twenty. Such a tag only fills a slot that better-supported tags left empty.
pub const MIN_CHANCE: f32 = 0.05;

/// The threshold at which a candidate has `chance` of being acceptable under weights [`fit`]
/// fitted on `examples`. The fit weighs accepted and rejected candidates the same in total, so a
/// score is a probability on balanced data; on the data's own mix its odds are the score's odds
/// times accepted/rejected. A threshold set this way depends only on the fitted weights and that
/// mix, not on how a handful of clips or posts near it happen to fall, which is all a search over
/// thresholds by P@5 sees. Without both kinds of example it is the prior's.
pub fn threshold_for(examples: &[Example], chance: f32) -> f32 {
    let accepted = examples.iter().filter(|e| e.accepted).count();
    threshold_for_mix(accepted, examples.len() - accepted, chance)
}

/// [`threshold_for`] of fitting data with `pos` accepted and `neg` rejected candidates.
pub fn threshold_for_mix(pos: usize, neg: usize, chance: f32) -> f32 {
    if pos == 0 || neg == 0 {
        return Ranker::prior().min_score;
    }
    let logit = (chance / (1.0 - chance)).ln() - (pos as f32 / neg as f32).ln();
    sigmoid(logit).clamp(0.05, 0.95)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(name: &str) -> usize {
        FEATURES.iter().position(|f| *f == name).expect("a feature")
    }

    #[test]
    fn an_artifact_fitted_before_a_feature_existed_scores_as_it_did() {
        let mut old = Ranker::prior();
        let last = N - 1;
        old.features.remove(last);
        old.weights.remove(last);
        let read = Ranker::from_json(&old.to_json()).expect("an artifact without the newest feature reads");
        assert_eq!(read.features, FEATURES);
        assert_eq!(read.weights[last], 0.0, "a feature it was not fitted with weighs nothing");
        let mut x = [0.5f32; N];
        x[last] = -0.4;
        let mut without = x;
        without[last] = 0.0;
        assert_eq!(read.score(&x), read.score(&without));

        let mut odd = Ranker::prior();
        odd.features[0] = "a_feature_no_build_computes".into();
        assert!(Ranker::from_json(&odd.to_json()).is_err());
        let mut twice = Ranker::prior();
        twice.features[1] = twice.features[0].clone();
        assert!(Ranker::from_json(&twice.to_json()).is_err());
    }

    #[test]
    fn the_shipped_ranker_weighs_the_features_this_build_computes() {
        let shipped = Ranker::from_json(include_bytes!("../../assets/ranker.json")).expect("assets/ranker.json reads");
        assert_ne!(shipped.version, "prior", "the shipped weights are fitted");
        assert!(shipped.fitted_on.get("clips").is_some(), "it says what it was fitted on");
        let count = |k: &str| shipped.fitted_on[k].as_u64().expect("candidate counts") as usize;
        let (candidates, accepted) = (count("candidates"), count("accepted"));
        assert!(
            (shipped.min_score - threshold_for_mix(accepted, candidates - accepted, MIN_CHANCE)).abs() < 1e-6,
            "the threshold is the fit's one-in-twenty point: {}",
            shipped.min_score
        );
        let raw: serde_json::Value = serde_json::from_slice(include_bytes!("../../assets/ranker.json")).expect("json");
        assert_eq!(raw["features"], serde_json::json!(FEATURES), "fitted with every feature this build computes");
        let stale = serde_json::json!({ "format": FORMAT, "version": "v", "features": ["keywords", "retired"], "weights": [1.0, 1.0], "bias": 0.0, "min_score": 0.3 });
        assert!(Ranker::from_json(stale.to_string().as_bytes()).expect_err("a feature no longer computed").contains("refit"));
    }

    /// At level v a candidate is acceptable with probability sigmoid(4v - 3.5): 2.9 % at 0,
    /// 4.3 % at 0.1, 6.3 % at 0.2, 62 % at 1.
    fn truth(v: f32) -> f32 {
        1.0 / (1.0 + (3.5 - 4.0 * v).exp())
    }

    /// One feature at eleven levels, 400 candidates at each, acceptable as [`truth`] says, and
    /// the ranker fitted on them.
    fn eleven_levels() -> (Vec<f32>, Vec<Example>, Ranker) {
        let levels: Vec<f32> = (0..=10).map(|i| i as f32 * 0.1).collect();
        let mut examples = Vec::new();
        for &v in &levels {
            let mut x = [0.0; N];
            x[at("text_similarity")] = v;
            let accepted = (400.0 * truth(v)).round() as usize;
            examples.extend((0..400).map(|i| Example { x, accepted: i < accepted }));
        }
        let opts = FitOptions { epochs: 3_000, tolerance: 1e-6, ..FitOptions::default() };
        let fitted = fit(&Ranker::prior(), &examples, &opts);
        (levels, examples, fitted)
    }

    #[test]
    fn the_threshold_lets_through_what_is_acceptable_at_least_one_time_in_twenty() {
        let (levels, examples, fitted) = eleven_levels();
        let t = threshold_for(&examples, MIN_CHANCE);
        let shown: Vec<f32> = levels
            .iter()
            .copied()
            .filter(|&v| {
                let mut x = [0.0; N];
                x[at("text_similarity")] = v;
                fitted.score(&x) >= t
            })
            .collect();
        assert_eq!(shown.first().copied(), Some(0.2), "threshold {t}, weights {fitted:?}: shown from level {shown:?}");
        assert_eq!(shown.len(), 9, "every level above is shown too");
        assert!(
            t < 0.5,
            "on data where one candidate in {} is acceptable, a balanced score of {t} is a 5 % chance",
            examples.len() / examples.iter().filter(|e| e.accepted).count()
        );
        let none: Vec<Example> = examples.iter().map(|e| Example { accepted: false, ..*e }).collect();
        assert_eq!(threshold_for(&none, MIN_CHANCE), Ranker::prior().min_score);
    }

    #[test]
    fn a_fitted_ranker_shows_the_chance_on_the_real_mix_not_the_balanced_score() {
        // Most candidates are wrong, so the balanced score overstates every chance.
        let (levels, examples, fitted) = eleven_levels();
        let accepted = examples.iter().filter(|e| e.accepted).count() as f32;
        let odds = fitted.prior_log_odds.expect("a fit records the mix it was fitted on");
        assert!((odds - (accepted / (examples.len() as f32 - accepted)).ln()).abs() < 1e-5, "{odds}");
        for &v in &levels {
            let mut x = [0.0; N];
            x[at("text_similarity")] = v;
            let (score, chance) = (fitted.score(&x), fitted.chance(fitted.score(&x)));
            assert!((chance - truth(v)).abs() < 0.05, "level {v}: score {score}, chance {chance}, truly {}", truth(v));
            assert!(chance < score, "level {v}: the chance on the real mix is below the balanced score");
            assert!((fitted.score_for_chance(chance) - score).abs() < 1e-4, "level {v}");
        }
        // The fitted threshold is the one-in-twenty chance.
        assert!((fitted.chance(threshold_for(&examples, MIN_CHANCE)) - MIN_CHANCE).abs() < 1e-4);
        // Hand-set weights, and artifacts from before the mix was recorded, show scores as they are.
        let prior = Ranker::prior();
        assert_eq!((prior.chance(0.7), prior.score_for_chance(0.7)), (0.7, 0.7));
        let shipped = Ranker::shipped();
        let json = String::from_utf8(shipped.to_json()).expect("utf-8");
        assert!(json.contains("prior_log_odds"), "{json}");
        let mut old: serde_json::Value = serde_json::from_str(&json).expect("json");
        old.as_object_mut().expect("object").remove("prior_log_odds");
        let old = Ranker::from_json(old.to_string().as_bytes()).expect("an artifact without it still reads");
        assert_eq!(old.chance(0.7), 0.7);
    }

    #[test]
    fn fitting_learns_which_feature_tells_and_keeps_unseen_priors() {
        // Accepted tags have their name said; rejected ones only share one weak word, and
        // popularity is noise.
        let mut examples = Vec::new();
        for i in 0..200 {
            let mut x = [0.0; N];
            let accepted = i % 4 == 0;
            if accepted {
                x[at("name_said")] = 1.0;
            } else {
                x[at("one_weak_word")] = 1.0;
                x[at("keywords")] = 0.36;
            }
            x[at("popularity")] = (i % 7) as f32 / 7.0;
            examples.push(Example { x, accepted });
        }
        let prior = Ranker::prior();
        let fitted = fit(&prior, &examples, &FitOptions::default());
        let said = examples.iter().find(|e| e.accepted).expect("an accepted example");
        let weak = examples.iter().find(|e| !e.accepted).expect("a rejected example");
        assert!(fitted.score(&said.x) > 0.8 && fitted.score(&weak.x) < 0.2, "{} {}", fitted.score(&said.x), fitted.score(&weak.x));
        assert!(fitted.score(&said.x) - fitted.score(&weak.x) > prior.score(&said.x) - prior.score(&weak.x));
        // Never seen: a candidate with only that feature keeps the prior's probability.
        let mut alone = [0.0; N];
        alone[at("classifier")] = 1.0;
        assert!((fitted.score(&alone) - prior.score(&alone)).abs() < 1e-4, "{} {}", fitted.score(&alone), prior.score(&alone));
        let round = Ranker::from_json(&fitted.to_json()).expect("round trip");
        assert_eq!(round, fitted);
    }
}
