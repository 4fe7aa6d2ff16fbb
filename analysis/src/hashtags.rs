//! Hashtag suggestions fused from independent signals, each of which leaves evidence:
//!
//! | signal | weight | what it is |
//! |---|---|---|
//! | `classifier` | 0.85 | the trained linear head over the video's embeddings, when a version is registered |
//! | `keywords` | 0.75 | words of the transcript, on-screen text and caption that point to a tag |
//! | `text_embedding` | 0.55 | cosine of the content's sentence embedding with the tag's description |
//! | `visual` | 0.45 | zero-shot match of the frames with the tag through an image/text encoder pair |
//!
//! A signal's strength `s ∈ [0, 1]` counts as `w·s`, and strengths combine as a noisy OR,
//! `1 − Π(1 − w·s)`: two weak but independent hints beat one, and no single signal reaches 1.
//! Generic tags (#fyp, #viral) only fill slots no specific tag with enough score wants, and
//! at most `max_generic` of them.
//!
//! When a job names its creator, the tags that creator chose for their latest posts are a prior:
//! a tag the content already supports (a score of at least half `min_score`) and that the creator
//! used in a share `u` of those posts also counts `0.5·u` in the noisy OR, with the history as
//! evidence. A tag the content does not support is never added, however often it was used.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;

const CURATED: &str = include_str!("../assets/hashtags.tsv");

const W_CLASSIFIER: f32 = 0.85;
const W_KEYWORDS: f32 = 0.75;
const W_TEXT: f32 = 0.55;
const W_VISUAL: f32 = 0.45;
const W_CREATOR: f32 = 0.5;

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

/// Where a vocabulary entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VocabSource {
    /// Shipped with reelq.
    Curated,
    /// The trending list the scheduler computes from pulled data.
    Trending,
    /// A label of the trained classifier.
    Classifier,
}

/// A hashtag the suggester may propose.
#[derive(Debug, Clone, PartialEq)]
pub struct VocabEntry {
    /// Lowercase, with `#`.
    pub tag: String,
    pub generic: bool,
    /// Stemmed words that point to the tag.
    pub keywords: Vec<String>,
    pub source: VocabSource,
}

impl VocabEntry {
    /// The text the sentence encoder sees for this tag.
    pub fn description(&self) -> String {
        let name = self.tag.trim_start_matches('#');
        if self.keywords.is_empty() { name.to_owned() } else { format!("{name}: {}", self.keywords.join(" ")) }
    }
}

/// The tags the suggester chooses from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vocabulary {
    entries: Vec<VocabEntry>,
}

impl Vocabulary {
    /// The list shipped with reelq.
    pub fn curated() -> Self {
        Self::parse(CURATED).unwrap_or_default()
    }

    /// Parses `tag<TAB>topic|generic<TAB>words…` lines; `#` lines that are not tags are comments.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut v = Self::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with("# ") || line == "#" {
                continue;
            }
            let mut parts = line.split('\t');
            let (Some(tag), Some(kind)) = (parts.next(), parts.next()) else {
                return Err(format!("line {}: expected `tag<TAB>kind<TAB>words`", n + 1));
            };
            let tag = normalise_tag(tag).ok_or_else(|| format!("line {}: `{tag}` is not a hashtag", n + 1))?;
            let generic = match kind {
                "generic" => true,
                "topic" => false,
                other => return Err(format!("line {}: kind `{other}` is neither topic nor generic", n + 1)),
            };
            let keywords = parts.next().unwrap_or("").split_whitespace().map(stem).collect::<BTreeSet<_>>().into_iter().collect();
            v.push(VocabEntry { tag, generic, keywords, source: VocabSource::Curated });
        }
        Ok(v)
    }

    /// Adds tags not yet known (a trending list, a classifier's labels); known ones keep
    /// their curated keywords.
    pub fn extend_tags<'a>(&mut self, tags: impl IntoIterator<Item = &'a str>, source: VocabSource) {
        for tag in tags {
            if let Some(tag) = normalise_tag(tag)
                && !self.entries.iter().any(|e| e.tag == tag)
            {
                let generic = GENERIC.contains(&tag.as_str());
                let keywords = vec![stem(tag.trim_start_matches('#'))];
                self.push(VocabEntry { tag, generic, keywords, source });
            }
        }
    }

    fn push(&mut self, e: VocabEntry) {
        if !self.entries.iter().any(|x| x.tag == e.tag) {
            self.entries.push(e);
        }
    }

    pub fn entries(&self) -> &[VocabEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Tags that fit any video, recognised whichever list they arrive in.
const GENERIC: &[&str] = &["#fyp", "#foryou", "#foryoupage", "#viral", "#trending", "#tiktok", "#explore", "#xyzbca", "#fy"];

/// `Cooking` or `#cooking` → `#cooking`; `None` for something that cannot be a hashtag.
pub fn normalise_tag(raw: &str) -> Option<String> {
    let body = raw.trim().trim_start_matches('#').to_lowercase();
    let ok = (1..=100).contains(&body.chars().count()) && body.chars().all(|c| c.is_alphanumeric() || c == '_');
    ok.then(|| format!("#{body}"))
}

/// A light stemmer, enough to let "recipes" meet "recipe" and "goals" meet "goal".
pub fn stem(word: &str) -> String {
    let w = word.to_lowercase();
    let w = w.trim_end_matches("'s");
    let n = w.chars().count();
    if n > 4 && w.ends_with("ies") {
        format!("{}y", &w[..w.len() - 3])
    } else if n > 3 && w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") {
        w[..w.len() - 1].to_owned()
    } else {
        w.to_owned()
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
    pub min_score: f32,
    /// Take tags from the phrases the video spells out (on-screen lines, the caption's words
    /// and hashtags, words said twice), not only from the vocabulary.
    pub content_phrases: bool,
}

/// Ranks the vocabulary for a video.
pub fn rank(vocab: &Vocabulary, spans: &[TextSpan], signals: &Signals, opts: &RankOptions) -> Vec<Suggestion> {
    let words = index_words(spans);
    let phrases = if opts.content_phrases { content_phrases(spans) } else { HashMap::new() };
    let mut scored: Vec<Suggestion> = Vec::new();
    for (i, entry) in vocab.entries().iter().enumerate() {
        let mut parts: Vec<(&'static str, f32)> = Vec::new();
        let mut evidence = Vec::new();

        if let Some((probs, model)) = &signals.classifier
            && let Some(Some(p)) = probs.get(i)
            && *p > 0.05
        {
            parts.push(("classifier", W_CLASSIFIER * p));
            evidence.push(Evidence { kind: "model", text: format!("classifier {model}: probability {p:.2}"), time_secs: None });
        }

        let (kw, kw_evidence) = keyword_strength(entry, &words);
        if kw > 0.0 {
            parts.push(("keywords", W_KEYWORDS * kw));
            evidence.extend(kw_evidence);
        } else if let Some(p) = phrases.get(&entry.tag) {
            // A compound tag said or shown as its words ("meal prep" for #mealprep): the
            // tag's own name, found.
            parts.push(("keywords", W_KEYWORDS * (1.0 - (-1.2f32).exp())));
            evidence.push(p.evidence());
        }

        if let Some((sims, model)) = &signals.text_similarity
            && let Some(&cos) = sims.get(i)
        {
            let s = ((cos - 0.15) / 0.45).clamp(0.0, 1.0);
            if s > 0.0 {
                parts.push(("text_embedding", W_TEXT * s));
                evidence.push(Evidence {
                    kind: "model",
                    text: format!("{model}: similarity {cos:.2} with the transcript and on-screen text"),
                    time_secs: None,
                });
            }
        }

        if let Some((sims, model)) = &signals.visual
            && let Some(&(cos, at)) = sims.get(i)
        {
            let s = ((cos - 0.2) / 0.15).clamp(0.0, 1.0);
            if s > 0.0 {
                parts.push(("visual", W_VISUAL * s));
                evidence.push(Evidence { kind: "frame", text: format!("{model}: frame matches with similarity {cos:.2}"), time_secs: Some(at) });
            }
        }

        if parts.is_empty() {
            continue;
        }
        let content = 1.0 - parts.iter().map(|(_, s)| 1.0 - s).product::<f32>();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut score = content;
        if let Some(history) = &signals.creator
            && let Some(&used) = history.uses.get(&entry.tag)
            && history.posts > 0
            && content >= opts.min_score / 2.0
        {
            let share = used as f32 / history.posts as f32;
            score = 1.0 - (1.0 - content) * (1.0 - W_CREATOR * share);
            parts.push(("creator", W_CREATOR * share));
            let posts = history.posts;
            let text = if used == posts {
                format!("you used {} in all of your last {posts} posts", entry.tag)
            } else {
                format!("you used {} in {used} of your last {posts} posts", entry.tag)
            };
            evidence.push(Evidence { kind: "creator", text, time_secs: None });
        }
        scored.push(Suggestion {
            tag: entry.tag.clone(),
            score: (score * 1000.0).round() / 1000.0,
            sources: parts.iter().map(|(name, _)| *name).collect(),
            evidence,
            generic: entry.generic,
        });
    }
    // Tags the video itself spells out that the vocabulary does not know yet.
    let known: HashSet<&str> = vocab.entries().iter().map(|e| e.tag.as_str()).collect();
    for p in phrases.values() {
        if let Some(score) = p.strength()
            && !known.contains(p.tag.as_str())
        {
            scored.push(Suggestion { tag: p.tag.clone(), score, sources: vec!["content_phrase"], evidence: vec![p.evidence()], generic: false });
        }
    }
    scored.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.tag.cmp(&b.tag)));

    let (generic, specific): (Vec<_>, Vec<_>) = scored.into_iter().filter(|s| s.score >= opts.min_score).partition(|s| s.generic);
    let mut out: Vec<Suggestion> = specific.into_iter().take(opts.count).collect();
    let room = opts.count.saturating_sub(out.len()).min(opts.max_generic);
    out.extend(generic.into_iter().take(room));
    out
}

/// Words that never start or end a content phrase.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "but", "so", "of", "to", "in", "on", "at", "for", "with", "from", "by", "up", "my", "your", "our", "his", "her",
    "their", "its", "this", "that", "these", "those", "is", "are", "was", "were", "be", "been", "am", "i", "you", "we", "they", "he", "she", "it", "me",
    "us", "them", "what", "how", "why", "when", "where", "who", "which", "do", "does", "did", "have", "has", "had", "will", "can", "just", "very",
    "really", "not", "no", "yes", "all", "some", "any", "more", "most", "new", "best", "easy", "quick", "today", "tonight", "now", "then", "here",
    "there", "about", "into", "out", "over", "after", "before", "again", "min", "mins", "minute", "minutes", "part", "pt", "vs",
];

/// A tag the video spells out: an on-screen line or a posting caption of one to three words
/// ("LEG DAY" → #legday, "room makeover" → #roommakeover), a hashtag written in the caption,
/// or two or three words said at least twice.
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
    words: usize,
}

impl Phrase {
    /// Its score as a new tag, when it is supported strongly enough to suggest one: a
    /// creator's own caption hashtag most, a short on-screen line or caption next, words said
    /// twice least. Below what a vocabulary tag found by its keywords scores, so the known
    /// tags keep the first slots.
    fn strength(&self) -> Option<f32> {
        let base = match (self.hashtag, self.source) {
            (true, _) => 0.6,
            (false, SpanSource::OnScreenText | SpanSource::Caption) if self.words >= 2 || self.count >= 2 => 0.45,
            (false, SpanSource::OnScreenText | SpanSource::Caption) => 0.35,
            (false, SpanSource::Transcript) if self.words >= 2 && self.count >= 2 => 0.35,
            (false, SpanSource::Transcript) => return None,
        };
        Some((base + 0.05 * (self.count.min(3) - 1) as f32).min(0.7))
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
            if p.hashtag || (p.source != SpanSource::Transcript && q.source == SpanSource::Transcript) {
                let count = q.count;
                *q = Phrase { count, ..p };
            }
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
                    add(Phrase { text: raw.to_owned(), tag, source: span.source, time_secs: None, count: 1, hashtag: true, words: 1 }, &mut out);
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
        match span.source {
            SpanSource::OnScreenText | SpanSource::Caption => {
                // The whole line, without the small words at its edges.
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
                    add(
                        Phrase {
                            tag: format!("#{joined}"),
                            text,
                            source: span.source,
                            time_secs: span.time_secs,
                            count: 1,
                            hashtag: false,
                            words: content.len(),
                        },
                        &mut out,
                    );
                }
            }
            SpanSource::Transcript => {
                for n in 2..=3 {
                    for gram in words.windows(n) {
                        if STOPWORDS.contains(&gram[0].as_str()) || STOPWORDS.contains(&gram[n - 1].as_str()) {
                            continue;
                        }
                        let joined: String = gram.concat();
                        if (4..=30).contains(&joined.chars().count()) {
                            let phrase = Phrase {
                                tag: format!("#{joined}"),
                                text: gram.join(" "),
                                source: span.source,
                                time_secs: span.time_secs,
                                count: 1,
                                hashtag: false,
                                words: n,
                            };
                            add(phrase, &mut out);
                        }
                    }
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

/// `1 − e^(−x)` of the distinct keywords found (the tag's own name counts double), with each
/// find as evidence.
fn keyword_strength(entry: &VocabEntry, words: &WordIndex) -> (f32, Vec<Evidence>) {
    let name = stem(entry.tag.trim_start_matches('#'));
    // The first place each keyword occurs in each source: a word both said and shown is
    // evidence twice over for a creator reading it.
    let mut found: BTreeMap<(&str, SpanSource), &(SpanSource, Option<f64>, String)> = BTreeMap::new();
    let mut distinct = 0usize;
    let mut weight = 0.0f32;
    let mut repeats = 0usize;
    let keys = std::iter::once(name.as_str()).chain(entry.keywords.iter().map(String::as_str).filter(|k| *k != name));
    for key in keys {
        if let Some(hits) = words.get(key) {
            weight += if key == name { 1.2 } else { 0.45 };
            repeats += hits.len() - 1;
            distinct += 1;
            for hit in hits {
                found.entry((key, hit.0)).or_insert(hit);
            }
        }
    }
    if distinct == 0 {
        return (0.0, Vec::new());
    }
    let strength = 1.0 - (-(weight + 0.1 * repeats.min(5) as f32)).exp();
    let evidence = found
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
    (strength, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(source: SpanSource, text: &str) -> TextSpan {
        TextSpan { source, text: text.into(), time_secs: Some(1.0) }
    }

    const OPTS: RankOptions = RankOptions { count: 5, max_generic: 1, min_score: 0.15, content_phrases: true };

    #[test]
    fn the_curated_list_names_each_tag_once() {
        let tags: Vec<&str> = CURATED.lines().filter(|l| l.contains('\t')).filter_map(|l| l.split('\t').next()).collect();
        let unique: BTreeSet<&str> = tags.iter().copied().collect();
        assert_eq!(tags.len(), unique.len(), "a tag is listed twice");
        assert!(unique.len() > 250, "{}", unique.len());
    }

    #[test]
    fn the_curated_list_parses_and_marks_generic_tags() {
        let v = Vocabulary::curated();
        assert!(v.len() > 80, "{}", v.len());
        let fyp = v.entries().iter().find(|e| e.tag == "#fyp").expect("#fyp is listed");
        assert!(fyp.generic);
        let cooking = v.entries().iter().find(|e| e.tag == "#cooking").expect("#cooking is listed");
        assert!(!cooking.generic && cooking.keywords.contains(&"recipe".to_owned()));
    }

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
    fn the_video_spells_out_tags_the_vocabulary_does_not_know() {
        let v = Vocabulary::curated();
        let spans = [
            span(SpanSource::OnScreenText, "ARM DAY"),
            span(SpanSource::Transcript, "Four sets of heavy squats. Heavy squats make strong legs, so heavy squats it is."),
            span(SpanSource::Caption, "new routine #ShredSeason #fyp"),
        ];
        let got = rank(&v, &spans, &Signals::default(), &RankOptions { count: 10, max_generic: 1, min_score: 0.3, content_phrases: true });
        let find = |tag: &str| got.iter().find(|s| s.tag == tag);
        let armday = find("#armday").expect("the on-screen line");
        assert_eq!(
            (armday.sources.as_slice(), armday.evidence[0].kind, armday.evidence[0].text.as_str()),
            (&["content_phrase"][..], "on_screen_text", "arm day")
        );
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
    fn a_compound_tag_is_found_from_its_words() {
        let mut v = Vocabulary::curated();
        v.extend_tags(["#pastanight"], VocabSource::Trending);
        let spans = [span(SpanSource::Transcript, "Sunday is pasta night for the whole family")];
        let got = rank(&v, &spans, &Signals::default(), &OPTS);
        let tag = got.iter().find(|s| s.tag == "#pastanight").expect("found from its words");
        assert_eq!(tag.sources, ["keywords"]);
        assert_eq!(tag.evidence[0].text, "pasta night");
    }

    #[test]
    fn generic_tags_never_crowd_out_specific_ones() {
        let v = Vocabulary::curated();
        let spans = [span(SpanSource::Caption, "#fyp #viral #foryou #trending dinner recipe in the kitchen")];
        // The generic tags score as high as the specific ones here, yet take no slot a
        // specific tag wants.
        let out = rank(&v, &spans, &Signals::default(), &RankOptions { count: 2, max_generic: 1, min_score: 0.1, content_phrases: true });
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|s| !s.generic), "{out:?}");
        let out = rank(&v, &spans, &Signals::default(), &RankOptions { count: 10, max_generic: 1, min_score: 0.1, content_phrases: true });
        assert_eq!(out.iter().filter(|s| s.generic).count(), 1, "{out:?}");
        assert!(out.last().expect("suggestions").generic);
    }

    #[test]
    fn every_suggestion_carries_the_evidence_that_made_it() {
        let v = Vocabulary::curated();
        let spans = [span(SpanSource::OnScreenText, "Homemade bread")];
        let out = rank(&v, &spans, &Signals::default(), &OPTS);
        let baking = out.iter().find(|s| s.tag == "#baking").expect("#baking suggested");
        assert_eq!(baking.sources, vec!["keywords"]);
        assert_eq!(baking.evidence[0].kind, "on_screen_text");
        assert_eq!(baking.evidence[0].text, "bread");
    }

    #[test]
    fn independent_signals_add_up() {
        let mut v = Vocabulary::default();
        v.extend_tags(["#alpha", "#beta"], VocabSource::Trending);
        let spans = [span(SpanSource::Transcript, "alpha")];
        let only_words = rank(&v, &spans, &Signals::default(), &OPTS);
        let signals = Signals { text_similarity: Some((vec![0.6, 0.0], "m".into())), ..Signals::default() };
        let both = rank(&v, &spans, &signals, &OPTS);
        assert!(both[0].score > only_words[0].score, "{both:?} vs {only_words:?}");
        let mut sources = both[0].sources.clone();
        sources.sort_unstable();
        assert_eq!(sources, vec!["keywords", "text_embedding"]);
        assert!(both[0].score < 1.0);
    }

    #[test]
    fn a_creators_history_reorders_supported_tags_and_adds_none() {
        let v = Vocabulary::curated();
        let spans = [span(SpanSource::Transcript, "Leg day at the gym: squats, deadlifts and a fitness workout with cardio and exercise")];
        let tags = |creator: Option<CreatorHistory>| {
            let signals = Signals { creator, ..Signals::default() };
            rank(&v, &spans, &signals, &RankOptions { count: 10, max_generic: 1, min_score: 0.15, content_phrases: true })
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

    #[test]
    fn tags_are_normalised_and_stems_meet() {
        assert_eq!(normalise_tag("Cooking").as_deref(), Some("#cooking"));
        assert_eq!(normalise_tag("#not a tag"), None);
        assert_eq!(stem("recipes"), "recipe");
        assert_eq!(stem("puppies"), "puppy");
        assert_eq!(stem("glass"), "glass");
    }
}
