//! Engagement arithmetic over pulled TikTok videos: the virality score and its statistics,
//! the music ranking, and the trending-hashtag score. Pure functions, so that the scheduler,
//! the api and the worker's analyses compute the same numbers.

pub mod music;
pub mod trends;
pub mod virality;

/// Engagement counters of one video at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Plays.
    pub views: i64,
    /// Likes ("diggs").
    pub likes: i64,
    /// Comments.
    pub comments: i64,
    /// Shares.
    pub shares: i64,
}
