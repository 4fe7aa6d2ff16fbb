//! Hashtag suggestions: the candidate tags of a video, each with the features and evidence
//! that make it one, scored by a fitted logistic model ([`ranker`]).
//!
//! Candidates come from the vocabulary ([`vocabulary`]: the curated seed, pulled data's
//! hashtags, the classifier's labels) and from the video itself: a tag whose name or keywords
//! were said, shown or captioned, whose words the video spells out as a phrase ("leg day" for
//! #legday), that the creator wrote in the caption, that the classifier or the image model
//! rates, or whose description is among the nearest to what the video says by text embedding;
//! and new tags the video spells out (a short on-screen line, a caption hashtag, words said
//! at least twice). The ranker turns each candidate's features into the probability that a
//! creator would post it. Generic tags (#fyp, #viral) only fill slots no specific tag with
//! enough score wants, and at most `max_generic` of them. One feature looks at the candidates
//! together: how near a tag's description is to those of the video's likeliest other tags, so
//! that a tag off the video's main topic (#breakfast for a "morning" said in a gym video) counts
//! less than one that agrees with the rest.
//!
//! When a job names its creator, the tags that creator chose for their latest posts are a prior:
//! a tag the content already supports (a score of at least half `min_score`) and that the creator
//! used in a share `u` of those posts gains `3·u` in log-odds over the ranker's probability,
//! with the history as evidence. A tag the content does not support is never
//! added, however often it was used. (No labelled data says yet how much a habit should weigh,
//! so this one weight is set, not fitted.)

pub mod ranker;
pub mod shipped_vectors;
pub mod vocabulary;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use reelq_inference::embedding::cosine;
use serde::Serialize;

pub use ranker::Ranker;
use vocabulary::GENERIC;
pub use vocabulary::{PulledTags, VocabEntry, VocabSource, Vocabulary, normalise_tag, stem, variant_key};

/// What a creator's habit adds to a supported tag's log-odds, times the share of their posts
/// that carried it.
const W_CREATOR: f32 = 3.0;

/// A suggested tag's first variant (#surf after #surfing) scores this share of the tag's own
/// score, and each further variant of it `VARIANT_STEP` of the one before: the variants of a
/// confident tag come after the other tags the video supports well and before weak guesses.
/// Set on the hashtag benchmark's tuning half and on clips outside it, not fitted by the
/// ranker (pulled posts are labelled by entry, so they cannot judge it).
const VARIANT_SHARE: f32 = 0.6;
const VARIANT_STEP: f32 = 0.9;

/// The vocabulary's description embeddings, in vocabulary order, shared by the jobs and posts
/// ranked against them.
pub type Descriptions = Arc<[Arc<Vec<f32>>]>;

/// The cosine of a sentence embedding `to` with each of `descriptions` (unit vectors, in
/// vocabulary order): the text-similarity signal.
pub fn similarities(descriptions: &[Arc<Vec<f32>>], to: &[f32]) -> Vec<f32> {
    descriptions.iter().map(|d| d.iter().zip(to).map(|(a, b)| a * b).sum()).collect()
}

/// `p` moved by `by` in log-odds.
fn lifted(p: f32, by: f32) -> f32 {
    1.0 / (1.0 + (-(logit(p) + by)).exp())
}

fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// What a creator chose for their latest posts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CreatorHistory {
    /// Posts read.
    pub posts: usize,
    /// Tag (lower case, with `#`) → in how many of those posts it was chosen.
    pub uses: BTreeMap<String, usize>,
}

impl CreatorHistory {
    /// From the tags chosen for each post; a tag counts once per post.
    pub fn from_posts(posts: &[Vec<String>]) -> Self {
        let mut uses: BTreeMap<String, usize> = BTreeMap::new();
        for post in posts {
            let tags: BTreeSet<String> = post.iter().filter_map(|t| normalise_tag(t)).collect();
            for tag in tags {
                *uses.entry(tag).or_default() += 1;
            }
        }
        Self { posts: posts.len(), uses }
    }
}

/// A piece of text the video carries.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSpan {
    pub source: SpanSource,
    pub text: String,
    /// When in the video it was said or shown.
    pub time_secs: Option<f64>,
}

/// Whether a transcript segment with mean token log-probability `avg_logprob` is read for the
/// hashtags, given the least one `min` (`hashtags.min_speech_logprob`). Garbled speech (a niche
/// word under music heard as an everyday one) otherwise pulls in tags about what it was misheard
/// as. A segment of unknown confidence (stored before it was recorded) is read.
pub fn heard_clearly(avg_logprob: Option<f32>, min: Option<f32>) -> bool {
    match (avg_logprob, min) {
        (Some(l), Some(m)) => l >= m,
        _ => true,
    }
}

/// Where a piece of text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanSource {
    Transcript,
    OnScreenText,
    Caption,
}

/// Why a tag was suggested.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// `transcript`, `on_screen_text`, `caption` (a word found there), `model` (a similarity or
    /// a classifier probability), `frame` (a frame that matched visually) or `creator` (the
    /// job's creator chose it for earlier posts).
    pub kind: &'static str,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_secs: Option<f64>,
}

/// One suggestion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub tag: String,
    /// 0–1.
    pub score: f32,
    /// The signals that contributed, strongest first.
    pub sources: Vec<&'static str>,
    pub evidence: Vec<Evidence>,
    pub generic: bool,
}

/// The per-entry scores of the model-based signals, in vocabulary order.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Cosine of the content embedding with each entry's description, and the model's name.
    pub text_similarity: Option<(Vec<f32>, String)>,
    /// Each entry's description embedding (vocabulary order), for how well candidates agree.
    pub descriptions: Option<Descriptions>,
    /// Visual similarity per entry, with the time of the best-matching frame.
    pub visual: Option<(Vec<(f32, f64)>, String)>,
    /// Classifier probability per entry (`None` for entries that are not its labels).
    pub classifier: Option<(Vec<Option<f32>>, String)>,
    /// The job's creator's latest choices.
    pub creator: Option<CreatorHistory>,
}

/// How many suggestions, and how strict.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankOptions {
    pub count: usize,
    pub max_generic: usize,
    /// Least probability a suggestion needs.
    pub min_score: f32,
    /// Take tags from the phrases the video spells out (on-screen lines, the caption's words
    /// and hashtags, words said twice), not only from the vocabulary.
    pub content_phrases: bool,
    /// How many of a suggested tag's variants (the other forms its entry merges, such as
    /// #surfer and #surf for #surfing) may follow it as suggestions of their own. Creators post
    /// several forms of one topic's tag; the entry's own tag always ranks first.
    pub variants: usize,
}

/// Entries nearest the content by text embedding that are scored even without a word in
/// common, and as many again of the broad niche tags (whose general descriptions rarely come
/// nearest).
const TEXT_NEIGHBOURS: usize = 25;
const BROAD_NEIGHBOURS: usize = 12;
/// Entries nearest the frames by the image model that are scored without other support.
const VISUAL_NEIGHBOURS: usize = 15;
/// Least classifier probability that makes an entry a candidate on its own.
const MIN_CLASSIFIER: f32 = 0.05;
/// How many of the likeliest specific candidates a tag's coherence is measured against.
const COHERENT: usize = 5;
/// Cosine of two entries' descriptions from which they count as near (#sourdough and #bread
/// 0.74, #nails and #nailart 0.77; #animals and #animalcrossing 0.40, #dog and #hotdog 0.40).
const RELATED: f32 = 0.5;

/// The first pass that picks those candidates: the prior weights, so that a candidate's
/// features do not depend on the weights that will score them.
static FIRST_PASS: LazyLock<Ranker> = LazyLock::new(Ranker::prior);

/// A tag the ranker scores: what it shows and the evidence behind it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub tag: String,
    pub generic: bool,
    /// Known to the vocabulary (not only spelled out by the video).
    pub known: bool,
    pub x: [f32; ranker::N],
    pub evidence: Vec<Evidence>,
    /// The other forms of the tag that its entry merges: one the video writes first, then ones it
    /// says, then the vocabulary's order.
    pub variants: Vec<String>,
}

fn feature(name: &str) -> usize {
    ranker::FEATURES.iter().position(|f| *f == name).unwrap_or(0)
}

/// The tags worth scoring for a video, each with its features: entries with a word, phrase,
/// classifier probability or visual match of their own, the entries nearest the content by
/// text embedding, and (with `content_phrases`) tags the video spells out that the vocabulary
/// does not know.
pub fn candidates(vocab: &Vocabulary, spans: &[TextSpan], signals: &Signals, content_phrases: bool) -> Vec<Candidate> {
    let words = index_words(spans);
    let phrases = if content_phrases { self::content_phrases(spans) } else { HashMap::new() };
    // Phrases that name a known entry (its tag, an alias or a variant), the strongest kept.
    let mut named: HashMap<usize, &Phrase> = HashMap::new();
    let mut new: Vec<&Phrase> = Vec::new();
    for p in phrases.values() {
        match vocab.find(&p.tag) {
            Some(i) => {
                let q = named.entry(i).or_insert(p);
                if (p.hashtag && !q.hashtag) || (p.hashtag == q.hashtag && p.count > q.count) {
                    *q = p;
                }
            }
            None => new.push(p),
        }
    }
    // The words of a compound that names an entry ("animal" in "animal crossing", "dog" in
    // "hot dog") speak for that entry and the tags near it, not for every tag they name alone.
    let mut inside: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
    for (&i, p) in &named {
        if !p.hashtag && p.words >= 2 {
            for w in p.text.split_whitespace() {
                inside.entry(stem(w)).or_default().push((i, p.count));
            }
        }
    }
    let related = |i: usize, j: usize| -> bool {
        let e = vocab.entries();
        i == j
            || e[i].broader.contains(&j)
            || e[j].broader.contains(&i)
            || signals.descriptions.as_ref().is_some_and(|d| match (d.get(i), d.get(j)) {
                (Some(a), Some(b)) if !a.is_empty() && a.len() == b.len() => cosine(a, b) >= RELATED,
                _ => false,
            })
    };
    let cut = |scores: &mut dyn Iterator<Item = f32>, k: usize| -> (f32, f32) {
        let mut all: Vec<f32> = scores.collect();
        all.sort_by(|a, b| b.total_cmp(a));
        (all.first().copied().unwrap_or(0.0), all.get(k.min(all.len().max(1)) - 1).copied().unwrap_or(f32::INFINITY))
    };
    let (text_best, text_cut) = match &signals.text_similarity {
        Some((sims, _)) => cut(&mut sims.iter().copied(), TEXT_NEIGHBOURS),
        None => (0.0, f32::INFINITY),
    };
    let broad_cut = match &signals.text_similarity {
        Some((sims, _)) => cut(&mut sims.iter().zip(vocab.entries()).filter(|(_, e)| e.broad).map(|(s, _)| *s), BROAD_NEIGHBOURS).1,
        None => f32::INFINITY,
    };
    let visual_cut = match &signals.visual {
        Some((sims, _)) => cut(&mut sims.iter().map(|s| s.0), VISUAL_NEIGHBOURS).1,
        None => f32::INFINITY,
    };

    // Entry `i` as a candidate with its features, or `None` when nothing supports it; a
    // `forced` one (the broader tag of a likely candidate) is measured whatever its support.
    let candidate = |i: usize, forced: bool| -> Option<Candidate> {
        let entry = &vocab.entries()[i];
        let mut x = [0.0f32; ranker::N];
        // A word counts for this entry unless every time it came was inside a compound that
        // names an unrelated one.
        let borrowed =
            |key: &str, times: usize| inside.get(key).is_some_and(|owners| owners.iter().any(|&(owner, count)| times <= count && !related(owner, i)));
        let found = keyword_match(entry, &words, borrowed);
        x[feature("name_said")] = f32::from(u8::from(found.name.contains(&SpanSource::Transcript)));
        x[feature("name_shown")] = f32::from(u8::from(found.name.contains(&SpanSource::OnScreenText)));
        x[feature("name_captioned")] = f32::from(u8::from(found.name.contains(&SpanSource::Caption)));
        x[feature("keywords")] = found.strength;
        x[feature("keywords_written")] = found.written;
        let mut evidence = found.evidence;
        // One other keyword found once is too weak to make a candidate on its own ("routine"
        // is in many tags' keywords): such a tag must also be near by a model.
        let weak = found.name.is_empty() && found.distinct == 1 && found.repeats == 0;
        let mut textual = !found.name.is_empty() || (found.strength > 0.0 && !weak);
        if let Some(p) = named.get(&i) {
            if p.hashtag {
                x[feature("caption_hashtag")] = 1.0;
                evidence.insert(0, p.evidence());
            } else if found.name.is_empty() {
                // A compound tag said or shown as its words ("meal prep" for #mealprep).
                x[feature("name_phrase")] = 1.0;
                evidence.insert(0, p.evidence());
            }
            textual = true;
        }
        x[feature("one_weak_word")] = f32::from(u8::from(weak && !named.contains_key(&i)));

        let mut modelled = false;
        if let Some((sims, model)) = &signals.text_similarity
            && let Some(&cos) = sims.get(i)
            && (forced || textual || weak || cos >= text_cut || (entry.broad && cos >= broad_cut))
        {
            x[feature("text_similarity")] = cos;
            x[feature("text_margin")] = cos - text_best;
            modelled |= cos >= text_cut || (entry.broad && cos >= broad_cut);
            if cos >= 0.25 {
                evidence.push(Evidence {
                    kind: "model",
                    text: format!("{model}: similarity {cos:.2} with the transcript and on-screen text"),
                    time_secs: None,
                });
            }
        }
        if let Some((probs, model)) = &signals.classifier
            && let Some(Some(p)) = probs.get(i)
            && *p > MIN_CLASSIFIER
        {
            x[feature("classifier")] = *p;
            modelled = true;
            evidence.push(Evidence { kind: "model", text: format!("classifier {model}: probability {p:.2}"), time_secs: None });
        }
        if let Some((sims, model)) = &signals.visual
            && let Some(&(cos, at)) = sims.get(i)
            && (textual || cos >= visual_cut)
        {
            let s = ((cos - 0.2) / 0.15).clamp(0.0, 1.0);
            if s > 0.0 {
                x[feature("visual")] = s;
                modelled = true;
                evidence.push(Evidence { kind: "frame", text: format!("{model}: frame matches with similarity {cos:.2}"), time_secs: Some(at) });
            }
        }
        if !(forced || textual || modelled) {
            return None;
        }
        x[feature("popularity")] = entry.popularity;
        x[feature("curated")] = f32::from(u8::from(entry.source == VocabSource::Curated));
        // A broad niche tag counts in proportion to how near the content it is, next to the
        // nearest tag of all: 1 as near, 0 from 0.25 below (and 0 without an embedding).
        if entry.broad {
            x[feature("broad")] = ((x[feature("text_margin")] + 0.25) / 0.25).clamp(0.0, 1.0) * f32::from(u8::from(signals.text_similarity.is_some()));
        }
        x[feature("generic")] = f32::from(u8::from(entry.generic));
        // The form the video writes (#surfer in the caption, "surfer" on screen) comes first,
        // then forms it says, then the vocabulary's order. A mere plural or singular of the tag
        // (#pastas for #pasta) is offered only when the video writes it: such forms were right
        // in 13 % of the benchmark's top-5 slots they took, and the slots they leave go to forms
        // and tags that do no worse.
        let name = stem(entry.tag.trim_start_matches('#'));
        let mut ordered: Vec<(u8, &String)> = entry
            .aliases
            .iter()
            .filter_map(|alias| {
                let stemmed = stem(alias.trim_start_matches('#'));
                if named.get(&i).is_some_and(|p| p.tag == *alias) {
                    Some((0, alias))
                } else if stemmed == name {
                    None
                } else {
                    Some((if words.contains_key(&stemmed) { 1 } else { 2 }, alias))
                }
            })
            .collect();
        // Stable: within a rank the vocabulary's order stays.
        ordered.sort_by_key(|(rank, _)| *rank);
        let variants: Vec<String> = ordered.into_iter().map(|(_, alias)| alias.clone()).collect();
        Some(Candidate { tag: entry.tag.clone(), generic: entry.generic, known: true, x, evidence, variants })
    };
    let mut out = Vec::new();
    let mut entry_of: Vec<Option<usize>> = Vec::new();
    for i in 0..vocab.len() {
        if let Some(c) = candidate(i, false) {
            out.push(c);
            entry_of.push(Some(i));
        }
    }
    // Tags the video itself spells out that the vocabulary does not know yet, when they are
    // supported strongly enough (written as a hashtag, a short line, or said twice).
    for p in new {
        if !p.supported() || GENERIC.contains(&p.tag.as_str()) {
            continue;
        }
        let mut x = [0.0f32; ranker::N];
        x[feature("caption_hashtag")] = f32::from(u8::from(p.hashtag));
        x[feature("new_line")] = f32::from(u8::from(!p.hashtag && p.line));
        x[feature("new_said")] = f32::from(u8::from(!p.hashtag && !p.line));
        x[feature("new_count")] = (p.count as f32).ln();
        out.push(Candidate { tag: p.tag.clone(), generic: false, known: false, x, evidence: vec![p.evidence()], variants: Vec::new() });
        entry_of.push(None);
    }
    broader(vocab, &mut out, &mut entry_of, |i| candidate(i, true));
    if let Some(descriptions) = &signals.descriptions {
        coherence(&mut out, &entry_of, descriptions);
    }
    out
}

/// Sets each vocabulary candidate's `broader`: the first-pass likelihood of the likeliest of
/// the video's [`COHERENT`] likeliest specific candidates that it is a broader tag of (#gaming
/// for #minecraft), with evidence naming them. A broader tag that nothing else brought in is
/// added, measured by `make`.
fn broader(vocab: &Vocabulary, out: &mut Vec<Candidate>, entry_of: &mut Vec<Option<usize>>, make: impl Fn(usize) -> Option<Candidate>) {
    let first: Vec<f32> = out.iter().map(|c| FIRST_PASS.score(&c.x)).collect();
    let mut likeliest: Vec<usize> = (0..out.len()).filter(|&k| !out[k].generic && entry_of[k].is_some()).collect();
    likeliest.sort_by(|&a, &b| first[b].total_cmp(&first[a]).then(a.cmp(&b)));
    likeliest.truncate(COHERENT);
    // Broader entry → (likelihood, the tags it is broader than), in the order first met. The
    // likeliest come first, so the first tag met sets the likelihood.
    let mut wider: Vec<(usize, f32, Vec<String>)> = Vec::new();
    for &k in &likeliest {
        let Some(i) = entry_of[k] else { continue };
        for &j in &vocab.entries()[i].broader {
            match wider.iter_mut().find(|(e, _, _)| *e == j) {
                Some((_, _, of)) => of.push(out[k].tag.clone()),
                None => wider.push((j, first[k], vec![out[k].tag.clone()])),
            }
        }
    }
    for (j, p, of) in wider {
        let k = match entry_of.iter().position(|e| *e == Some(j)) {
            Some(k) => k,
            None => {
                let Some(c) = make(j) else { continue };
                out.push(c);
                entry_of.push(Some(j));
                out.len() - 1
            }
        };
        out[k].x[feature("broader")] = p;
        out[k].evidence.push(Evidence { kind: "broader", text: format!("a wider tag of {}", of.join(", ")), time_secs: None });
    }
}

/// Sets each vocabulary candidate's `coherence`: the cosine of its description with the
/// likelihood-weighted sum of the descriptions of the [`COHERENT`] likeliest other specific
/// candidates (by [`FIRST_PASS`]), minus the best such cosine among the candidates. Tags that
/// the vocabulary does not know, and every tag of a video with too little to go on, keep 0.
fn coherence(out: &mut [Candidate], entry_of: &[Option<usize>], descriptions: &[Arc<Vec<f32>>]) {
    let vector = |k: usize| entry_of[k].and_then(|i| descriptions.get(i)).map(|v| v.as_slice()).filter(|v| !v.is_empty());
    let first: Vec<f32> = out.iter().map(|c| FIRST_PASS.score(&c.x)).collect();
    let mut likeliest: Vec<usize> = (0..out.len()).filter(|&k| !out[k].generic && vector(k).is_some()).collect();
    likeliest.sort_by(|&a, &b| first[b].total_cmp(&first[a]).then(a.cmp(&b)));
    likeliest.truncate(COHERENT + 1);
    let cosines: Vec<Option<f32>> = (0..out.len())
        .map(|k| {
            let v = vector(k)?;
            let mut centre = vec![0.0f32; v.len()];
            for j in likeliest.iter().copied().filter(|&j| j != k).take(COHERENT) {
                let u = vector(j).filter(|u| u.len() == v.len())?;
                for (c, x) in centre.iter_mut().zip(u) {
                    *c += first[j] * x;
                }
            }
            let nonzero = |w: &[f32]| w.iter().any(|x| *x != 0.0);
            (nonzero(&centre) && nonzero(v)).then(|| cosine(&centre, v))
        })
        .collect();
    let best = cosines.iter().flatten().copied().fold(f32::NEG_INFINITY, f32::max);
    for (c, cos) in out.iter_mut().zip(cosines) {
        c.x[feature("coherence")] = cos.map_or(0.0, |cos| cos - best);
    }
}

/// Ranks the vocabulary for a video with the shipped ranker.
pub fn rank(vocab: &Vocabulary, spans: &[TextSpan], signals: &Signals, opts: &RankOptions) -> Vec<Suggestion> {
    rank_with(Ranker::shipped(), vocab, spans, signals, opts)
}

/// Which signal each feature belongs to, as a suggestion's `sources` name them.
fn source_of(feature: &str, known: bool) -> Option<&'static str> {
    Some(match feature {
        "name_said" | "name_shown" | "name_captioned" | "keywords" | "keywords_written" | "name_phrase" => "keywords",
        "caption_hashtag" if known => "keywords",
        "caption_hashtag" | "new_line" | "new_said" | "new_count" => "content_phrase",
        "text_similarity" | "text_margin" => "text_embedding",
        "classifier" => "classifier",
        "visual" => "visual",
        "broader" => "broader",
        _ => return None,
    })
}

/// Ranks the vocabulary for a video with `ranker`.
pub fn rank_with(ranker: &Ranker, vocab: &Vocabulary, spans: &[TextSpan], signals: &Signals, opts: &RankOptions) -> Vec<Suggestion> {
    rank_candidates(ranker, candidates(vocab, spans, signals, opts.content_phrases), signals.creator.as_ref(), opts)
}

/// Scores `candidates` with `ranker`, lifts what the creator's history supports, and keeps the
/// best `opts.count` above the threshold. Slots that no tag with enough score wants go first to
/// the forms of the tags suggested (#hockeylife after #hockey), then to at most
/// `opts.max_generic` generic tags.
pub fn rank_candidates(ranker: &Ranker, candidates: Vec<Candidate>, creator: Option<&CreatorHistory>, opts: &RankOptions) -> Vec<Suggestion> {
    // Each suggestion, with the tag it is a form of when it is a variant.
    let mut scored: Vec<(Suggestion, Option<String>)> = Vec::new();
    for c in candidates {
        let content = ranker.score(&c.x);
        if content < opts.min_score / 2.0 {
            continue;
        }
        // The signals that moved the score, strongest first.
        let mut by_source: Vec<(&'static str, f32)> = Vec::new();
        for (j, contribution) in ranker.contributions(&c.x).into_iter().enumerate() {
            if c.x[j] != 0.0
                && let Some(name) = source_of(ranker::FEATURES[j], c.known)
            {
                match by_source.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, total)) => *total += contribution,
                    None => by_source.push((name, contribution)),
                }
            }
        }
        by_source.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut sources: Vec<&'static str> = by_source.into_iter().map(|(n, _)| n).collect();
        let mut evidence = c.evidence;
        let mut score = content;
        // The creator's own habit reorders what the content supports; it never adds a tag.
        if let Some((lift, said)) = habit(creator, &c.tag) {
            score = lifted(content, lift);
            sources.push("creator");
            evidence.push(said);
        }
        // Its variants follow it, each a little less likely than the one before; one the creator
        // posts is lifted too, up to just below the tag itself.
        for (i, variant) in c.variants.iter().take(opts.variants).enumerate() {
            let mut evidence =
                vec![Evidence { kind: "variant", text: format!("a form of {} that creators post as a tag of its own", c.tag), time_secs: None }];
            let mut sources = sources.clone();
            let mut share = score * VARIANT_SHARE * VARIANT_STEP.powi(i32::try_from(i).unwrap_or(i32::MAX));
            if let Some((lift, said)) = habit(creator, variant) {
                share = lifted(share, lift).min(score - 0.001);
                if !sources.contains(&"creator") {
                    sources.push("creator");
                }
                evidence.push(said);
            }
            let s = Suggestion { tag: variant.clone(), score: (share * 1000.0).round() / 1000.0, sources, evidence, generic: c.generic };
            scored.push((s, Some(c.tag.clone())));
        }
        scored.push((Suggestion { tag: c.tag, score: (score * 1000.0).round() / 1000.0, sources, evidence, generic: c.generic }, None));
    }
    scored.sort_by(|a, b| b.0.score.total_cmp(&a.0.score).then_with(|| a.0.tag.cmp(&b.0.tag)));
    // A tag offered twice (a variant of one entry that another candidate also is) keeps its best.
    let mut seen = BTreeSet::new();
    scored.retain(|s| seen.insert(s.0.tag.clone()));

    let (generic, specific): (Vec<_>, Vec<_>) = scored.into_iter().partition(|s| s.0.generic);
    let (sure, unsure): (Vec<_>, Vec<_>) = specific.into_iter().partition(|s| s.0.score >= opts.min_score);
    let mut out: Vec<Suggestion> = sure.into_iter().take(opts.count).map(|s| s.0).collect();
    // A form of a suggested tag is no weaker a guess about the video than the tag itself.
    let room = opts.count.saturating_sub(out.len());
    let forms: Vec<Suggestion> =
        unsure.into_iter().filter(|(_, of)| of.as_ref().is_some_and(|of| out.iter().any(|s| s.tag == *of))).map(|s| s.0).take(room).collect();
    out.extend(forms);
    let room = opts.count.saturating_sub(out.len()).min(opts.max_generic);
    out.extend(generic.into_iter().filter(|s| s.0.score >= opts.min_score).map(|s| s.0).take(room));
    // Ranked and cut by score; shown as the chance that a creator would post the tag.
    for s in &mut out {
        s.score = (ranker.chance(s.score) * 1000.0).round() / 1000.0;
    }
    out
}

/// What the creator's habit adds to `tag`'s log-odds (`W_CREATOR` times the share of their
/// latest posts that carried it), with the evidence that says so.
fn habit(creator: Option<&CreatorHistory>, tag: &str) -> Option<(f32, Evidence)> {
    let history = creator.filter(|h| h.posts > 0)?;
    let used = *history.uses.get(tag)?;
    let posts = history.posts;
    let text = if used == posts {
        format!("you used {tag} in all of your last {posts} posts")
    } else {
        format!("you used {tag} in {used} of your last {posts} posts")
    };
    Some((W_CREATOR * used as f32 / posts as f32, Evidence { kind: "creator", text, time_secs: None }))
}

/// Words that never start or end a content phrase.
pub(crate) const STOPWORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "so", "of", "to", "in", "on", "at", "for", "with", "from", "by", "up", "my", "your", "our", "his", "her",
    "their", "its", "this", "that", "these", "those", "is", "are", "was", "were", "be", "been", "am", "i", "you", "we", "they", "he", "she", "it", "me",
    "us", "them", "what", "how", "why", "when", "where", "who", "which", "do", "does", "did", "have", "has", "had", "will", "can", "just", "very",
    "really", "not", "no", "yes", "all", "some", "any", "more", "most", "new", "best", "easy", "quick", "today", "tonight", "now", "then", "here",
    "there", "about", "into", "out", "over", "after", "before", "again", "min", "mins", "minute", "minutes", "part", "pt", "vs",
];

/// A tag the video spells out: an on-screen line or a posting caption of one to three words
/// ("LEG DAY" → #legday, "room makeover" → #roommakeover), a hashtag written in the caption,
/// or two or three words in a row (said, shown or written) that name a known tag or come at
/// least twice.
#[derive(Debug, Clone)]
struct Phrase {
    tag: String,
    text: String,
    source: SpanSource,
    time_secs: Option<f64>,
    /// Times the same words were said, shown or written.
    count: usize,
    /// Written as a hashtag in the caption.
    hashtag: bool,
    /// A whole short on-screen line or caption, not words taken from a longer one.
    line: bool,
    words: usize,
}

impl Phrase {
    /// Supported strongly enough to be suggested as a new tag: written as a hashtag, a short
    /// on-screen line or caption, or two or three words said, shown or written at least twice.
    fn supported(&self) -> bool {
        self.hashtag || self.line || (self.words >= 2 && self.count >= 2)
    }

    fn evidence(&self) -> Evidence {
        let kind = if self.hashtag {
            "caption"
        } else {
            match self.source {
                SpanSource::Transcript => "transcript",
                SpanSource::OnScreenText => "on_screen_text",
                SpanSource::Caption => "caption",
            }
        };
        Evidence { kind, text: self.text.clone(), time_secs: self.time_secs }
    }
}

/// The content phrases of `spans` by tag, merged (the strongest source kept, counts added).
fn content_phrases(spans: &[TextSpan]) -> HashMap<String, Phrase> {
    let mut out: HashMap<String, Phrase> = HashMap::new();
    let add = |p: Phrase, out: &mut HashMap<String, Phrase>| match out.get_mut(&p.tag) {
        Some(q) => {
            q.count += p.count;
            let line = q.line || p.line;
            if p.hashtag || (p.line && !q.hashtag) || (p.source != SpanSource::Transcript && q.source == SpanSource::Transcript) {
                let count = q.count;
                *q = Phrase { count, ..p };
            }
            q.line = line;
        }
        None => {
            out.insert(p.tag.clone(), p);
        }
    };
    for span in spans {
        // Hashtags the creator wrote themselves.
        if span.source == SpanSource::Caption {
            for raw in span.text.split_whitespace().filter(|w| w.starts_with('#')) {
                if let Some(tag) = normalise_tag(raw.trim_end_matches(|c: char| !c.is_alphanumeric()))
                    && tag.chars().count() > 2
                    && !GENERIC.contains(&tag.as_str())
                {
                    add(
                        Phrase { text: raw.to_owned(), tag, source: span.source, time_secs: None, count: 1, hashtag: true, line: false, words: 1 },
                        &mut out,
                    );
                }
            }
        }
        // Hashtags were taken above; the phrase is what is written around them.
        let plain: String = span.text.split_whitespace().filter(|w| !w.starts_with('#')).collect::<Vec<_>>().join(" ");
        let words: Vec<String> = plain
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
            .collect();
        // The whole of a short on-screen line or caption, without the small words at its edges.
        let mut line_tag = None;
        if span.source != SpanSource::Transcript {
            let content: Vec<&String> = {
                let mut w: &[String] = &words;
                while w.first().is_some_and(|x| STOPWORDS.contains(&x.as_str())) {
                    w = &w[1..];
                }
                while w.last().is_some_and(|x| STOPWORDS.contains(&x.as_str())) {
                    w = &w[..w.len() - 1];
                }
                w.iter().collect()
            };
            let joined: String = content.iter().map(|w| w.as_str()).collect();
            // One word must be a real one (OCR reads stray strokes as short tokens).
            let word_ok = content.len() > 1 || (joined.chars().count() >= 4 && joined.chars().all(char::is_alphabetic));
            if word_ok && (1..=3).contains(&content.len()) && (3..=30).contains(&joined.chars().count()) && plain.split_whitespace().count() <= 6 {
                let text = content.iter().map(|w| w.as_str()).collect::<Vec<_>>().join(" ");
                let tag = format!("#{joined}");
                line_tag = Some(tag.clone());
                add(
                    Phrase { tag, text, source: span.source, time_secs: span.time_secs, count: 1, hashtag: false, line: true, words: content.len() },
                    &mut out,
                );
            }
        }
        // Two or three words in a row, wherever they are: they name a known compound tag ("leg
        // day" in a caption "leg day squats and lunges, the leg day I never skip" for #legday),
        // or make a new tag when the same words come twice. The words of a whole line taken
        // above are not counted again.
        for n in 2..=3 {
            for gram in words.windows(n) {
                if STOPWORDS.contains(&gram[0].as_str()) || STOPWORDS.contains(&gram[n - 1].as_str()) {
                    continue;
                }
                let joined: String = gram.concat();
                let tag = format!("#{joined}");
                if (4..=30).contains(&joined.chars().count()) && line_tag.as_ref() != Some(&tag) {
                    let phrase = Phrase {
                        tag,
                        text: gram.join(" "),
                        source: span.source,
                        time_secs: span.time_secs,
                        count: 1,
                        hashtag: false,
                        line: false,
                        words: n,
                    };
                    add(phrase, &mut out);
                }
            }
        }
    }
    out
}

/// Stemmed word → where it occurs.
type WordIndex = HashMap<String, Vec<(SpanSource, Option<f64>, String)>>;

fn index_words(spans: &[TextSpan]) -> WordIndex {
    let mut index: WordIndex = HashMap::new();
    for span in spans {
        for word in span.text.split(|c: char| !(c.is_alphanumeric() || c == '\'')).filter(|w| w.chars().count() >= 2) {
            index.entry(stem(word)).or_default().push((span.source, span.time_secs, word.to_owned()));
        }
    }
    index
}

/// What the video's words say for one entry.
struct KeywordMatch {
    /// Where the tag's own name was found.
    name: Vec<SpanSource>,
    /// `1 − e^(−x)` of the entry's other keywords found: 0.45 per distinct one and 0.1 per
    /// repeat (at most five).
    strength: f32,
    /// Distinct other keywords found, and how many times they were found beyond the first.
    distinct: usize,
    repeats: usize,
    /// `strength` counting only what the creator wrote (on-screen text and the caption).
    written: f32,
    /// The first place each word occurs in each source: a word both said and shown is
    /// evidence twice over for a creator reading it.
    evidence: Vec<Evidence>,
}

fn keyword_match(entry: &VocabEntry, words: &WordIndex, borrowed: impl Fn(&str, usize) -> bool) -> KeywordMatch {
    let name = stem(entry.tag.trim_start_matches('#'));
    let mut found: BTreeMap<(&str, SpanSource), &(SpanSource, Option<f64>, String)> = BTreeMap::new();
    let mut m = KeywordMatch { name: Vec::new(), strength: 0.0, distinct: 0, repeats: 0, written: 0.0, evidence: Vec::new() };
    let (mut written, mut written_repeats) = (0usize, 0usize);
    let keys = std::iter::once(name.as_str()).chain(entry.keywords.iter().map(String::as_str).filter(|k| *k != name));
    for key in keys {
        let Some(hits) = words.get(key).filter(|hits| !borrowed(key, hits.len())) else { continue };
        if key == name {
            for hit in hits {
                if !m.name.contains(&hit.0) {
                    m.name.push(hit.0);
                }
            }
        } else {
            m.distinct += 1;
            m.repeats += hits.len() - 1;
            let shown = hits.iter().filter(|h| h.0 != SpanSource::Transcript).count();
            if shown > 0 {
                written += 1;
                written_repeats += shown - 1;
            }
        }
        for hit in hits {
            found.entry((key, hit.0)).or_insert(hit);
        }
    }
    let strength =
        |distinct: usize, repeats: usize| if distinct == 0 { 0.0 } else { 1.0 - (-(0.45 * distinct as f32 + 0.1 * repeats.min(5) as f32)).exp() };
    m.strength = strength(m.distinct, m.repeats);
    m.written = strength(written, written_repeats);
    m.evidence = found
        .values()
        .map(|(source, time, word)| Evidence {
            kind: match source {
                SpanSource::Transcript => "transcript",
                SpanSource::OnScreenText => "on_screen_text",
                SpanSource::Caption => "caption",
            },
            text: word.clone(),
            time_secs: *time,
        })
        .collect();
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(source: SpanSource, text: &str) -> TextSpan {
        TextSpan { source, text: text.into(), time_secs: Some(1.0) }
    }

    const OPTS: RankOptions = RankOptions { count: 5, max_generic: 1, min_score: 0.15, content_phrases: true, variants: 0 };

    #[test]
    fn words_in_the_transcript_and_on_screen_text_rank_their_topics_first() {
        let v = Vocabulary::curated();
        let spans = [
            span(SpanSource::Transcript, "Tonight I am cooking pasta with a simple tomato sauce"),
            span(SpanSource::OnScreenText, "Cooking pasta tonight"),
        ];
        let tags: Vec<String> = rank(&v, &spans, &Signals::default(), &OPTS).into_iter().map(|s| s.tag).collect();
        assert!(tags[..2].contains(&"#cooking".to_owned()) && tags[..2].contains(&"#pasta".to_owned()), "{tags:?}");

        let spans = [span(SpanSource::Transcript, "What a goal! The striker scored in the last minute of the match")];
        let tags: Vec<String> = rank(&v, &spans, &Signals::default(), &OPTS).into_iter().map(|s| s.tag).collect();
        assert!(tags.contains(&"#football".to_owned()) && !tags.contains(&"#cooking".to_owned()), "{tags:?}");
    }

    #[test]
    fn keywords_the_creator_wrote_count_apart_from_those_only_heard() {
        let v = Vocabulary::curated();
        let legday = |spans: &[TextSpan]| -> [f32; ranker::N] {
            candidates(&v, spans, &Signals::default(), true).into_iter().find(|c| c.tag == "#legday").expect("#legday is a candidate").x
        };
        let heard = legday(&[span(SpanSource::Transcript, "heavy squats then lunges")]);
        assert!(heard[feature("keywords")] > 0.0 && heard[feature("keywords_written")] == 0.0, "{heard:?}");
        for source in [SpanSource::OnScreenText, SpanSource::Caption] {
            let written = legday(&[span(source, "heavy squats then lunges")]);
            assert_eq!(written[feature("keywords_written")], written[feature("keywords")], "{source:?}");
        }
        // Said and shown: the written half counts what was shown.
        let both = legday(&[span(SpanSource::Transcript, "heavy squats then lunges"), span(SpanSource::OnScreenText, "squats")]);
        assert!(both[feature("keywords_written")] > 0.0 && both[feature("keywords_written")] < both[feature("keywords")], "{both:?}");
    }

    #[test]
    fn a_word_inside_a_compound_that_names_a_topic_speaks_only_for_topics_near_it() {
        let v = Vocabulary::curated();
        let tags = |text: &str| -> Vec<String> {
            let spans = [span(SpanSource::Transcript, text)];
            rank(&v, &spans, &Signals::default(), &RankOptions { count: 10, ..OPTS }).into_iter().map(|s| s.tag).collect()
        };
        // Animal Crossing is a game, not an animal; a hot dog is food, not a dog.
        let game = tags("My animal crossing island tour with new villagers and a terraformed beach");
        assert!(game.contains(&"#animalcrossing".to_owned()) && !game.contains(&"#animals".to_owned()), "{game:?}");
        let food = tags("Grilling a hot dog with mustard and relish at the ballpark");
        assert!(food.contains(&"#hotdog".to_owned()) && !food.contains(&"#dog".to_owned()), "{food:?}");
        // Iced coffee is coffee (#coffee is a wider tag of #icedcoffee), and a word that also
        // comes outside the compound speaks for itself.
        let drink = tags("Making an iced coffee at home with cold milk");
        assert!(drink.contains(&"#icedcoffee".to_owned()) && drink.contains(&"#coffee".to_owned()), "{drink:?}");
        let pets = tags("Our animal crossing evening, then the real animal shelter visit: every animal there was cute");
        assert!(pets.contains(&"#animals".to_owned()), "{pets:?}");
    }

    #[test]
    fn the_video_spells_out_tags_the_vocabulary_does_not_know() {
        let v = Vocabulary::curated();
        let spans = [
            span(SpanSource::OnScreenText, "FOREARM FINISHER"),
            span(SpanSource::OnScreenText, "ARM DAY"),
            span(SpanSource::Transcript, "Four sets of heavy squats. Heavy squats make strong legs, so heavy squats it is."),
            span(SpanSource::Caption, "new routine #ShredSeason #fyp"),
        ];
        // Looked for among all that clear 0.3: the many gym tags the words support come before a
        // new line, which this test does not rank.
        let got = rank(&v, &spans, &Signals::default(), &RankOptions { count: 500, max_generic: 1, min_score: 0.3, content_phrases: true, variants: 0 });
        let find = |tag: &str| got.iter().find(|s| s.tag == tag);
        let finisher = find("#forearmfinisher").unwrap_or_else(|| panic!("the on-screen line: {got:?}"));
        assert_eq!(
            (finisher.sources.as_slice(), finisher.evidence[0].kind, finisher.evidence[0].text.as_str()),
            (&["content_phrase"][..], "on_screen_text", "forearm finisher")
        );
        // A known tag spelled out the same way is the vocabulary's, found by its words.
        let armday = find("#armday").expect("the on-screen line names a known tag");
        assert_eq!((armday.sources[0], armday.evidence[0].text.as_str()), ("keywords", "arm day"));
        assert!(find("#shredseason").is_some_and(|s| s.evidence[0].kind == "caption"), "the creator's own hashtag: {got:?}");
        assert!(find("#heavysquats").is_some(), "said three times: {got:?}");
        assert!(
            find("#foursets").is_none() && find("#strongleg").is_none() && find("#routineshredseasonfyp").is_none(),
            "said once, or small words at the edge: {got:?}"
        );
        assert!(find("#fyp").is_none_or(|s| s.generic), "{got:?}");
        // Known tags found by their keywords keep the first slots.
        let spans = [span(SpanSource::Transcript, "my gym workout today"), span(SpanSource::OnScreenText, "push day")];
        let got = rank(&v, &spans, &Signals::default(), &OPTS);
        assert_eq!(got[0].tag, "#gym", "{got:?}");
        assert!(got.iter().any(|s| s.tag == "#pushday"), "{got:?}");
    }

    #[test]
    fn a_likely_tag_brings_its_broader_tag_with_the_evidence_and_an_unlikely_one_does_not() {
        let mut v = Vocabulary::parse(
            "#minecraft\ttopic\t-\tbuilding and surviving in the block game minecraft\tminecraft creeper redstone\n\
             #gaming\ttopic\t-\tvideo game gameplay\tgameplay console\n\
             #knitting\ttopic\t-\tknitting with needles and yarn\tknitting yarn purl\n\
             #crafts\ttopic\t-\tmaking things by hand\tcraft\n",
        )
        .expect("parses");
        v.link_broader("#minecraft\t#gaming\n#knitting\t#crafts\n").expect("links");
        let spans = [span(SpanSource::Transcript, "My minecraft redstone farm, and a creeper blew up my minecraft base")];
        let got = candidates(&v, &spans, &Signals::default(), false);
        let find = |tag: &str| got.iter().find(|c| c.tag == tag);
        let gaming = find("#gaming").expect("no word of its own, brought by #minecraft");
        let minecraft = find("#minecraft").expect("said twice");
        assert!(gaming.x[feature("broader")] > 0.5 && minecraft.x[feature("broader")] == 0.0, "{got:?}");
        assert_eq!(gaming.evidence.iter().find(|e| e.kind == "broader").map(|e| e.text.as_str()), Some("a wider tag of #minecraft"), "{gaming:?}");
        assert!(find("#crafts").is_none() && find("#knitting").is_none(), "nothing says knitting: {got:?}");
        let ranked = rank(&v, &spans, &Signals::default(), &RankOptions { min_score: 0.0, count: 5, ..OPTS });
        let tags: Vec<&str> = ranked.iter().map(|s| s.tag.as_str()).collect();
        assert_eq!(tags.len(), 2, "{ranked:?}");
        assert!(tags.contains(&"#minecraft"), "{ranked:?}");
        assert!(ranked.iter().find(|s| s.tag == "#gaming").is_some_and(|s| s.sources == ["broader"]), "{ranked:?}");

        // The shipped seed links its tags to the wider ones creators add.
        let seed = Vocabulary::curated();
        let minecraft = &seed.entries()[seed.find("#minecraft").expect("#minecraft")];
        let wider: Vec<&str> = minecraft.broader.iter().map(|&j| seed.entries()[j].tag.as_str()).collect();
        assert!(wider.contains(&"#gaming"), "{wider:?}");
    }

    #[test]
    fn a_compound_tag_is_found_from_its_words() {
        let mut v = Vocabulary::curated();
        v.extend_tags(["#pastanight"], VocabSource::Trending);
        let spans = [span(SpanSource::Transcript, "Sunday is pasta night for the whole family")];
        // Said once, it is a weak candidate: looked for below any threshold.
        let got = rank(&v, &spans, &Signals::default(), &RankOptions { min_score: 0.0, count: 50, ..OPTS });
        let tag = got.iter().find(|s| s.tag == "#pastanight").expect("found from its words");
        assert_eq!(tag.sources, ["keywords"]);
        assert_eq!(tag.evidence[0].text, "pasta night");
    }

    #[test]
    fn a_compound_tag_named_inside_a_longer_caption_or_line_is_the_vocabularys() {
        let v = Vocabulary::curated();
        for source in [SpanSource::Caption, SpanSource::OnScreenText] {
            let spans = [span(source, "leg day squats and lunges, the leg day I never skip")];
            let got = rank(&v, &spans, &Signals::default(), &RankOptions { min_score: 0.0, count: 50, ..OPTS });
            let legday = got.iter().position(|s| s.tag == "#legday").unwrap_or_else(|| panic!("{source:?}: {got:?}"));
            assert_eq!(got[legday].evidence[0].text, "leg day", "{source:?}");
            assert!(legday < 3, "{source:?}: named and supported by its keywords, it ranks near the top: {got:?}");
            // Words taken from a longer line make no new tag unless they come twice.
            assert!(got.iter().all(|s| s.tag != "#squatsandlunges" && s.tag != "#neverskip"), "{source:?}: {got:?}");
        }
    }

    #[test]
    fn generic_tags_never_crowd_out_specific_ones() {
        let v = Vocabulary::curated();
        let spans = [span(SpanSource::Caption, "#fyp #viral #foryou #trending dinner recipe in the kitchen")];
        // The generic tags score as high as the specific ones here, yet take no slot a
        // specific tag wants.
        let out = rank(&v, &spans, &Signals::default(), &RankOptions { count: 2, max_generic: 1, min_score: 0.1, content_phrases: true, variants: 0 });
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|s| !s.generic), "{out:?}");
        let out = rank(&v, &spans, &Signals::default(), &RankOptions { count: 10, max_generic: 1, min_score: 0.1, content_phrases: true, variants: 0 });
        assert_eq!(out.iter().filter(|s| s.generic).count(), 1, "{out:?}");
        assert!(out.last().expect("suggestions").generic);
    }

    #[test]
    fn every_suggestion_carries_the_evidence_that_made_it() {
        let v = Vocabulary::curated();
        let spans = [span(SpanSource::OnScreenText, "Homemade bread from the oven")];
        let out = rank(&v, &spans, &Signals::default(), &OPTS);
        let baking = out.iter().find(|s| s.tag == "#baking").expect("#baking suggested");
        // The word on screen, and being the wider tag of the likelier #bread.
        assert!(baking.sources.contains(&"keywords"), "{baking:?}");
        assert_eq!(baking.evidence[0].kind, "on_screen_text");
        assert_eq!(baking.evidence[0].text, "bread");
    }

    /// A seed of #surfing, with three forms, and #beach; and a narration about surfing.
    fn surfing() -> Vocabulary {
        Vocabulary::parse(
            "#surfing\ttopic\t#surf #surfer #surflife\triding waves on a surfboard\tsurfing surf waves surfboard\n\
             #beach\ttopic\t-\ta day at the beach\tbeach sand\n",
        )
        .expect("a seed")
    }

    const SURFING: &str = "Surfing at dawn: the waves were clean and the surfboard flew";

    #[test]
    fn the_forms_creators_post_follow_their_tag_and_never_pass_it() {
        let v_surfing = surfing();
        let spans = [span(SpanSource::Transcript, SURFING)];
        let opts = RankOptions { min_score: 0.0, count: 10, variants: 2, ..OPTS };
        let got = rank(&v_surfing, &spans, &Signals::default(), &opts);
        let tags: Vec<&str> = got.iter().map(|s| s.tag.as_str()).collect();
        let at = |tag: &str| tags.iter().position(|t| *t == tag).unwrap_or_else(|| panic!("{tag} in {tags:?}"));
        assert!(at("#surfing") < at("#surf") && at("#surf") < at("#surfer"), "{tags:?}");
        assert!(!tags.contains(&"#surflife"), "two variants at most: {tags:?}");
        let surf = &got[at("#surf")];
        assert_eq!((surf.evidence[0].kind, surf.sources.as_slice()), ("variant", got[at("#surfing")].sources.as_slice()));
        assert!(surf.evidence[0].text.contains("#surfing"), "{surf:?}");
        assert!(surf.score < got[at("#surfing")].score && got[at("#surfer")].score < surf.score, "{got:?}");
        // A form the video spells out comes first.
        let spans = [span(SpanSource::Transcript, "Surfing at dawn: the waves were clean"), span(SpanSource::Caption, "dawn patrol #surflife")];
        let got = rank(&v_surfing, &spans, &Signals::default(), &opts);
        let tags: Vec<&str> = got.iter().map(|s| s.tag.as_str()).collect();
        let at = |tag: &str| tags.iter().position(|t| *t == tag).unwrap_or_else(|| panic!("{tag} in {tags:?}"));
        assert!(at("#surfing") < at("#surflife") && at("#surflife") < at("#surf"), "{tags:?}");
        // A creator who posts #surfer gets it lifted, never past #surfing.
        let history = CreatorHistory::from_posts(&[vec!["#surfer".to_owned()], vec!["#Surfer".to_owned(), "#beach".to_owned()]]);
        let signals = Signals { creator: Some(history), ..Signals::default() };
        let spans = [span(SpanSource::Transcript, SURFING)];
        let plain = rank(&v_surfing, &spans, &Signals::default(), &opts);
        let lifted = rank(&v_surfing, &spans, &signals, &opts);
        let score = |got: &[Suggestion], tag: &str| got.iter().find(|s| s.tag == tag).map(|s| s.score).unwrap_or_else(|| panic!("{tag} in {got:?}"));
        assert!(score(&lifted, "#surfer") > score(&plain, "#surfer"), "{lifted:?}");
        assert!(score(&lifted, "#surfer") < score(&lifted, "#surfing"), "{lifted:?}");
        let surfer = lifted.iter().find(|s| s.tag == "#surfer").expect("#surfer");
        assert_eq!(surfer.evidence.last().map(|e| (e.kind, e.text.as_str())), Some(("creator", "you used #surfer in all of your last 2 posts")));
        // A plural or singular of the tag is offered only when the video writes it.
        let v = Vocabulary::parse("#pasta\ttopic\t#pastas #pastatok\tcooking pasta at home\tpasta spaghetti\n").expect("a seed");
        let said = rank(&v, &[span(SpanSource::Transcript, "Pasta night: spaghetti with garlic, the best pastas are simple")], &Signals::default(), &opts);
        let tags: Vec<&str> = said.iter().map(|s| s.tag.as_str()).collect();
        assert_eq!(tags, ["#pasta", "#pastatok"]);
        let written = rank(&v, &[span(SpanSource::Transcript, "Pasta night"), span(SpanSource::Caption, "dinner #pastas")], &Signals::default(), &opts);
        let tags: Vec<&str> = written.iter().map(|s| s.tag.as_str()).filter(|t| t.starts_with("#pasta")).collect();
        assert_eq!(tags, ["#pasta", "#pastas", "#pastatok"]);
        // Without variants each entry is suggested once.
        let once = rank(&v_surfing, &spans, &Signals::default(), &RankOptions { variants: 0, ..opts });
        assert!(once.iter().all(|s| s.tag != "#surf" && s.tag != "#surfer"), "{once:?}");
        assert_eq!(once.iter().find(|s| s.tag == "#surfing").map(|s| s.score), Some(score(&plain, "#surfing")));
    }

    #[test]
    fn the_forms_of_a_suggested_tag_fill_slots_no_tag_above_the_threshold_wants() {
        let v = surfing();
        let spans = [span(SpanSource::Transcript, SURFING)];
        let all = rank(&v, &spans, &Signals::default(), &RankOptions { min_score: 0.0, count: 10, variants: 2, max_generic: 1, ..OPTS });
        let score = |tag: &str| all.iter().find(|s| s.tag == tag).map(|s| s.score).unwrap_or_else(|| panic!("{tag} in {all:?}"));
        // A threshold between #surfing and its forms (shown as chances; the threshold is a
        // score): the forms score below it, yet take the slots nothing else wants, in their
        // order, and never more than `variants` of them.
        let between = (score("#surfing") + score("#surf")) / 2.0;
        assert!(score("#surf") < between && between < score("#surfing"), "{all:?}");
        let min_score = Ranker::shipped().score_for_chance(between);
        let opts = RankOptions { min_score, count: 5, variants: 2, max_generic: 1, ..OPTS };
        let got: Vec<String> = rank(&v, &spans, &Signals::default(), &opts).into_iter().map(|s| s.tag).collect();
        assert_eq!(got[..3], ["#surfing", "#surf", "#surfer"], "{got:?} of {all:?}");
        assert!(!got.contains(&"#surflife".to_owned()) && !got.contains(&"#beach".to_owned()), "{got:?}");
        // With room for two, the forms take no slot a tag above the threshold wants.
        let two: Vec<String> = rank(&v, &spans, &Signals::default(), &RankOptions { count: 2, ..opts }).into_iter().map(|s| s.tag).collect();
        assert_eq!(two[0], "#surfing", "{two:?}");
        assert_eq!(two.len(), 2, "{two:?}");
        // Without variants nothing fills them.
        let once: Vec<String> = rank(&v, &spans, &Signals::default(), &RankOptions { variants: 0, ..opts }).into_iter().map(|s| s.tag).collect();
        assert!(once.iter().all(|t| t != "#surf" && t != "#surfer"), "{once:?}");
    }

    #[test]
    fn independent_signals_add_up() {
        let mut v = Vocabulary::default();
        v.extend_tags(["#alpha", "#beta"], VocabSource::Trending);
        let spans = [span(SpanSource::Transcript, "alpha")];
        let opts = RankOptions { min_score: 0.0, ..OPTS };
        let only_words = rank(&v, &spans, &Signals::default(), &opts);
        let signals = Signals { text_similarity: Some((vec![0.6, 0.0], "m".into())), ..Signals::default() };
        let both = rank(&v, &spans, &signals, &opts);
        assert!(both[0].score > only_words[0].score, "{both:?} vs {only_words:?}");
        let mut sources = both[0].sources.clone();
        sources.sort_unstable();
        assert_eq!(sources, vec!["keywords", "text_embedding"]);
        assert!(both[0].score < 1.0);
    }

    #[test]
    fn a_tag_off_the_videos_main_topic_counts_less_than_one_that_agrees_with_the_rest() {
        let v = Vocabulary::parse(
            "#legday\ttopic\t-\tleg day\tsquats lunges quads\n\
             #gym\ttopic\t-\tthe gym\tgym squats lifting\n\
             #squats\ttopic\t-\tsquats\tsquats barbell depth\n\
             #breakfast\ttopic\t-\tbreakfast\tmorning eggs toast\n\
             #fyp\tgeneric\t-\tanything\tfyp\n",
        )
        .expect("seed lines");
        let spans = [span(SpanSource::Transcript, "morning squats at the gym, then lunges and more squats for my quads, and eggs after")];
        // Three descriptions that agree and one that does not (unit vectors).
        let unit = |x: [f32; 3]| Arc::new(x.to_vec());
        let descriptions: Descriptions =
            vec![unit([1.0, 0.0, 0.0]), unit([0.8, 0.6, 0.0]), unit([0.96, 0.0, 0.28]), unit([0.0, 0.0, 1.0]), unit([0.0, 1.0, 0.0])].into();
        let coherence = |signals: &Signals| -> BTreeMap<String, f32> {
            candidates(&v, &spans, signals, false).into_iter().map(|c| (c.tag, c.x[feature("coherence")])).collect()
        };
        let without = coherence(&Signals::default());
        assert!(without.values().all(|c| *c == 0.0), "no description embeddings, no coherence: {without:?}");
        let with = coherence(&Signals { descriptions: Some(descriptions.clone()), ..Signals::default() });
        assert!(with.values().all(|c| *c <= 0.0), "{with:?}");
        assert!(with.values().any(|c| *c == 0.0), "the most coherent tag is the reference: {with:?}");
        assert!(with["#breakfast"] < with["#legday"] - 0.5, "{with:?}");
        assert!(with["#breakfast"] < with["#gym"] - 0.5, "{with:?}");

        // Fitted weights reward agreement, so the off-topic tag's score falls (compared on the
        // ranker's balanced scale, before it is shown as a chance).
        let ranker = Ranker::shipped();
        let score = |signals: &Signals, tag: &str| {
            rank_with(ranker, &v, &spans, signals, &RankOptions { min_score: 0.0, count: 10, ..OPTS })
                .into_iter()
                .find(|s| s.tag == tag)
                .map_or(0.0, |s| ranker.score_for_chance(s.score))
        };
        let together = Signals { descriptions: Some(descriptions), ..Signals::default() };
        let alone = Signals::default();
        let fall = |tag: &str| score(&alone, tag) - score(&together, tag);
        assert!(fall("#breakfast") > 0.05, "{}", fall("#breakfast"));
        for tag in ["#legday", "#gym", "#squats"] {
            assert!(fall(tag) < fall("#breakfast"), "{tag}: {} against {}", fall(tag), fall("#breakfast"));
            assert!(score(&together, tag) > score(&together, "#breakfast"), "{tag}");
        }
    }

    #[test]
    fn a_creators_history_reorders_supported_tags_and_adds_none() {
        let v = Vocabulary::curated();
        let spans = [span(SpanSource::Transcript, "Leg day at the gym: squats, deadlifts and a fitness workout with cardio and exercise")];
        let tags = |creator: Option<CreatorHistory>| {
            let signals = Signals { creator, ..Signals::default() };
            rank(&v, &spans, &signals, &RankOptions { count: 10, max_generic: 1, min_score: 0.15, content_phrases: true, variants: 0 })
        };
        let plain = tags(None);
        let order = |s: &[Suggestion]| s.iter().map(|x| x.tag.clone()).collect::<Vec<_>>();
        let (gym, fitness) = (|s: &[Suggestion]| s.iter().position(|x| x.tag == "#gym"), |s: &[Suggestion]| s.iter().position(|x| x.tag == "#fitness"));
        assert!(gym(&plain).is_some() && fitness(&plain).is_some(), "{:?}", order(&plain));
        // Two creators: one always posts #fitness, the other #gym; both also love #cooking.
        let post = |tags: &[&str]| tags.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        let lifter = CreatorHistory::from_posts(&[post(&["#gym", "#cooking"]), post(&["#GYM", "#gym"]), post(&["#cooking"])]);
        let runner = CreatorHistory::from_posts(&[post(&["#fitness", "#cooking"]), post(&["#fitness"]), post(&["#fitness", "#travel"])]);
        let (a, b) = (tags(Some(lifter)), tags(Some(runner)));
        assert!(gym(&a) < fitness(&a), "the lifter's order: {:?}", order(&a));
        assert!(fitness(&b) < gym(&b), "the runner's order: {:?}", order(&b));
        // Tags the video does not support are never added, and the others are the same set.
        for out in [&a, &b] {
            assert!(!out.iter().any(|s| s.tag == "#cooking" || s.tag == "#travel"), "{:?}", order(out));
            let (mut mine, mut base) = (order(out), order(&plain));
            mine.sort();
            base.sort();
            assert_eq!(mine, base);
        }
        let lifted = a.iter().find(|s| s.tag == "#gym").expect("#gym");
        assert_eq!(lifted.evidence.last().map(|e| e.text.as_str()), Some("you used #gym in 2 of your last 3 posts"));
        assert_eq!(lifted.sources.last(), Some(&"creator"));
    }
}
