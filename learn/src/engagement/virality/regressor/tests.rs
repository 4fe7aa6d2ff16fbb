//! The regressor against numbers worked out by hand and against its own guarantees.

use super::*;

fn close(a: f64, b: f64, tolerance: f64) {
    assert!((a - b).abs() < tolerance, "{a} != {b}");
}

/// A uniform number in [−0.5, 0.5) from a fixed linear congruential generator, so the
/// synthetic sets are the same on every run.
fn generator(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }
}

/// `n` videos with five uniform features. With `signal`, ln(views) = 6 + 4·f₀ + noise;
/// without, views are drawn independently of every feature. Posting times are a
/// permutation of 0..n (7919 is prime), so that the split has to sort.
fn synthetic(n: usize, seed: u64, signal: bool) -> Vec<Sample> {
    let mut rand = generator(seed);
    (0..n)
        .map(|i| {
            let features: Vec<f32> = (0..5).map(|_| rand() as f32).collect();
            let log_views = if signal { 6.0 + 4.0 * f64::from(features[0]) + rand() } else { 6.0 + 4.0 * rand() };
            let views = log_views.exp().round() as i64;
            let counts =
                Counts { views, likes: views / 10 + (50.0 * (rand() + 0.5)) as i64, comments: (20.0 * (rand() + 0.5)) as i64, shares: views / 200 };
            Sample { at: ((i * 7919) % n) as i64, features, counts }
        })
        .collect()
}

/// A model whose numbers can be followed by hand: virality from feature 0 alone, views a
/// constant 200 (ln 201), population quantiles k/10 for k = 0..=100.
fn hand_model() -> ViralityRegressor {
    ViralityRegressor {
        format: REGRESSOR_FORMAT.into(),
        version: "v1".into(),
        feature_model: "test/1".into(),
        dim: 2,
        correlations: ViralityModel { corr_likes: 0.5, corr_comments: 0.25, corr_shares: 0.0 },
        weights: vec![1.0, 0.0],
        bias: 0.0,
        view_weights: vec![0.0, 0.0],
        view_bias: 201f64.ln(),
        view_residuals: (0.4f64.ln(), 2f64.ln()),
        population: (0..POPULATION_QUANTILES).map(|k| k as f64 / 10.0).collect(),
        metrics: BTreeMap::from([("spearman".to_owned(), 0.5)]),
    }
}

#[test]
fn ridge_recovers_an_exact_line_and_shrinks_it_by_the_hand_computed_amount() {
    // x = 0..9, y = 2x + 1: x̄ = 4.5, ȳ = 10, Σ(x − x̄)² = 10·99/12 = 82.5, Σ(x − x̄)(y − ȳ) = 165.
    // A second target y₂ = 3 − x shares XᵀX.
    let xs: Vec<[f32; 1]> = (0..10).map(|x| [x as f32]).collect();
    let rows: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
    let y: Vec<f64> = (0..10).map(|x| 2.0 * x as f64 + 1.0).collect();
    let y2: Vec<f64> = (0..10).map(|x| 3.0 - x as f64).collect();

    // w = 165 / (82.5 + 10⁻⁹) = 2 − 2.4·10⁻¹¹; b = 10 − 4.5·w.
    let [(w, b), (w2, b2)] = ridge(&rows, 1, [&y, &y2], 1e-9).expect("solvable");
    close(w[0], 2.0, 1e-6);
    close(b, 1.0, 1e-6);
    close(w2[0], -1.0, 1e-6);
    close(b2, 3.0, 1e-6);

    // With l2 = 82.5 the slope halves: w = 165 / 165 = 1, and the unpenalised intercept
    // follows the means: b = 10 − 4.5·1 = 5.5.
    let [(w, b)] = ridge(&rows, 1, [&y], 82.5).expect("solvable");
    close(w[0], 1.0, 1e-12);
    close(b, 5.5, 1e-12);
}

#[test]
fn ridge_is_exact_across_several_blocks_with_a_partial_last_one() {
    // 150 rows = two full blocks of 64 and one of 22; y = 3a − 2b + 0.5 exactly.
    let xs: Vec<[f32; 2]> = (0..150).map(|i| [(i % 7) as f32, ((i * i) % 11) as f32]).collect();
    let rows: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
    let y: Vec<f64> = xs.iter().map(|x| 3.0 * f64::from(x[0]) - 2.0 * f64::from(x[1]) + 0.5).collect();
    let [(w, b)] = ridge(&rows, 2, [&y], 1e-9).expect("solvable");
    close(w[0], 3.0, 1e-6);
    close(w[1], -2.0, 1e-6);
    close(b, 0.5, 1e-6);
}

#[test]
fn cholesky_factorises_and_solves_small_systems_worked_by_hand() {
    // [[4, 2], [2, 3]] = L·Lᵀ with L = [[2, 0], [1, √2]]. For b = (8, 8):
    // x = (1/8)·[[3, −2], [−2, 4]]·(8, 8) = (1, 2); check: 4 + 4 = 8, 2 + 6 = 8.
    let mut a = vec![4.0, 2.0, 2.0, 3.0];
    cholesky(&mut a, 2).expect("positive definite");
    close(a[0], 2.0, 1e-12);
    close(a[2], 1.0, 1e-12);
    close(a[3], 2f64.sqrt(), 1e-12);
    let x = cholesky_solve(&a, 2, vec![8.0, 8.0]);
    close(x[0], 1.0, 1e-12);
    close(x[1], 2.0, 1e-12);

    // The textbook [[4, 12, −16], [12, 37, −43], [−16, −43, 98]] has
    // L = [[2, 0, 0], [6, 1, 0], [−8, 5, 3]]; with x = (1, 1, 1), b = row sums = (0, 6, 39).
    let mut a = vec![4.0, 12.0, -16.0, 12.0, 37.0, -43.0, -16.0, -43.0, 98.0];
    cholesky(&mut a, 3).expect("positive definite");
    for (got, want) in [(a[0], 2.0), (a[3], 6.0), (a[4], 1.0), (a[6], -8.0), (a[7], 5.0), (a[8], 3.0)] {
        close(got, want, 1e-12);
    }
    for v in cholesky_solve(&a, 3, vec![0.0, 6.0, 39.0]) {
        close(v, 1.0, 1e-12);
    }

    // [[1, 2], [2, 1]] has eigenvalues 3 and −1: no factor exists. A zero pivot neither.
    assert_eq!(cholesky(&mut [1.0, 2.0, 2.0, 1.0], 2), Err(RegressorError::Singular));
    assert_eq!(cholesky(&mut [1.0, 0.0, 0.0, 0.0], 2), Err(RegressorError::Singular));
}

#[test]
fn quantile_rank_interpolates_between_quantiles_and_splits_ties() {
    // Five quantiles stand at 0, 25, 50, 75 and 100 %.
    let q = [0.0, 10.0, 20.0, 20.0, 40.0];
    close(quantile_rank(5.0, &q).expect("quantiles"), 12.5, 1e-12); // halfway from 0 % to 25 %
    close(quantile_rank(30.0, &q).expect("quantiles"), 87.5, 1e-12); // halfway from 75 % to 100 %
    close(quantile_rank(20.0, &q).expect("quantiles"), 62.5, 1e-12); // tied over 50–75 %: the middle
    close(quantile_rank(0.0, &q).expect("quantiles"), 0.0, 1e-12);
    close(quantile_rank(40.0, &q).expect("quantiles"), 100.0, 1e-12);
    close(quantile_rank(-1.0, &q).expect("quantiles"), 0.0, 1e-12);
    close(quantile_rank(50.0, &q).expect("quantiles"), 100.0, 1e-12);
    close(quantile_rank(3.0, &[3.0]).expect("quantiles"), 50.0, 1e-12);
    assert_eq!(quantile_rank(1.0, &[]), None);
}

#[test]
fn quantiles_interpolate_between_order_statistics() {
    let xs = [1.0, 2.0, 3.0, 4.0];
    close(quantile_sorted(&xs, 0.5), 2.5, 1e-12); // h = 3·0.5 = 1.5: halfway from 2 to 3
    close(quantile_sorted(&xs, 0.1), 1.3, 1e-12); // h = 0.3
    close(quantile_sorted(&xs, 0.0), 1.0, 1e-12);
    close(quantile_sorted(&xs, 1.0), 4.0, 1e-12);
    close(quantile_sorted(&[7.0], 0.9), 7.0, 1e-12);
    close(quantile_sorted(&[], 0.5), 0.0, 1e-12);
}

#[test]
fn split_holds_out_the_newest_share_in_time_order() {
    let sample = |at| Sample { at, features: vec![], counts: Counts::default() };
    let (train_part, held) = split_by_time((0..10).rev().map(sample).collect(), 0.2);
    assert_eq!(train_part.iter().map(|s| s.at).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    assert_eq!(held.iter().map(|s| s.at).collect::<Vec<_>>(), vec![8, 9]);
    // At least one held out, at least one kept.
    assert_eq!(split_by_time((0..10).map(sample).collect(), 0.0).1.len(), 1);
    assert_eq!(split_by_time((0..10).map(sample).collect(), 0.99).0.len(), 1);
    let (train_part, held) = split_by_time(vec![sample(5)], 0.2);
    assert_eq!((train_part.len(), held.len()), (0, 1));
    assert_eq!(split_by_time(Vec::new(), 0.2).1.len(), 0);
}

#[test]
fn predict_matches_hand_computation() {
    let m = hand_model();
    let e = m.predict(&[2.75, 123.0]).expect("features fit");
    close(e.log_virality, 2.75, 1e-12);
    close(e.virality, 2.75f64.exp() - 1.0, 1e-9);
    // 2.75 lies halfway between the 27th (2.7) and 28th (2.8) quantiles.
    close(e.percentile, 27.5, 1e-9);
    // expected = 201 − 1; low = 201·0.4 − 1 = 79.4 → 79; high = 201·2 − 1 = 401.
    assert_eq!(e.expected_views, ViewRange { low: 79, expected: 200, high: 401 });

    // A negative prediction is clamped to no virality, at the bottom of the population.
    let e = m.predict(&[-1.0, 0.0]).expect("features fit");
    assert_eq!((e.log_virality, e.virality, e.percentile), (0.0, 0.0, 0.0));

    // Held-out errors that were all positive move `low` up to the estimate, not above it:
    // 201·e^0.1 − 1 ≈ 221 would exceed 200.
    let mut skewed = hand_model();
    skewed.view_residuals = (0.1, 0.5);
    let r = skewed.predict(&[0.0, 0.0]).expect("features fit").expected_views;
    assert_eq!((r.low, r.expected), (200, 200));
    assert_eq!(r.high, (201.0 * 0.5f64.exp() - 1.0).round() as i64);
}

#[test]
fn predict_rejects_features_that_do_not_fit() {
    let m = hand_model();
    assert!(matches!(m.predict(&[1.0]), Err(RegressorError::Shape(_))));
    assert!(matches!(m.predict(&[1.0, 2.0, 3.0]), Err(RegressorError::Shape(_))));
    assert!(matches!(m.predict(&[f32::NAN, 2.0]), Err(RegressorError::NonFinite(_))));
}

#[test]
fn learns_views_from_the_one_feature_that_carries_them() {
    let data = synthetic(1000, 7, true);
    let (model, eval) = train("v1", "test/1", data.clone(), &RegressorOptions::default()).expect("trains");

    assert!(eval.spearman > 0.8 && eval.spearman_views > 0.8, "{eval:?}");
    assert_eq!(eval.examples, 200);
    assert_eq!(model.metrics["train_examples"], 800.0);
    assert_eq!(model.metrics["eval_examples"], 200.0);
    assert_eq!(model.metrics["spearman"], eval.spearman);
    assert_eq!(model.metrics["spearman_views"], eval.spearman_views);
    // ln(views) = 6 + 4·f₀ + noise, so the view weights are (4, 0, 0, 0, 0) up to noise.
    close(model.view_weights[0], 4.0, 0.2);
    assert!(model.view_weights[1..].iter().all(|w| w.abs() < 0.3), "{:?}", model.view_weights);
    // The noise is uniform in ±0.5, so an 80 % range of residuals is about ±0.4.
    assert!(model.view_residuals.0 < -0.2 && model.view_residuals.1 > 0.2, "{:?}", model.view_residuals);
    // The population spans every sample's target; the correlations are those of all counts.
    let counts: Vec<Counts> = data.iter().map(|s| s.counts).collect();
    assert_eq!(model.correlations, ViralityModel::fit(&counts));
    let targets: Vec<f64> = counts.iter().map(|c| model.correlations.target(c)).collect();
    assert_eq!(model.population[0], targets.iter().copied().fold(f64::INFINITY, f64::min));
    assert_eq!(model.population[100], targets.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    // A caller re-scoring the shipped model on the same held-out part gets the same figures.
    let (_, held) = split_by_time(data, 0.2);
    assert_eq!(model.evaluate(&held), eval);
    // The view range of a typical video brackets its estimate.
    let r = model.predict(&held[0].features).expect("features fit").expected_views;
    assert!(r.low < r.expected && r.expected < r.high, "{r:?}");
}

#[test]
fn features_of_pure_noise_rank_held_out_videos_no_better_than_chance() {
    let (_, eval) = train("v1", "test/1", synthetic(2000, 11, false), &RegressorOptions::default()).expect("trains");
    // 400 held-out videos: a chance Spearman has a standard deviation of about 1/√400 = 0.05.
    assert!(eval.spearman.abs() < 0.15 && eval.spearman_views.abs() < 0.15, "{eval:?}");
    assert_eq!(eval.examples, 400);
}

#[test]
fn evaluation_skips_samples_whose_features_do_not_fit() {
    let (model, _) = train("v1", "test/1", synthetic(100, 3, true), &RegressorOptions::default()).expect("trains");
    let mut other = synthetic(20, 4, true);
    other.iter_mut().for_each(|s| s.features.push(0.0));
    assert_eq!(model.evaluate(&other), RegressorEvaluation { spearman: 0.0, spearman_views: 0.0, examples: 0 });
}

#[test]
fn training_refuses_what_it_cannot_fit() {
    let opts = RegressorOptions::default();
    assert_eq!(train("v", "m", synthetic(9, 1, true), &opts).expect_err("refused"), RegressorError::TooFew(9));

    let mut ragged = synthetic(20, 1, true);
    ragged[3].features.pop();
    assert!(matches!(train("v", "m", ragged, &opts), Err(RegressorError::Shape(_))));

    let mut nan = synthetic(20, 1, true);
    nan[5].features[2] = f32::INFINITY;
    assert!(matches!(train("v", "m", nan, &opts), Err(RegressorError::NonFinite(_))));

    for bad in [
        RegressorOptions { l2: -1.0, holdout: 0.2 },
        RegressorOptions { l2: f64::NAN, holdout: 0.2 },
        RegressorOptions { l2: 1.0, holdout: 0.0 },
        RegressorOptions { l2: 1.0, holdout: 1.0 },
    ] {
        assert!(matches!(train("v", "m", synthetic(20, 1, true), &bad), Err(RegressorError::Options(_))), "{bad:?}");
    }

    // A constant feature leaves a zero row in XᵀX: singular without a penalty, and a zero
    // weight with one.
    let mut constant = synthetic(50, 1, true);
    constant.iter_mut().for_each(|s| s.features[4] = 1.0);
    let unpenalised = RegressorOptions { l2: 0.0, holdout: 0.2 };
    assert_eq!(train("v", "m", constant.clone(), &unpenalised).expect_err("refused"), RegressorError::Singular);
    let (model, _) = train("v", "m", constant, &opts).expect("trains");
    assert_eq!((model.weights[4], model.view_weights[4]), (0.0, 0.0));
}

#[test]
fn round_trips_through_json_and_rejects_bad_shapes() {
    let m = hand_model();
    assert_eq!(ViralityRegressor::from_json(&m.to_json()).expect("valid artifact"), m);

    // A trained model loads back and predicts the same (JSON floats may differ in the last bit).
    let (trained, _) = train("v2", "test/1", synthetic(100, 5, true), &RegressorOptions::default()).expect("trains");
    let loaded = ViralityRegressor::from_json(&trained.to_json()).expect("valid artifact");
    let features = [0.1, -0.2, 0.3, 0.0, 0.4];
    close(loaded.predict(&features).expect("features fit").log_virality, trained.predict(&features).expect("features fit").log_virality, 1e-9);

    let mut bad = m.clone();
    bad.weights.push(1.0);
    assert!(matches!(ViralityRegressor::from_json(&bad.to_json()), Err(RegressorError::Shape(_))));
    let mut bad = m.clone();
    bad.dim = 3;
    assert!(matches!(ViralityRegressor::from_json(&bad.to_json()), Err(RegressorError::Shape(_))));
    let mut bad = m.clone();
    bad.population.pop();
    assert!(matches!(ViralityRegressor::from_json(&bad.to_json()), Err(RegressorError::Shape(_))));
    let mut bad = m.clone();
    bad.population.swap(3, 4);
    assert!(matches!(ViralityRegressor::from_json(&bad.to_json()), Err(RegressorError::Shape(_))));
    let mut bad = m.clone();
    bad.view_residuals = (1.0, -1.0);
    assert!(matches!(ViralityRegressor::from_json(&bad.to_json()), Err(RegressorError::Shape(_))));
    let mut other = m.clone();
    other.format = "reelq-virality-ridge/2".into();
    assert!(matches!(ViralityRegressor::from_json(&other.to_json()), Err(RegressorError::Format(_))));
    assert!(matches!(ViralityRegressor::from_json(b"{"), Err(RegressorError::Json(_))));
    // A non-finite number serialises as null, which does not parse back as a number.
    let mut bad = m.clone();
    bad.bias = f64::NAN;
    assert!(matches!(ViralityRegressor::from_json(&bad.to_json()), Err(RegressorError::Json(_))));
}
