//! The training job: gathers labelled examples (pulled videos in the window, and creators'
//! feedback), embeds what has no stored embedding yet, trains the hashtag classifier, refits
//! the hashtag ranker on the newest posts, trains the virality regressor, measures each on the
//! newest examples held out, and promotes a candidate only when it beats the promoted version
//! on those same examples by the configured margin.
//!
//! Artifacts go to `models/<model>/<version>.json` in the bucket and every version, promoted
//! or not, to the registry, with its figures and data window. Workers pick a promotion up
//! through [`crate::registry`], without a restart.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use reelq_shared::classifier::LinearHead;
use reelq_shared::classifier::train::{self, Evaluation, Example, HeadSpec, TrainOptions};
use reelq_shared::db::jobs::JobRecord;
use reelq_shared::db::models::{self as registry, NewVersion, StoredEmbedding};
use reelq_shared::db::{feedback, results};
use reelq_shared::domain::{Analysis, JobErrorCode};
use reelq_shared::engagement::virality::{self, RegressorOptions, Sample, ViralityRegressor};
use reelq_shared::storage::Store;
use reelq_shared::training::TrainingRequest;

use reelq_learn::features::{example_text, virality_feature_model, virality_features};

use crate::inference::embedding::TextEmbedder;
use reelq_analysis::evaluate::{self, Figures, Post, Variant};
use reelq_analysis::findings::EmbeddingVector;
use reelq_analysis::hashtags::{Ranker, SpanSource, TextSpan, heard_clearly};
use reelq_analysis::{Input, Pipeline, Session};
use reelq_core::options::JobOptions;

use crate::runner::{JobError, Output};
use crate::settings::MediaSettings;

/// Texts embedded per model call and stored per statement.
const EMBED_CHUNK: usize = 256;
/// Fewer labelled examples with an image than this teach image weights nothing: the head
/// stays text-only.
const MIN_IMAGE_EXAMPLES: usize = 5;
/// Feedback examples read per run.
const MAX_FEEDBACK: i64 = 50_000;
/// Newest pulled videos the ranker is refitted on (feedback comes on top).
const MAX_RANKER_POSTS: usize = 5_000;
/// Fewest posts a ranker is refitted on, and fewest held-out posts it is judged on.
const MIN_RANKER_POSTS: usize = 50;
const MIN_RANKER_HELD_OUT: usize = 20;
/// Full-batch passes of the ranker's fit (it starts from the version in use).
const RANKER_EPOCHS: usize = 1_500;
/// Largest artifact read back for a comparison.
pub const MAX_ARTIFACT_BYTES: u64 = 256 * 1024 * 1024;

/// Object key of a version's artifact.
pub fn artifact_key(model: &str, version: &str) -> String {
    format!("models/{model}/{version}.json")
}

/// What a training job works with.
pub struct Trainer<'a> {
    pub pool: &'a PgPool,
    pub store: &'a Store,
    pub pipeline: &'a Arc<Pipeline>,
    /// Limits a feedback video is probed against before it is decoded.
    pub media: &'a MediaSettings,
    /// Where feedback videos are downloaded.
    pub scratch: &'a Path,
    /// The hashtags of pulled data and their learned wider tags, which the vocabulary grows
    /// with, as jobs see them.
    pub pulled_tags: Arc<reelq_analysis::hashtags::PulledTags>,
}

/// Runs a training job to its end.
pub async fn run(trainer: &Trainer<'_>, job: &JobRecord, cancel: &CancellationToken) -> Result<Output, JobError> {
    let (pool, store, pipeline) = (trainer.pool, trainer.store, trainer.pipeline);
    let request = TrainingRequest::from_options(&job.options).map_err(|message| JobError::Fatal { code: JobErrorCode::InvalidRequest, message })?;
    // Stable across retries of the job, so a retry re-registers the same candidate.
    let version = format!("{}-{}", job.created_at.format("%Y%m%dT%H%M%SZ"), &job.id.simple().to_string()[24..]);
    let started = Instant::now();
    let since = Utc::now() - chrono::Duration::days(i64::from(request.window_days));

    let scraped = registry::scraped_examples(pool, since, i64::from(request.max_examples)).await?;
    let mut feedback = feedback::examples(pool, since, MAX_FEEDBACK).await?;
    let models = pipeline.models().clone();
    let embedder =
        tokio::task::spawn_blocking(move || models.text_embedder()).await.map_err(|e| JobError::Retryable(format!("model thread failed: {e}")))??;
    let text_model = embedder.model().to_string();

    // Text embeddings of pulled videos, reusing what earlier runs stored.
    let texts: Vec<(String, String)> = scraped.iter().map(|v| (v.id.clone(), example_text(&v.description))).collect();
    let (mut vectors, embedded_now) = embed_missing(pool, &embedder, "scraped", &text_model, &texts, cancel).await?;
    // Image embeddings of pulled videos whose own file a dump brought.
    let ids: Vec<String> = scraped.iter().map(|v| v.id.clone()).collect();
    let (scraped_images, image_model_scraped, scraped_decoded) = scraped_media(trainer, &ids, request.max_media_examples, cancel).await?;
    let embed_secs = started.elapsed().as_secs_f64();

    // Labelled examples: pulled videos, then feedback (with its image embedding when the job
    // stored one from the same text model).
    // (posted, text vector, image vector or empty, tags with '#')
    type Labelled = (DateTime<Utc>, Vec<f32>, Vec<f32>, Vec<String>);
    let mut labelled: Vec<Labelled> = Vec::new();
    let mut samples_raw: Vec<(i64, Vec<f32>, reelq_shared::engagement::Counts)> = Vec::new();
    // The newest pulled videos with text and hashtags are also posts the ranker is refitted on.
    let mut newest: Vec<&reelq_shared::db::models::ScrapedExample> =
        scraped.iter().zip(&texts).filter(|(v, (_, text))| !v.hashtags.is_empty() && !text.is_empty()).map(|(v, _)| v).collect();
    newest.sort_by_key(|v| std::cmp::Reverse(v.create_time));
    let ranker_ids: HashSet<&str> = newest.into_iter().take(MAX_RANKER_POSTS).map(|v| v.id.as_str()).collect();
    let mut posts: Vec<RawPost> = Vec::new();
    for (v, (_, text)) in scraped.iter().zip(&texts) {
        // Moved, not copied: at 100,000 videos each copy of the vectors is 150 MB.
        let Some(vec) = vectors.remove(&v.id) else { continue };
        let tags: Vec<String> = v.hashtags.iter().map(|t| format!("#{t}")).collect();
        if ranker_ids.contains(v.id.as_str()) {
            let spans = vec![TextSpan { source: SpanSource::Caption, text: text.clone(), time_secs: None }];
            posts.push(RawPost { at: v.create_time, id: format!("pulled:{}", v.id), spans, vector: vec.clone(), tags: tags.clone() });
        }
        samples_raw.push((v.create_time.timestamp(), virality_features(&vec, tags.len(), text.chars().count()), v.counts));
        if !tags.is_empty() {
            labelled.push((v.create_time, vec, scraped_images.get(&v.id).cloned().unwrap_or_default(), tags));
        }
    }
    drop(vectors);
    // Feedback whose job never computed embeddings: decode its video (once: the result is
    // stored) for full text and image features, up to `max_media_examples` per run.
    let media_computed = media_embeddings(trainer, &mut feedback, &text_model, request.max_media_examples, cancel).await?;
    let mut feedback_used = 0usize;
    let mut image_model: Option<String> = image_model_scraped.filter(|_| !scraped_images.is_empty());
    let captions: Vec<(String, String)> = feedback
        .iter()
        .filter(|f| stored_vector(f.embeddings.as_ref(), "text", &text_model).is_none())
        .filter_map(|f| f.caption.as_deref().map(example_text).filter(|c| !c.is_empty()).map(|c| (f.job_id.to_string(), c)))
        .collect();
    let (caption_vectors, _) = embed_missing(pool, &embedder, "feedback", &text_model, &captions, cancel).await?;
    let mut feedback_spans = feedback_spans(pool, &feedback, pipeline.settings().hashtags.min_speech_logprob).await?;
    for f in &feedback {
        let text = stored_vector(f.embeddings.as_ref(), "text", &text_model).or_else(|| caption_vectors.get(&f.job_id.to_string()).cloned());
        let Some(text) = text else { continue };
        let spans = feedback_spans.remove(&f.job_id).unwrap_or_default();
        if !spans.is_empty() {
            posts.push(RawPost { at: f.created_at, id: format!("feedback:{}", f.job_id), spans, vector: text.clone(), tags: f.hashtags.clone() });
        }
        let image = f.embeddings.as_ref().and_then(|e| e.get("image")).filter(|i| !i.is_null()).and_then(|i| {
            let model = model_name(i.get("model")?)?;
            let v: Vec<f32> = serde_json::from_value(i.get("vector")?.clone()).ok()?;
            Some((model, v))
        });
        let image = match image {
            Some((model, v)) if image_model.as_deref().is_none_or(|m| m == model) => {
                image_model = Some(model);
                v
            }
            _ => Vec::new(),
        };
        labelled.push((f.created_at, text, image, f.hashtags.clone()));
        feedback_used += 1;
    }

    if cancel.is_cancelled() {
        return Err(JobError::Stopped("cancelled"));
    }

    // The label set: tags frequent enough to learn.
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for (_, _, _, tags) in &labelled {
        for t in tags {
            *counts.entry(t.as_str()).or_default() += 1;
        }
    }
    let mut labels: Vec<(&str, u32)> = counts.into_iter().filter(|(_, n)| *n >= request.min_label_count).collect();
    labels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    labels.truncate(request.max_labels as usize);
    let labels: Vec<String> = labels.into_iter().map(|(t, _)| t.to_owned()).collect();
    let index: HashMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
    let with_images = labelled.iter().filter(|e| !e.2.is_empty()).count();
    let window = (labelled.iter().map(|e| e.0).min(), labelled.iter().map(|e| e.0).max());
    let examples: Vec<Example> = labelled
        .into_iter()
        .map(|(at, text, image, tags)| Example {
            at: at.timestamp(),
            text,
            image,
            labels: tags.iter().filter_map(|t| index.get(t.as_str()).copied()).collect(),
        })
        .filter(|e| !e.labels.is_empty())
        .collect();

    let hashtags = train_hashtags(
        pipeline,
        cancel,
        pool,
        store,
        job,
        &version,
        HeadSpec {
            version: version.clone(),
            text_model: text_model.clone(),
            image_model: image_model.filter(|_| with_images >= MIN_IMAGE_EXAMPLES),
            labels,
        },
        examples,
        &request,
        window,
    )
    .await?;
    let ranker = train_ranker(trainer, cancel, job, &version, posts, &text_model, &request).await?;
    let virality = train_virality(pool, store, job, &version, &virality_feature_model(&text_model), samples_raw, &request, window).await?;

    let payload = json!({
        "version": version,
        "hashtags": hashtags,
        "ranker": ranker,
        "virality": virality,
        "examples": { "pulled": scraped.len(), "feedback": feedback_used, "embedded_now": embedded_now, "feedback_videos_decoded": media_computed, "pulled_videos_decoded": scraped_decoded, "pulled_with_images": scraped_images.len() },
        "seconds": { "embed": round3(embed_secs), "total": round3(started.elapsed().as_secs_f64()) },
    });
    Ok(Output { payload, models: json!([{ "name": embedder.model().name, "version": embedder.model().version }]) })
}

/// Trains, judges and registers the hashtag classifier; the returned value describes it.
#[allow(clippy::too_many_arguments)]
async fn train_hashtags(
    pipeline: &Arc<Pipeline>,
    cancel: &CancellationToken,
    pool: &PgPool,
    store: &Store,
    job: &JobRecord,
    version: &str,
    spec: HeadSpec,
    examples: Vec<Example>,
    request: &TrainingRequest,
    window: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> Result<Value, JobError> {
    const MODEL: &str = "hashtags";
    if examples.len() < 10 || spec.labels.is_empty() {
        return Ok(
            json!({ "status": "skipped", "reason": format!("{} labelled examples over {} labels; at least 10 examples are needed", examples.len(), spec.labels.len()) }),
        );
    }
    let current = registry::promoted(pool, MODEL).await?;
    let current_head = match &current {
        Some(c) => Some(
            LinearHead::from_json(&store.get_bytes(&c.artifact_key, MAX_ARTIFACT_BYTES).await?)
                .map_err(|e| JobError::Retryable(format!("the promoted classifier's artifact is unreadable: {e}")))?,
        ),
        None => None,
    };
    let opts = TrainOptions { epochs: request.epochs as usize, learning_rate: request.learning_rate, l2: 1e-4, holdout: request.holdout };
    let current_for_bench = current_head.clone();
    let started = Instant::now();
    let (head, eval, baseline, frequencies) = tokio::task::spawn_blocking(move || -> Result<_, train::TrainError> {
        let (fit_on, held_out) = train::split_by_time(examples, opts.holdout);
        let mut head = train::fit(&spec, &fit_on, &opts)?;
        let eval = train::evaluate(&head, &held_out);
        head.metrics = eval.as_metrics();
        head.metrics.insert("train_examples".into(), fit_on.len() as f64);
        // The promoted version on the same held-out videos (unless it cannot read them), and
        // the trivial ranking by label frequency that any model must beat.
        let baseline = current_head.map(|c| train::evaluate_relabelled(&c, &held_out, &spec.labels)).filter(|e| e.examples > 0);
        let frequencies = train::evaluate(&train::fit(&spec, &fit_on, &TrainOptions { epochs: 0, ..opts })?, &held_out);
        Ok((head, eval, baseline, frequencies))
    })
    .await
    .map_err(|e| JobError::Retryable(format!("training thread failed: {e}")))?
    .map_err(|e| JobError::Fatal { code: JobErrorCode::InvalidRequest, message: e.to_string() })?;
    let fit_secs = started.elapsed().as_secs_f64();
    let mut head = head;
    // The hashtag benchmark, when one is configured: the candidate's suggestions against the
    // promoted version's (or none's) on the same clips.
    let ranker = pipeline.models().ranker();
    let bench = judge_on_benchmark(pipeline, (Some(head.clone()), ranker.clone()), (current_for_bench, ranker), cancel).await?;
    if let Some(b) = &bench {
        head.metrics.insert("benchmark_p_at_5".into(), b.candidate.precision_at_5);
        head.metrics.insert("benchmark_hit_at_5".into(), b.candidate.hit_at_5);
    }

    let key = artifact_key(MODEL, version);
    store.put_bytes(&key, head.to_json(), "application/json").await?;
    let metrics = serde_json::to_value(&head.metrics).unwrap_or_default();
    let train_examples = head.metrics.get("train_examples").copied().unwrap_or(0.0) as i32;
    registry::insert_candidate(
        pool,
        &NewVersion {
            model: MODEL,
            version,
            job_id: Some(job.id),
            artifact_key: &key,
            metrics: metrics.clone(),
            baseline_version: baseline.and(current.as_ref()).map(|c| c.version.as_str()),
            baseline_metrics: baseline.map(|b| serde_json::to_value(b.as_metrics()).unwrap_or_default()),
            data_from: window.0,
            data_to: window.1,
            train_examples,
            eval_examples: i32::try_from(eval.examples).unwrap_or(i32::MAX),
        },
    )
    .await?;
    let against = match (baseline, &current) {
        (Some(b), Some(c)) => (c.version.clone(), b),
        _ => ("ranking by label frequency".to_owned(), frequencies),
    };
    let mut promote = train::should_promote(&eval, Some(&against.1), request.margin);
    let mut decision = decide("mAP", eval.map, &against.0, against.1.map, request.margin, promote);
    if let Some(b) = &bench {
        let (c, p) = (b.candidate.precision_at_5, b.promoted.precision_at_5);
        let versus = current.as_ref().map_or_else(|| "no classifier".to_owned(), |v| v.version.clone());
        let holds = c >= p - b.tolerance;
        decision.push_str(&format!(
            "; on the hashtag benchmark ({} held-out clips) P@5 {c:.2} against {p:.2} with {versus}: {}",
            b.candidate.clips,
            if holds { "no worse" } else { "worse, so not promoted" }
        ));
        promote &= holds;
    }
    let status = settle(pool, MODEL, version, promote, &decision).await?;
    reelq_shared::metrics::get().model_versions.with_label_values(&[MODEL, status]).inc();
    tracing::info!(model = MODEL, version, status, map = eval.map, baseline = baseline.map(|b| b.map), "hashtag classifier trained");
    Ok(json!({
        "version": version,
        "status": status,
        "decision": decision,
        "metrics": metrics,
        "baseline": baseline.map(|b: Evaluation| json!({ "version": current.as_ref().map(|c| c.version.clone()), "metrics": b.as_metrics() })),
        "label_frequency_baseline": frequencies.as_metrics(),
        "benchmark": bench.as_ref().map(|b| json!({ "clips": b.candidate.clips, "candidate": b.candidate, "promoted": b.promoted, "tolerance": b.tolerance })),
        "labels": head.labels.len(),
        "image_model": head.image_model,
        "image_dim": head.image_dim,
        "artifact_key": key,
        "fit_seconds": round3(fit_secs),
    }))
}

/// A candidate classifier's figures on the hashtag benchmark beside the promoted version's.
struct BenchmarkJudgement {
    candidate: reelq_analysis::evaluate::Figures,
    promoted: reelq_analysis::evaluate::Figures,
    tolerance: f64,
}

/// Runs the configured hashtag benchmark (`hashtags.benchmark`) with the candidate and with the
/// promoted classifier (or none) and ranker; `None` when no benchmark is configured. A benchmark that
/// cannot be read fails the job as retryable: an operator asked for the check.
async fn judge_on_benchmark(
    pipeline: &Arc<Pipeline>,
    candidate: (Option<LinearHead>, Arc<Ranker>),
    promoted: (Option<LinearHead>, Arc<Ranker>),
    cancel: &CancellationToken,
) -> Result<Option<BenchmarkJudgement>, JobError> {
    let settings = &pipeline.settings().hashtags;
    let Some(dir) = settings.benchmark.clone() else { return Ok(None) };
    let tolerance = settings.benchmark_tolerance;
    let (pipeline, cancel) = (pipeline.clone(), cancel.clone());
    let started = Instant::now();
    let figures = tokio::task::spawn_blocking(move || {
        let stop = || cancel.is_cancelled();
        let variants = [Variant { head: candidate.0.as_ref(), ranker: &candidate.1 }, Variant { head: promoted.0.as_ref(), ranker: &promoted.1 }];
        reelq_analysis::evaluate::judge(&pipeline, Path::new(&dir), &variants, &stop)
    })
    .await
    .map_err(|e| JobError::Retryable(format!("benchmark thread failed: {e}")))?
    .map_err(|e| match e {
        reelq_analysis::AnalysisError::Stopped => JobError::Stopped("cancelled"),
        other => JobError::Retryable(format!("the hashtag benchmark could not be run: {other}")),
    })?;
    let [candidate, promoted] = figures[..] else { return Err(JobError::Retryable("the hashtag benchmark gave no figures".into())) };
    tracing::info!(
        p_at_5 = candidate.precision_at_5,
        promoted_p_at_5 = promoted.precision_at_5,
        secs = started.elapsed().as_secs_f64(),
        "hashtag benchmark run"
    );
    Ok(Some(BenchmarkJudgement { candidate, promoted, tolerance }))
}

/// A post the ranker is refitted on, before the vocabulary turns it into candidates.
struct RawPost {
    at: DateTime<Utc>,
    id: String,
    spans: Vec<TextSpan>,
    /// The sentence embedding of its text.
    vector: Vec<f32>,
    /// With `#`.
    tags: Vec<String>,
}

/// The transcript (less the speech the recogniser doubted, below `min_speech_logprob`),
/// on-screen text and caption of each feedback job, as the hashtags read them.
async fn feedback_spans(
    pool: &PgPool,
    feedback: &[feedback::FeedbackExample],
    min_speech_logprob: Option<f32>,
) -> Result<HashMap<Uuid, Vec<TextSpan>>, JobError> {
    let ids: Vec<Uuid> = feedback.iter().map(|f| f.job_id).collect();
    let mut out: HashMap<Uuid, Vec<TextSpan>> = HashMap::new();
    for chunk in ids.chunks(1_000) {
        for r in results::of_jobs(pool, chunk, &["transcript".to_owned(), "ocr".to_owned()]).await? {
            let spans = out.entry(r.job_id).or_default();
            let (list, source) = if r.analysis == "transcript" { ("segments", SpanSource::Transcript) } else { ("texts", SpanSource::OnScreenText) };
            for item in r.payload.get(list).and_then(Value::as_array).into_iter().flatten() {
                let Some(text) = item.get("text").and_then(Value::as_str).filter(|t| !t.trim().is_empty()) else { continue };
                let logprob = item.get("avg_logprob").and_then(Value::as_f64).map(|l| l as f32);
                if source == SpanSource::Transcript && !heard_clearly(logprob, min_speech_logprob) {
                    continue;
                }
                let time_secs = item.get("start").or_else(|| item.get("frames").and_then(|f| f.get(0))).and_then(Value::as_f64);
                spans.push(TextSpan { source, text: text.to_owned(), time_secs });
            }
        }
    }
    for f in feedback {
        if let Some(caption) = f.caption.as_deref().filter(|c| !c.trim().is_empty()) {
            out.entry(f.job_id).or_default().push(TextSpan { source: SpanSource::Caption, text: caption.to_owned(), time_secs: None });
        }
    }
    Ok(out)
}

/// Refits the hashtag ranker on `posts` (pulled videos and feedback), starting from the
/// promoted version (or the shipped weights): the oldest posts fit it, the newest
/// `request.holdout` judge it beside the version in use, and it is promoted only when its P@5
/// there is at least `request.margin` higher and, with a benchmark configured, it is no worse
/// on the benchmark. The returned value describes it.
async fn train_ranker(
    trainer: &Trainer<'_>,
    cancel: &CancellationToken,
    job: &JobRecord,
    version: &str,
    mut posts: Vec<RawPost>,
    text_model: &str,
    request: &TrainingRequest,
) -> Result<Value, JobError> {
    const MODEL: &str = "ranker";
    let (pool, store, pipeline) = (trainer.pool, trainer.store, trainer.pipeline);
    if posts.len() < MIN_RANKER_POSTS {
        return Ok(
            json!({ "status": "skipped", "reason": format!("{} posts with text and hashtags; at least {MIN_RANKER_POSTS} are needed", posts.len()) }),
        );
    }
    let current = registry::promoted(pool, MODEL).await?;
    let in_use: Arc<Ranker> = match &current {
        Some(c) => Arc::new(
            Ranker::from_json(&store.get_bytes(&c.artifact_key, MAX_ARTIFACT_BYTES).await?)
                .map_err(|e| JobError::Retryable(format!("the promoted ranker's artifact is unreadable: {e}")))?,
        ),
        None => Ranker::shipped_arc(),
    };
    let in_use_name = current.as_ref().map_or_else(|| format!("the shipped weights ({})", in_use.version), |c| c.version.clone());
    posts.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
    let window = (posts.first().map(|p| p.at), posts.last().map(|p| p.at));
    let held = ((posts.len() as f64 * request.holdout).round() as usize).clamp(1, posts.len() - 1);
    let cut = posts.len() - held;
    let started = Instant::now();
    let (pipe, prior, model, name, tags) = (pipeline.clone(), in_use.clone(), text_model.to_owned(), version.to_owned(), trainer.pulled_tags.clone());
    let (candidate, fit, eval, baseline, posts_secs, head) = tokio::task::spawn_blocking(move || -> Result<_, reelq_analysis::AnalysisError> {
        let mut vocab = pipe.vocabulary().clone();
        vocab.grow(&tags);
        let generic: BTreeSet<String> = vocab.entries().iter().filter(|e| e.generic).map(|e| e.tag.clone()).collect();
        let mut built = Vec::with_capacity(posts.len());
        let building = Instant::now();
        let descriptions: reelq_analysis::hashtags::Descriptions = pipe.description_vectors(&model, &vocab)?.into();
        for p in posts {
            let similarity = reelq_analysis::hashtags::similarities(&descriptions, &p.vector);
            built.push(Post::new(&vocab, p.id, &p.spans, Some((similarity, descriptions.clone())), &p.tags));
        }
        let posts_secs = building.elapsed().as_secs_f64();
        let (fit_on, held_out) = built.split_at(cut);
        let opts = pipe.settings().hashtags.rank_options(&prior);
        let (candidate, fit) = evaluate::fit_on_posts(&prior, fit_on, &opts, &generic, &name, RANKER_EPOCHS);
        let eval = evaluate::post_figures(held_out, &candidate, &opts, &generic);
        let baseline = evaluate::post_figures(held_out, &prior, &opts, &generic);
        // The classifier in use, for the benchmark (it reads a configured file: blocking).
        let head = pipe.models().hashtag_head()?.as_deref().cloned();
        Ok((candidate, fit, eval, baseline, posts_secs, head))
    })
    .await
    .map_err(|e| JobError::Retryable(format!("ranker thread failed: {e}")))?
    .map_err(|e| JobError::Retryable(format!("the ranker could not be fitted: {e}")))?;
    let fit_secs = started.elapsed().as_secs_f64();
    if cancel.is_cancelled() {
        return Err(JobError::Stopped("cancelled"));
    }
    let candidate = Arc::new(candidate);
    let bench = judge_on_benchmark(pipeline, (head.clone(), candidate.clone()), (head, in_use.clone()), cancel).await?;

    let as_metrics = |f: &Figures| json!({ "p_at_5": round3(f.precision_at_5), "hit_at_5": round3(f.hit_at_5), "r_at_10": round3(f.recall_at_10), "mrr": round3(f.mrr) });
    let mut metrics = as_metrics(&eval);
    metrics["train_posts"] = json!(cut);
    metrics["min_score"] = json!(round3(f64::from(candidate.min_score)));
    if let Some(b) = &bench {
        metrics["benchmark_p_at_5"] = json!(round3(b.candidate.precision_at_5));
        metrics["benchmark_hit_at_5"] = json!(round3(b.candidate.hit_at_5));
    }
    let key = artifact_key(MODEL, version);
    store.put_bytes(&key, candidate.to_json(), "application/json").await?;
    registry::insert_candidate(
        pool,
        &NewVersion {
            model: MODEL,
            version,
            job_id: Some(job.id),
            artifact_key: &key,
            metrics: metrics.clone(),
            baseline_version: current.as_ref().map(|c| c.version.as_str()),
            baseline_metrics: Some(as_metrics(&baseline)),
            data_from: window.0,
            data_to: window.1,
            train_examples: i32::try_from(cut).unwrap_or(i32::MAX),
            eval_examples: i32::try_from(held).unwrap_or(i32::MAX),
        },
    )
    .await?;
    let (c, p) = (eval.precision_at_5, baseline.precision_at_5);
    let mut promote = held >= MIN_RANKER_HELD_OUT && c >= p + request.margin;
    let mut decision = if promote {
        format!("promoted: held-out P@5 {c:.3} over {held} posts beats {in_use_name} ({p:.3}) by at least {}", request.margin)
    } else if held < MIN_RANKER_HELD_OUT {
        format!("not promoted: {held} held-out posts, at least {MIN_RANKER_HELD_OUT} are needed to judge (P@5 {c:.3} against {p:.3})")
    } else {
        format!("not promoted: held-out P@5 {c:.3} over {held} posts does not beat {in_use_name} ({p:.3}) by {}", request.margin)
    };
    if let Some(b) = &bench {
        let (bc, bp) = (b.candidate.precision_at_5, b.promoted.precision_at_5);
        let holds = bc >= bp - b.tolerance;
        decision.push_str(&format!(
            "; on the hashtag benchmark ({} held-out clips) P@5 {bc:.2} against {bp:.2}: {}",
            b.candidate.clips,
            if holds { "no worse" } else { "worse, so not promoted" }
        ));
        if promote && !holds {
            decision = decision.replacen("promoted:", "not promoted:", 1);
        }
        promote &= holds;
    }
    let status = settle(pool, MODEL, version, promote, &decision).await?;
    reelq_shared::metrics::get().model_versions.with_label_values(&[MODEL, status]).inc();
    tracing::info!(model = MODEL, version, status, p_at_5 = c, baseline = p, "hashtag ranker refitted");
    Ok(json!({
        "version": version,
        "status": status,
        "decision": decision,
        "metrics": metrics,
        "baseline": { "version": in_use_name, "metrics": as_metrics(&baseline) },
        "fit": as_metrics(&fit),
        "posts": { "train": cut, "held_out": held },
        "benchmark": bench.as_ref().map(|b| json!({ "clips": b.candidate.clips, "candidate": b.candidate, "promoted": b.promoted, "tolerance": b.tolerance })),
        "weights": candidate.features.iter().zip(&candidate.weights).map(|(f, w)| (f.clone(), json!(round3(f64::from(*w))))).collect::<serde_json::Map<_, _>>(),
        "artifact_key": key,
        "fit_seconds": round3(fit_secs),
        "candidates_seconds": round3(posts_secs),
    }))
}

/// Trains, judges and registers the virality regressor.
#[allow(clippy::too_many_arguments)]
async fn train_virality(
    pool: &PgPool,
    store: &Store,
    job: &JobRecord,
    version: &str,
    feature_model: &str,
    raw: Vec<(i64, Vec<f32>, reelq_shared::engagement::Counts)>,
    request: &TrainingRequest,
    window: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) -> Result<Value, JobError> {
    const MODEL: &str = "virality";
    if raw.len() < 10 {
        return Ok(json!({ "status": "skipped", "reason": format!("{} pulled videos; at least 10 are needed", raw.len()) }));
    }
    let current = registry::promoted(pool, MODEL).await?;
    let current_model = match &current {
        Some(c) => Some(
            ViralityRegressor::from_json(&store.get_bytes(&c.artifact_key, MAX_ARTIFACT_BYTES).await?)
                .map_err(|e| JobError::Retryable(format!("the promoted regressor's artifact is unreadable: {e}")))?,
        ),
        None => None,
    };
    let samples: Vec<Sample> = raw.into_iter().map(|(at, features, counts)| Sample { at, features, counts }).collect();
    let opts = RegressorOptions { holdout: request.holdout, ..RegressorOptions::default() };
    let (version_s, feature_model_s) = (version.to_owned(), feature_model.to_owned());
    let started = Instant::now();
    let (model, eval, baseline) = tokio::task::spawn_blocking(move || {
        // Only the held-out part is copied, for judging the promoted model; `train` splits the
        // re-joined (still time-ordered) samples the same way.
        let (mut samples, held_out) = virality::split_by_time(samples, opts.holdout);
        samples.extend(held_out.iter().cloned());
        let (model, eval) = virality::train(&version_s, &feature_model_s, samples, &opts)?;
        // The promoted model is judged on the same held-out videos, scored with this pull's
        // correlations, only if it reads the same features.
        let baseline =
            current_model.filter(|c| c.feature_model == feature_model_s && c.dim == model.dim).map(|c| c.evaluate_against(&held_out, &model.correlations));
        Ok::<_, virality::RegressorError>((model, eval, baseline))
    })
    .await
    .map_err(|e| JobError::Retryable(format!("training thread failed: {e}")))?
    .map_err(|e| JobError::Fatal { code: JobErrorCode::InvalidRequest, message: e.to_string() })?;
    let fit_secs = started.elapsed().as_secs_f64();

    let key = artifact_key(MODEL, version);
    store.put_bytes(&key, model.to_json(), "application/json").await?;
    let metrics = serde_json::to_value(&model.metrics).unwrap_or_default();
    registry::insert_candidate(
        pool,
        &NewVersion {
            model: MODEL,
            version,
            job_id: Some(job.id),
            artifact_key: &key,
            metrics: metrics.clone(),
            baseline_version: current.as_ref().map(|c| c.version.as_str()),
            baseline_metrics: baseline
                .as_ref()
                .map(|b| json!({ "spearman": b.spearman, "spearman_views": b.spearman_views, "eval_examples": b.examples })),
            data_from: window.0,
            data_to: window.1,
            train_examples: model.metrics.get("train_examples").copied().unwrap_or(0.0) as i32,
            eval_examples: i32::try_from(eval.examples).unwrap_or(i32::MAX),
        },
    )
    .await?;
    // A constant prediction ranks nothing (Spearman 0): the first version must beat that.
    let against = match (&baseline, &current) {
        (Some(b), Some(c)) => (c.version.clone(), b.spearman),
        _ => ("a constant prediction".to_owned(), 0.0),
    };
    let promote = eval.examples > 0 && eval.spearman > 0.0 && eval.spearman >= against.1 + request.margin;
    let decision = decide("Spearman", eval.spearman, &against.0, against.1, request.margin, promote);
    let status = settle(pool, MODEL, version, promote, &decision).await?;
    reelq_shared::metrics::get().model_versions.with_label_values(&[MODEL, status]).inc();
    tracing::info!(model = MODEL, version, status, spearman = eval.spearman, "virality regressor trained");
    Ok(json!({
        "version": version,
        "status": status,
        "decision": decision,
        "metrics": metrics,
        "baseline": baseline.map(|b| json!({ "version": current.as_ref().map(|c| c.version.clone()), "spearman": b.spearman, "spearman_views": b.spearman_views })),
        "artifact_key": key,
        "fit_seconds": round3(fit_secs),
    }))
}

fn decide(figure: &str, value: f64, against: &str, baseline: f64, margin: f64, promote: bool) -> String {
    if promote {
        format!("{figure} {value:.4} beats {against} ({baseline:.4}) on the same held-out examples by at least {margin}")
    } else {
        format!("{figure} {value:.4} does not beat {against} ({baseline:.4}) on the same held-out examples by {margin}")
    }
}

async fn settle(pool: &PgPool, model: &str, version: &str, promote: bool, decision: &str) -> Result<&'static str, JobError> {
    if promote {
        let mut conn = pool.acquire().await.map_err(|e| JobError::Retryable(format!("database: {e}")))?;
        if registry::promote(&mut conn, model, version, decision).await? {
            return Ok("promoted");
        }
        // Already settled by an earlier attempt of this job.
        return Ok(registry::get(pool, model, version).await?.map_or("candidate", |v| if v.status == "promoted" { "promoted" } else { "retired" }));
    }
    registry::reject(pool, model, version, decision).await?;
    Ok("rejected")
}

/// Fills in `embeddings` of feedback examples that have none: from what an earlier run stored
/// (`example_embeddings`, text hash `media`), else by decoding the job's video through the
/// pipeline, for at most `budget` videos. Returns how many videos were decoded. A video that
/// is gone or unreadable leaves its example to the caption.
async fn media_embeddings(
    trainer: &Trainer<'_>,
    feedback: &mut [feedback::FeedbackExample],
    text_model: &str,
    budget: u32,
    cancel: &CancellationToken,
) -> Result<usize, JobError> {
    let missing: Vec<String> = feedback.iter().filter(|f| f.embeddings.is_none() && f.video_id.is_some()).map(|f| f.job_id.to_string()).collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let stored: HashMap<String, Vec<f32>> = registry::embeddings(trainer.pool, "feedback", "text", text_model, &missing)
        .await?
        .into_iter()
        .filter(|e| e.text_hash == MEDIA_HASH)
        .map(|e| (e.item_id, e.vector))
        .collect();
    let models = trainer.pipeline.models().clone();
    let image_model = tokio::task::spawn_blocking(move || models.image_encoder().map(|e| e.map(|e| e.model().to_string())))
        .await
        .map_err(|e| JobError::Retryable(format!("model thread failed: {e}")))??;
    let stored_images: HashMap<String, Vec<f32>> = match &image_model {
        Some(m) => registry::embeddings(trainer.pool, "feedback", "image", m, &missing).await?.into_iter().map(|e| (e.item_id, e.vector)).collect(),
        None => HashMap::new(),
    };
    let mut decoded = 0usize;
    for f in feedback.iter_mut().filter(|f| f.embeddings.is_none()) {
        let (Some(video_id), id) = (f.video_id, f.job_id.to_string()) else { continue };
        if let Some(text) = stored.get(&id) {
            let image = image_model.as_ref().and_then(|m| stored_images.get(&id).map(|v| (m, v)));
            f.embeddings = Some(embeddings_payload(text_model, text, image));
            continue;
        }
        if decoded as u32 >= budget || cancel.is_cancelled() {
            continue;
        }
        match decode_embeddings(trainer, f.tenant_id, video_id, f.caption.clone(), cancel).await {
            Ok(Some(payload)) => {
                decoded += 1;
                for kind in ["text", "image"] {
                    let part = payload.get(kind).filter(|p| !p.is_null());
                    let (Some(model), Some(vector)) = (
                        part.and_then(|p| p.get("model")).and_then(model_name),
                        part.and_then(|p| serde_json::from_value::<Vec<f32>>(p.get("vector")?.clone()).ok()),
                    ) else {
                        continue;
                    };
                    let row = StoredEmbedding { item_id: id.clone(), text_hash: MEDIA_HASH.to_owned(), vector };
                    registry::store_embeddings(trainer.pool, "feedback", kind, &model, std::slice::from_ref(&row)).await?;
                }
                f.embeddings = Some(payload);
            }
            Ok(None) => {}
            Err(JobError::Retryable(e)) => return Err(JobError::Retryable(e)),
            Err(JobError::Stopped(why)) => return Err(JobError::Stopped(why)),
            Err(JobError::Fatal { message, .. }) => tracing::warn!(job_id = %f.job_id, error = %message, "feedback video unusable; its caption stands in"),
        }
    }
    Ok(decoded)
}

/// Image embeddings of the pulled videos among `ids` that have their own file: those stored
/// by earlier runs, plus up to `budget` computed now. Returns them by id with the image model
/// and how many videos were decoded. Without an image encoder there are none.
async fn scraped_media(
    trainer: &Trainer<'_>,
    ids: &[String],
    budget: u32,
    cancel: &CancellationToken,
) -> Result<(HashMap<String, Vec<f32>>, Option<String>, usize), JobError> {
    let models = trainer.pipeline.models().clone();
    let image_model = tokio::task::spawn_blocking(move || models.image_encoder().map(|e| e.map(|e| e.model().to_string())))
        .await
        .map_err(|e| JobError::Retryable(format!("model thread failed: {e}")))??;
    let Some(model) = image_model else { return Ok((HashMap::new(), None, 0)) };
    let mut keys: Vec<(String, String)> = Vec::new();
    for chunk in ids.chunks(10_000) {
        keys.extend(reelq_shared::db::scraped::video_keys(trainer.pool, chunk).await?);
    }
    let mut out: HashMap<String, Vec<f32>> = HashMap::new();
    let with_files: Vec<String> = keys.iter().map(|(id, _)| id.clone()).collect();
    for chunk in with_files.chunks(10_000) {
        out.extend(registry::embeddings(trainer.pool, "scraped", "image", &model, chunk).await?.into_iter().map(|e| (e.item_id, e.vector)));
    }
    let mut decoded = 0usize;
    let missing: Vec<&(String, String)> = keys.iter().filter(|(id, _)| !out.contains_key(id)).collect();
    for (id, key) in missing {
        if decoded as u32 >= budget || cancel.is_cancelled() {
            break;
        }
        match decode_image(trainer, key, cancel).await {
            Ok(Some(v)) => {
                decoded += 1;
                let row = StoredEmbedding { item_id: id.clone(), text_hash: MEDIA_HASH.to_owned(), vector: v.vector };
                registry::store_embeddings(trainer.pool, "scraped", "image", &v.model.to_string(), std::slice::from_ref(&row)).await?;
                out.insert(row.item_id, row.vector);
            }
            Ok(None) => {}
            Err(JobError::Fatal { message, .. }) => tracing::warn!(video = %id, error = %message, "pulled video unusable; trained on its text alone"),
            Err(other) => return Err(other),
        }
    }
    Ok((out, Some(model), decoded))
}

/// Downloads a pulled video's file and embeds its frames; `None` when the file is gone.
async fn decode_image(trainer: &Trainer<'_>, key: &str, cancel: &CancellationToken) -> Result<Option<EmbeddingVector>, JobError> {
    with_video(trainer, key, None, cancel, |pipeline, session| Ok(pipeline.image_embedding(&session)?)).await.map(Option::flatten)
}

/// Downloads `key`, probes it against the limits, decodes it for `embeddings`, and runs `f`
/// on the session, all off the async threads; `None` when the object is gone.
async fn with_video<T: Send + 'static>(
    trainer: &Trainer<'_>,
    key: &str,
    caption: Option<String>,
    cancel: &CancellationToken,
    f: impl FnOnce(&Pipeline, Session) -> Result<T, JobError> + Send + 'static,
) -> Result<Option<T>, JobError> {
    let dir =
        tempfile::Builder::new().prefix("reelq-train-").tempdir_in(trainer.scratch).map_err(|e| JobError::Retryable(format!("scratch space: {e}")))?;
    let path = dir.path().join("input");
    match trainer.store.download_to_file(key, &path).await {
        Ok(_) => {}
        Err(reelq_shared::storage::StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let (pipeline, limits, stop) = (trainer.pipeline.clone(), trainer.media.clone(), cancel.clone());
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let probe = crate::media::probe::probe(&path, &limits)?;
            let input = Input { path, probe, options: JobOptions { caption, ..JobOptions::default() }, pulled: Default::default(), creator: None };
            let session = pipeline.start(input, &[Analysis::Embeddings], &|| stop.is_cancelled())?;
            let out = f(&pipeline, session);
            drop(dir);
            out.map(Some)
        })
    })
    .await
    .map_err(|e| JobError::Retryable(format!("decode thread failed: {e}")))?
}

/// Marks stored feedback vectors computed from the video rather than a caption.
const MEDIA_HASH: &str = "media";

fn embeddings_payload(text_model: &str, text: &[f32], image: Option<(&String, &Vec<f32>)>) -> Value {
    let id = |m: &str| {
        let (name, version) = m.rsplit_once('@').unwrap_or((m, ""));
        json!({ "name": name, "version": version })
    };
    json!({
        "text": { "model": id(text_model), "vector": text },
        "image": image.map(|(m, v)| json!({ "model": id(m), "vector": v })),
    })
}

/// Downloads a feedback job's video and runs the `embeddings` analysis on it; `None` when the
/// video is gone.
async fn decode_embeddings(
    trainer: &Trainer<'_>,
    tenant: uuid::Uuid,
    video_id: uuid::Uuid,
    caption: Option<String>,
    cancel: &CancellationToken,
) -> Result<Option<Value>, JobError> {
    let Some(video) = reelq_shared::db::videos::get(trainer.pool, tenant, video_id).await? else { return Ok(None) };
    with_video(trainer, &video.object_key, caption, cancel, |pipeline, mut session| Ok(pipeline.run(&mut session, Analysis::Embeddings)?.payload()?)).await
}

/// The stored `kind` vector of an `embeddings` result, if it came from `model`.
fn stored_vector(payload: Option<&Value>, kind: &str, model: &str) -> Option<Vec<f32>> {
    let part = payload?.get(kind)?;
    (model_name(part.get("model")?)? == model).then(|| serde_json::from_value(part.get("vector")?.clone()).ok())?
}

/// `name@version` of a serialised model id.
fn model_name(v: &Value) -> Option<String> {
    Some(format!("{}@{}", v.get("name")?.as_str()?, v.get("version")?.as_str()?))
}

/// Vectors for every `(item, text)`, embedding only those with no stored vector for the same
/// text; returns them by item with the number embedded now.
async fn embed_missing(
    pool: &PgPool,
    embedder: &Arc<TextEmbedder>,
    source: &str,
    model: &str,
    texts: &[(String, String)],
    cancel: &CancellationToken,
) -> Result<(HashMap<String, Vec<f32>>, usize), JobError> {
    let mut out: HashMap<String, Vec<f32>> = HashMap::with_capacity(texts.len());
    let (mut embedded, mut unique_embedded) = (0usize, 0usize);
    for chunk in texts.chunks(EMBED_CHUNK * 40) {
        let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
        let stored: BTreeMap<String, StoredEmbedding> =
            registry::embeddings(pool, source, "text", model, &ids).await?.into_iter().map(|e| (e.item_id.clone(), e)).collect();
        let mut missing: Vec<(String, String, String)> = Vec::new();
        for (id, text) in chunk {
            if text.is_empty() {
                continue;
            }
            let hash = hex::encode(Sha256::digest(text.as_bytes()));
            match stored.get(id) {
                Some(e) if e.text_hash == hash => {
                    out.insert(id.clone(), e.vector.clone());
                }
                _ => missing.push((id.clone(), text.clone(), hash)),
            }
        }
        // Each distinct text is embedded once (reposts and template captions repeat), and
        // texts of similar length share a model call, so little of it is padding.
        let mut unique: Vec<(&str, &str)> = Vec::new();
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (_, text, hash) in &missing {
            if seen.insert(hash.as_str()) {
                unique.push((hash.as_str(), text.as_str()));
            }
        }
        unique.sort_by_key(|(_, t)| t.len());
        let mut by_hash: HashMap<String, Vec<f32>> = HashMap::with_capacity(unique.len());
        for batch in unique.chunks(EMBED_CHUNK) {
            if cancel.is_cancelled() {
                return Err(JobError::Stopped("cancelled"));
            }
            let (e, owned) = (embedder.clone(), batch.iter().map(|(_, t)| (*t).to_owned()).collect::<Vec<_>>());
            let span = tracing::Span::current();
            let vectors = tokio::task::spawn_blocking(move || span.in_scope(|| e.embed(&owned.iter().map(String::as_str).collect::<Vec<_>>())))
                .await
                .map_err(|e| JobError::Retryable(format!("model thread failed: {e}")))??;
            by_hash.extend(batch.iter().map(|(h, _)| (*h).to_owned()).zip(vectors));
        }
        for rows in missing.chunks(EMBED_CHUNK) {
            let rows: Vec<StoredEmbedding> = rows
                .iter()
                .filter_map(|(id, _, hash)| by_hash.get(hash).map(|v| StoredEmbedding { item_id: id.clone(), text_hash: hash.clone(), vector: v.clone() }))
                .collect();
            registry::store_embeddings(pool, source, "text", model, &rows).await?;
            embedded += rows.len();
            out.extend(rows.into_iter().map(|r| (r.item_id, r.vector)));
        }
        unique_embedded += by_hash.len();
    }
    tracing::info!(source, embedded, distinct_texts = unique_embedded, "examples embedded");
    Ok((out, embedded))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_vectors_are_used_only_from_the_same_model() {
        let payload = json!({ "text": { "model": { "name": "minilm", "version": "1" }, "vector": [0.5, 0.5] }, "image": null });
        assert_eq!(stored_vector(Some(&payload), "text", "minilm@1"), Some(vec![0.5, 0.5]));
        assert_eq!(stored_vector(Some(&payload), "text", "other@1"), None);
        assert_eq!(stored_vector(Some(&payload), "image", "minilm@1"), None);
    }
}
