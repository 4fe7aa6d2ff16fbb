//! The tags the suggester chooses from: a curated seed shipped with reelq
//! (`assets/vocabulary/*.tsv`, one file per group of creator niches), grown at run time by the
//! hashtags of pulled data and the trained classifier's labels.
//!
//! Each seed line is `tag<TAB>kind<TAB>aliases<TAB>description<TAB>keywords`: `kind` is `topic`
//! or `generic`; `aliases` are tags that mean the same (`#jewellery` for `#jewelry`, `#gymlife`
//! for `#gym`) or `-`; the description is what the sentence encoder compares a video with; the
//! keywords are words that, said or shown, point to the tag: its own words, then the jargon
//! creators of its niche use ("rpe", "openers" and "lockout" for `#powerlifting`).
//!
//! Variants merge into one entry: a tag, its aliases, and its spelling variants (`#Recipes`,
//! `#recipe`, `#re_cipe` share the key `recipe`) all resolve to the entry that was known
//! first, so a pulled `#recipes` adds nothing new when `#recipe` is curated, and a creator's
//! `#GymLife` supports `#gym`.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

/// The seed, by file; `core` holds the broad niche tags.
const SEED: &[(&str, &str)] = &[
    ("core", include_str!("../../assets/vocabulary/core.tsv")),
    ("food", include_str!("../../assets/vocabulary/food.tsv")),
    ("fitness", include_str!("../../assets/vocabulary/fitness.tsv")),
    ("beauty", include_str!("../../assets/vocabulary/beauty.tsv")),
    ("home", include_str!("../../assets/vocabulary/home.tsv")),
    ("knowledge", include_str!("../../assets/vocabulary/knowledge.tsv")),
    ("culture", include_str!("../../assets/vocabulary/culture.tsv")),
    ("life", include_str!("../../assets/vocabulary/life.tsv")),
];

/// The seed's broader tags: `tag<TAB>broader tags`, the wider categories or communities a
/// creator posting the tag commonly adds to the same post (#minecraft → #gaming #gamer), most
/// likely first. Every tag on a line is an entry of the seed.
const BROADER: &str = include_str!("../../assets/vocabulary/broader.tsv");

/// Where a vocabulary entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VocabSource {
    /// Shipped with reelq.
    Curated,
    /// The hashtags of pulled data (the trending list and the frequent tags).
    Trending,
    /// A label of the trained classifier.
    Classifier,
}

/// What pulled data adds to the vocabulary of a job: the trending and most used hashtags (most
/// used first) and the wider tags learned from the posts that carry them, `(tag, wider)`, as
/// pulled (lower case, `#` optional).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PulledTags {
    pub tags: Vec<String>,
    pub links: Vec<(String, String)>,
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
    /// What videos under the tag show, for a curated tag.
    pub about: Option<String>,
    /// Tags that mean the same, lower case with `#`.
    pub aliases: Vec<String>,
    /// A broad niche tag (#fitness, #food, #beauty) of the seed's core list, the kind a creator
    /// posts beside the specific ones.
    pub broad: bool,
    /// How widely pulled data uses the tag (or one of its variants), 0–1 by rank: 1 for the
    /// most used, 0 when pulled data does not carry it.
    pub popularity: f32,
    /// The entries of the wider categories or communities a creator posting this tag commonly
    /// tags too (#gaming for #minecraft), most likely first, as indices into the vocabulary.
    pub broader: Vec<usize>,
}

impl VocabEntry {
    /// The text the sentence encoder sees for this tag.
    pub fn description(&self) -> String {
        let name = self.tag.trim_start_matches('#');
        match &self.about {
            Some(about) => format!("{name}: {about}"),
            None if self.keywords.is_empty() => name.to_owned(),
            None => format!("{name}: {}", self.keywords.join(" ")),
        }
    }
}

/// The tags the suggester chooses from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vocabulary {
    entries: Vec<VocabEntry>,
    /// Variant key of every tag and alias → its entry.
    index: HashMap<String, usize>,
    /// The words of the seed's descriptions and keywords: what a new compound tag is split into
    /// ("pastanight" → "pasta night") for the sentence encoder.
    words: HashSet<String>,
}

impl Vocabulary {
    /// The seed shipped with reelq.
    pub fn curated() -> Self {
        Self::seed().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the shipped hashtag vocabulary does not parse");
            Self::default()
        })
    }

    /// The shipped seed, or what is wrong with it.
    pub fn seed() -> Result<Self, String> {
        let mut v = Self::default();
        for (name, text) in SEED {
            v.parse_into(text, *name == "core").map_err(|e| format!("assets/vocabulary/{name}.tsv: {e}"))?;
        }
        v.link_broader(BROADER).map_err(|e| format!("assets/vocabulary/broader.tsv: {e}"))?;
        Ok(v)
    }

    /// Reads `tag<TAB>broader tags` lines (`# ` starts a comment) into the entries' `broader`.
    /// Every tag must be an entry already, and none broader than itself.
    pub fn link_broader(&mut self, text: &str) -> Result<(), String> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with("# ") || line == "#" {
                continue;
            }
            let bad = |what: String| format!("line {}: {what}", n + 1);
            let Some((tag, wider)) = line.split_once('\t') else {
                return Err(bad("expected `tag<TAB>broader tags`".into()));
            };
            let i = self.find(tag).ok_or_else(|| bad(format!("{tag} is not in the vocabulary")))?;
            let mut broader = Vec::new();
            for w in wider.split_whitespace() {
                let j = self.find(w).ok_or_else(|| bad(format!("{w} is not in the vocabulary")))?;
                if j == i {
                    return Err(bad(format!("{w} is {tag} itself")));
                }
                if self.entries[j].generic {
                    return Err(bad(format!("{w} is a generic tag")));
                }
                if !broader.contains(&j) {
                    broader.push(j);
                }
            }
            self.entries[i].broader = broader;
        }
        Ok(())
    }

    /// Parses seed lines (see the module documentation); lines starting with `# ` are comments.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut v = Self::default();
        v.parse_into(text, false)?;
        Ok(v)
    }

    fn parse_into(&mut self, text: &str, broad: bool) -> Result<(), String> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with("# ") || line == "#" {
                continue;
            }
            let bad = |what: String| format!("line {}: {what}", n + 1);
            let cols: Vec<&str> = line.split('\t').collect();
            let [tag, kind, aliases, about, words] = cols[..] else {
                return Err(bad("expected `tag<TAB>kind<TAB>aliases<TAB>description<TAB>keywords`".into()));
            };
            let tag = normalise_tag(tag).ok_or_else(|| bad(format!("`{tag}` is not a hashtag")))?;
            let generic = match kind {
                "generic" => true,
                "topic" => false,
                other => return Err(bad(format!("kind `{other}` is neither topic nor generic"))),
            };
            let aliases = if aliases == "-" {
                Vec::new()
            } else {
                aliases
                    .split_whitespace()
                    .map(|a| normalise_tag(a).ok_or_else(|| bad(format!("alias `{a}` is not a hashtag"))))
                    .collect::<Result<_, _>>()?
            };
            for w in about.split(|c: char| !c.is_ascii_alphabetic()).chain(words.split_whitespace()).filter(|w| w.len() >= 2) {
                self.words.insert(w.to_lowercase());
            }
            // Words that fit any video ("easy", "minutes") point to no tag.
            let mut keywords: Vec<String> =
                words.split_whitespace().filter(|w| !super::STOPWORDS.contains(&w.to_lowercase().as_str())).map(stem).collect();
            keywords.sort();
            keywords.dedup();
            let about = Some(about.trim().to_owned()).filter(|a| !a.is_empty());
            let entry = VocabEntry { tag, generic, keywords, source: VocabSource::Curated, about, aliases, broad, popularity: 0.0, broader: Vec::new() };
            if let Some(clash) = self.clash(&entry) {
                return Err(bad(format!("{} or an alias is a variant of {}, listed before", entry.tag, clash)));
            }
            self.push(entry);
        }
        Ok(())
    }

    /// The entry an earlier one already claims one of `e`'s variant keys for.
    fn clash(&self, e: &VocabEntry) -> Option<&str> {
        std::iter::once(&e.tag).chain(&e.aliases).find_map(|t| self.index.get(&variant_key(t))).map(|&i| self.entries[i].tag.as_str())
    }

    /// Adds tags (a pulled-data list, most used first, or a classifier's labels); a tag that
    /// is a variant or alias of a known one merges into it, lending it its popularity.
    pub fn extend_tags<'a>(&mut self, tags: impl IntoIterator<Item = &'a str>, source: VocabSource) {
        let tags: Vec<String> = tags.into_iter().filter_map(normalise_tag).collect();
        let n = tags.len().max(1) as f32;
        for (rank, tag) in tags.into_iter().enumerate() {
            let popularity = if source == VocabSource::Trending { 1.0 - rank as f32 / n } else { 0.0 };
            match self.find(&tag) {
                Some(i) => {
                    let e = &mut self.entries[i];
                    e.popularity = e.popularity.max(popularity);
                }
                None => {
                    self.add(tag, source, popularity);
                }
            }
        }
    }

    /// A new entry for `tag` (lower case with `#`) that only its name describes; its index, or
    /// `None` when it clashes with a known one.
    fn add(&mut self, tag: String, source: VocabSource, popularity: f32) -> Option<usize> {
        let generic = GENERIC.contains(&tag.as_str());
        let keywords = vec![stem(tag.trim_start_matches('#'))];
        let about = self.split_words(tag.trim_start_matches('#'));
        self.push(VocabEntry { tag, generic, keywords, source, about, aliases: Vec::new(), broad: false, popularity, broader: Vec::new() })
    }

    /// Grows the vocabulary with pulled data: its tags join (see [`Vocabulary::extend_tags`]),
    /// then each learned link adds its wider tag to the tag's broader tags, after the seed's.
    /// A wider tag not known yet joins as a pulled tag; links of a tag the vocabulary does not
    /// know, to a generic tag, or to the tag itself are skipped. Returns the links added.
    pub fn grow(&mut self, pulled: &PulledTags) -> usize {
        self.extend_tags(pulled.tags.iter().map(String::as_str), VocabSource::Trending);
        let mut added = 0;
        for (tag, wider) in &pulled.links {
            let Some(i) = self.find(tag) else { continue };
            // A wider tag pulled, but neither trending nor among the most used, joins without
            // popularity.
            let Some(j) = self.find(wider).or_else(|| self.add(normalise_tag(wider)?, VocabSource::Trending, 0.0)) else { continue };
            if i == j || self.entries[j].generic || self.entries[i].broader.contains(&j) {
                continue;
            }
            self.entries[i].broader.push(j);
            added += 1;
        }
        added
    }

    /// Adds `e` and returns its index, unless it clashes with a known entry.
    fn push(&mut self, e: VocabEntry) -> Option<usize> {
        if self.clash(&e).is_some() {
            return None;
        }
        let i = self.entries.len();
        for t in std::iter::once(&e.tag).chain(&e.aliases) {
            self.index.insert(variant_key(t), i);
        }
        self.entries.push(e);
        Some(i)
    }

    /// `body` as two or more known words ("pastanight" → "pasta night"), the fewest that
    /// cover it; `None` when no split into known words exists.
    fn split_words(&self, body: &str) -> Option<String> {
        let chars: Vec<char> = body.chars().filter(|c| *c != '_').collect();
        let n = chars.len();
        if !(4..=40).contains(&n) {
            return None;
        }
        // best[i]: the fewest words covering chars[..i], and where the last one starts.
        let mut best: Vec<Option<(usize, usize)>> = vec![None; n + 1];
        best[0] = Some((0, 0));
        for end in 1..=n {
            for start in end.saturating_sub(20)..end {
                let Some((count, _)) = best[start] else { continue };
                let word: String = chars[start..end].iter().collect();
                if self.words.contains(&word) && best[end].is_none_or(|(c, _)| count + 1 < c) {
                    best[end] = Some((count + 1, start));
                }
            }
        }
        let (count, _) = best[n]?;
        if count < 2 {
            return None;
        }
        let mut parts = Vec::new();
        let mut end = n;
        while end > 0 {
            let (_, start) = best[end]?;
            parts.push(chars[start..end].iter().collect::<String>());
            end = start;
        }
        parts.reverse();
        Some(parts.join(" "))
    }

    /// The entry `tag` (any case, with or without `#`, or an alias or variant) resolves to.
    pub fn find(&self, tag: &str) -> Option<usize> {
        self.index.get(&variant_key(&normalise_tag(tag)?)).copied()
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
pub(crate) use reelq_core::domain::GENERIC_HASHTAGS as GENERIC;

/// What spelling variants of one tag share: lower case, no `#` or `_`, a plural's singular.
pub fn variant_key(tag: &str) -> String {
    let body: String = tag.trim_start_matches('#').chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect();
    stem(&body)
}

/// `Cooking` or `#cooking` → `#cooking`; `None` for something that cannot be a hashtag.
pub fn normalise_tag(raw: &str) -> Option<String> {
    let body = raw.trim().trim_start_matches('#').to_lowercase();
    let ok = (1..=100).contains(&body.chars().count()) && body.chars().all(|c| c.is_alphanumeric() || c == '_');
    ok.then(|| format!("#{body}"))
}

/// Plurals of words ending in `i` that creators say or tag: "-is" is otherwise kept whole, as
/// most words ending so are singular ("tennis", "analysis", "paris").
const I_PLURALS: &[&str] = &[
    "minis",
    "skis",
    "corgis",
    "bikinis",
    "martinis",
    "emojis",
    "kiwis",
    "taxis",
    "safaris",
    "zucchinis",
    "yetis",
    "tikis",
    "khakis",
    "salamis",
    "bonsais",
    "jedis",
    "hijabis",
    "blinis",
    "alibis",
    "wikis",
    "kois",
    "sushis",
    "origamis",
    "tamagotchis",
];

/// A light stemmer, enough to let "recipes" meet "recipe" and "goals" meet "goal".
pub fn stem(word: &str) -> String {
    let w = word.to_lowercase();
    let w = w.trim_end_matches("'s");
    let n = w.chars().count();
    if n > 4 && w.ends_with("ies") {
        format!("{}y", &w[..w.len() - 3])
    } else if n > 3
        && w.ends_with('s')
        && (!["ss", "us", "is"].iter().any(|e| w.ends_with(e)) || I_PLURALS.contains(&w))
        && !["news", "series", "species"].contains(&w)
    {
        w[..w.len() - 1].to_owned()
    } else {
        w.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_parses_with_descriptions_and_no_tag_twice() {
        let v = Vocabulary::seed().expect("the shipped seed parses");
        assert!(v.len() >= 2_000, "{} tags", v.len());
        let described = v.entries().iter().filter(|e| e.about.is_some()).count();
        assert_eq!(described, v.len(), "every seed tag has a description");
        let fyp = &v.entries()[v.find("#fyp").expect("#fyp")];
        assert!(fyp.generic);
        let cooking = &v.entries()[v.find("cooking").expect("#cooking")];
        assert!(!cooking.generic && cooking.keywords.contains(&"recipe".to_owned()));
    }

    #[test]
    fn links_learned_from_pulled_posts_add_wider_tags_after_the_seeds() {
        let mut v = Vocabulary::seed().expect("seed");
        let legday = v.find("#legday").expect("#legday");
        let seeded = v.entries()[legday].broader.clone();
        assert!(!seeded.is_empty());
        let pulled = PulledTags {
            tags: vec!["legdaysquad".into()],
            links: vec![
                ("legday".into(), "legdaysquad".into()),
                // Unknown before: joins as a pulled tag without popularity.
                ("#LegDay".into(), "#quadgains".into()),
                // Already a seed link, a generic tag, the tag itself, an unknown tag: skipped.
                ("legday".into(), v.entries()[seeded[0]].tag.clone()),
                ("legday".into(), "fyp".into()),
                ("legday".into(), "legdays".into()),
                ("qzxvnotatag".into(), "gym".into()),
            ],
        };
        assert_eq!(v.grow(&pulled), 2);
        let broader: Vec<&str> = v.entries()[legday].broader.iter().map(|&j| v.entries()[j].tag.as_str()).collect();
        let n = seeded.len();
        assert_eq!(broader[n..], ["#legdaysquad", "#quadgains"]);
        let squad = &v.entries()[v.find("#legdaysquad").expect("pulled")];
        let quad = &v.entries()[v.find("#quadgains").expect("joined")];
        assert_eq!((squad.source, squad.popularity), (VocabSource::Trending, 1.0));
        assert_eq!((quad.source, quad.popularity), (VocabSource::Trending, 0.0));
        assert!(v.find("#qzxvnotatag").is_none());
    }

    #[test]
    fn variants_and_aliases_merge_into_the_entry_known_first() {
        let mut v = Vocabulary::parse(
            "#recipe\ttopic\t#recipes #recipeideas\tcooking instructions for a dish\tingredient\n#gym\ttopic\t#gymlife\tlifting weights at a gym\tweights\n",
        )
        .expect("parses");
        assert_eq!(v.find("#Recipes"), Some(0));
        assert_eq!(v.find("RECIPE_IDEAS"), Some(0));
        assert_eq!(v.find("#gymlife"), Some(1));
        v.extend_tags(["#GymLife", "#recipe_s", "#legday", "#legdays", "#Leg_Day"], VocabSource::Trending);
        let tags: Vec<&str> = v.entries().iter().map(|e| e.tag.as_str()).collect();
        assert_eq!(tags, ["#recipe", "#gym", "#legday"]);
        // A new compound tag is described by the known words it is made of.
        v.extend_tags(["#gymweights", "#qzxv"], VocabSource::Trending);
        let described = |t: &str| v.entries().iter().find(|e| e.tag == t).and_then(|e| e.about.clone());
        assert_eq!(described("#gymweights").as_deref(), Some("gym weights"), "{v:?}");
        assert_eq!(described("#qzxv"), None);
        // Popularity follows the pulled order, taken by the entry a variant merged into.
        assert!(v.entries()[1].popularity > v.entries()[2].popularity && v.entries()[2].popularity > 0.0, "{v:?}");
        assert_eq!(v.entries()[2].source, VocabSource::Trending);
        // A seed that lists one tag under two spellings is refused.
        let twice = Vocabulary::parse("#cat\ttopic\t-\tcats\tcat\n#cats\ttopic\t-\tmore cats\tcat\n").expect_err("a variant listed twice");
        assert!(twice.contains("line 2") && twice.contains("#cat"), "{twice}");
    }

    #[test]
    fn broader_tags_link_known_entries_and_refuse_the_rest() {
        let text = "#gym\ttopic\t#gymlife\tlifting weights\tgym\n#fitness\ttopic\t-\tkeeping fit\tfit\n#fyp\tgeneric\t-\treach\tfyp\n";
        let mut v = Vocabulary::parse(text).expect("parses");
        v.link_broader("# a comment\n#GymLife\t#fitness #Fitness\n").expect("links");
        assert_eq!(v.entries()[0].broader, [1], "an alias names its entry, once");
        for (bad, says) in [
            ("#gym\t#cardio\n", "#cardio is not in the vocabulary"),
            ("#yoga\t#fitness\n", "#yoga is not in the vocabulary"),
            ("#gym\t#gymlife\n", "itself"),
            ("#gym\t#fyp\n", "generic"),
            ("#gym #fitness\n", "expected"),
        ] {
            let e = Vocabulary::parse(text).expect("parses").link_broader(bad).expect_err(bad);
            assert!(e.contains(says) && e.starts_with("line 1"), "{bad}: {e}");
        }
    }

    #[test]
    fn tags_are_normalised_and_stems_meet() {
        assert_eq!(normalise_tag("Cooking").as_deref(), Some("#cooking"));
        assert_eq!(normalise_tag("#not a tag"), None);
        assert_eq!(stem("recipes"), "recipe");
        assert_eq!(stem("puppies"), "puppy");
        assert_eq!(stem("glass"), "glass");
        assert_eq!((stem("news"), stem("analysis"), stem("tennis")), ("news".to_owned(), "analysis".to_owned(), "tennis".to_owned()));
        assert_eq!((stem("minis"), stem("Skis")), ("mini".to_owned(), "ski".to_owned()));
        assert_eq!(variant_key("#Leg_Days"), "legday");
    }
}
