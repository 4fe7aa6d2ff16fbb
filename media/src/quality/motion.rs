//! Sub-scores over time: motion, stability, pacing, continuity and the hook.

use serde_json::json;

use crate::decode::FrameStats;

use super::{Context, SubScore, curve, is_black, mean, median, r1, r2, sub};

/// The hook is judged on this many opening seconds.
const HOOK_SECS: f64 = 3.0;
/// Frame difference below which consecutive frames count as frozen.
const FROZEN_DIFF: f32 = 0.2;
const MIN_BLACK_SECS: f64 = 0.5;
const MIN_FROZEN_SECS: f64 = 1.5;

pub(super) fn scores(ctx: &Context<'_>) -> Vec<SubScore> {
    vec![motion(ctx), stability(ctx), pacing(ctx), continuity(ctx), hook(ctx)]
}

fn not_measured(key: &'static str, label: &'static str, weight: f64) -> SubScore {
    sub(key, label, weight, None, json!({}), "Too few frames could be measured to judge this.".into())
}

/// Frame differences that are motion, not cuts.
fn motion_diffs<'a>(frames: impl Iterator<Item = &'a FrameStats>) -> Vec<f64> {
    frames.filter(|f| !f.scene_cut).filter_map(|f| f.difference).map(f64::from).collect()
}

/// Mean absolute frame difference (0–255): under 0.5 the picture barely moves, which loses
/// viewers; above 35 it is hard to follow.
fn motion(ctx: &Context<'_>) -> SubScore {
    const KEY: &str = "motion";
    const LABEL: &str = "Motion";
    let Some(m) = mean(&motion_diffs(ctx.decoded.frame_stats.iter())) else {
        return not_measured(KEY, LABEL, 0.75);
    };
    let score = curve(m, &[(0.0, 45.0), (0.5, 55.0), (2.0, 90.0), (4.0, 100.0), (20.0, 100.0), (35.0, 75.0), (60.0, 40.0)]);
    let advice = if score >= 80.0 {
        "The amount of movement is engaging: keep it.".to_owned()
    } else if m < 2.0 {
        format!("The picture barely moves (mean frame change {:.1}): add camera movement, gestures, B-roll or zoom-ins to hold attention.", m)
    } else {
        format!("Motion is very busy (mean frame change {:.0}): hold shots a little longer or slow fast pans so viewers can follow.", m)
    };
    sub(KEY, LABEL, 0.75, Some(score), json!({ "mean_frame_difference": r2(m) }), advice)
}

/// Camera shake is the frame-to-frame change of the global shift: a steady pan shifts by the
/// same amount every frame (change ≈ 0), a shaky hand changes direction constantly. Over 1 %
/// of the frame per frame is visibly shaky.
fn stability(ctx: &Context<'_>) -> SubScore {
    const KEY: &str = "stability";
    const LABEL: &str = "Stability";
    let frames = &ctx.decoded.frame_stats;
    let mut jitter = Vec::new();
    for w in frames.windows(2) {
        if let (Some([ax, ay]), Some([bx, by])) = (w[0].shift, w[1].shift)
            && !w[1].scene_cut
        {
            jitter.push(100.0 * f64::from((bx - ax).abs() + (by - ay).abs()));
        }
    }
    let Some(m) = median(jitter.clone()) else {
        return not_measured(KEY, LABEL, 1.0);
    };
    let mean_jitter = mean(&jitter).unwrap_or(m);
    let score = curve(m, &[(0.3, 100.0), (0.6, 90.0), (1.0, 70.0), (2.0, 40.0), (4.0, 10.0)]);
    let advice = if score >= 80.0 {
        "The camera is steady: keep using a tripod, gimbal or a braced grip.".to_owned()
    } else {
        format!(
            "The camera shakes (the frame jumps by about {:.1} % of its size between frames): use a tripod or gimbal, turn on stabilisation, or stabilise in the edit.",
            m
        )
    };
    sub(
        KEY,
        LABEL,
        1.0,
        Some(score),
        json!({ "median_jitter_percent": r2(m), "mean_jitter_percent": r2(mean_jitter), "frame_pairs": jitter.len() }),
        advice,
    )
}

/// Cuts per minute: fast-paced shorts cut every 2–10 s (6–40 a minute); a single take is
/// fine for a talking head but loses some retention; over 90 a minute flickers.
fn pacing(ctx: &Context<'_>) -> SubScore {
    const KEY: &str = "pacing";
    const LABEL: &str = "Pacing";
    if ctx.decoded.frame_stats.len() < 2 || ctx.duration <= 0.0 {
        return not_measured(KEY, LABEL, 0.5);
    }
    let cuts = ctx.decoded.scene_cuts.len();
    let per_minute = cuts as f64 * 60.0 / ctx.duration;
    let score = curve(per_minute, &[(0.0, 70.0), (3.0, 85.0), (6.0, 100.0), (40.0, 100.0), (90.0, 70.0), (150.0, 40.0)]);
    let advice = if score >= 80.0 {
        "The editing rhythm suits short video: keep cutting at this pace.".to_owned()
    } else if per_minute < 6.0 {
        format!(
            "The video has {cuts} cut{} ({:.1} a minute): cut every 2–5 seconds, trim pauses, or add B-roll and angle changes to keep momentum.",
            if cuts == 1 { "" } else { "s" },
            per_minute
        )
    } else {
        format!("Cuts come very fast ({:.0} a minute): let key shots stay on screen for at least a second so viewers can read them.", per_minute)
    };
    sub(KEY, LABEL, 0.5, Some(score), json!({ "scene_cuts": cuts, "cuts_per_minute": r1(per_minute) }), advice)
}

/// A stretch of consecutive statistics frames satisfying a predicate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Stretch {
    pub start: f64,
    pub end: f64,
}

/// Stretches where `pred` holds for at least `min_secs`. Each frame stands for the time until
/// the next one.
pub(super) fn stretches(frames: &[FrameStats], end_of_video: f64, min_secs: f64, pred: impl Fn(&FrameStats) -> bool) -> Vec<Stretch> {
    let mut out = Vec::new();
    let mut start: Option<f64> = None;
    for (i, f) in frames.iter().enumerate() {
        let next_t = frames.get(i + 1).map_or(end_of_video.max(f.time_secs), |n| n.time_secs);
        if pred(f) {
            start.get_or_insert(f.time_secs);
        } else if let Some(s) = start.take()
            && f.time_secs - s >= min_secs
        {
            out.push(Stretch { start: s, end: f.time_secs });
        }
        if i + 1 == frames.len()
            && let Some(s) = start.take()
            && next_t - s >= min_secs
        {
            out.push(Stretch { start: s, end: next_t });
        }
    }
    out
}

/// Black (≥ 0.5 s) and frozen (≥ 1.5 s) stretches: dead air on a feed where viewers swipe in
/// a second. Each percent of the duration costs 2.5 points.
fn continuity(ctx: &Context<'_>) -> SubScore {
    const KEY: &str = "continuity";
    const LABEL: &str = "Continuity";
    let frames = &ctx.decoded.frame_stats;
    if frames.len() < 2 || ctx.duration <= 0.0 {
        return not_measured(KEY, LABEL, 1.0);
    }
    let black = stretches(frames, ctx.duration, MIN_BLACK_SECS, is_black);
    let frozen = stretches(frames, ctx.duration, MIN_FROZEN_SECS, |f| !is_black(f) && f.difference.is_some_and(|d| d < FROZEN_DIFF));
    // A fold from +0.0: an empty float sum is −0.0, which would print as "-0.0 s".
    let black_secs = black.iter().fold(0.0, |acc, s| acc + (s.end - s.start));
    let frozen_secs = frozen.iter().fold(0.0, |acc, s| acc + (s.end - s.start));
    let share = ((black_secs + frozen_secs) / ctx.duration).min(1.0);
    let score = 100.0 - 250.0 * share;
    let advice = if black.is_empty() && frozen.is_empty() {
        "No black or frozen stretches: the picture keeps moving.".to_owned()
    } else {
        let worst = black.iter().chain(&frozen).max_by(|a, b| (a.end - a.start).total_cmp(&(b.end - b.start)));
        let kind = |s: &Stretch| if black.contains(s) { "black" } else { "frozen" };
        match worst {
            Some(s) => format!(
                "The picture is {} for {:.1} s from {:.1} s ({:.1} s of black and {:.1} s of frozen picture in all): trim it or cover it with B-roll, text or motion.",
                kind(s),
                s.end - s.start,
                s.start,
                black_secs,
                frozen_secs
            ),
            None => "Trim black or frozen stretches.".to_owned(),
        }
    };
    let list = |v: &[Stretch]| v.iter().map(|s| json!([r1(s.start), r1(s.end)])).collect::<Vec<_>>();
    sub(
        KEY,
        LABEL,
        1.0,
        Some(score),
        json!({
            "black_secs": r1(black_secs),
            "frozen_secs": r1(frozen_secs),
            "black_stretches": list(&black),
            "frozen_stretches": list(&frozen),
        }),
        advice,
    )
}

/// The first three seconds decide whether a viewer stays: points for motion (up to 35), a cut
/// (15), not opening on black (10), sound within half a second (20, 10 within 1.5 s) and
/// speech within 1.5 s (20, 10 within 3 s).
fn hook(ctx: &Context<'_>) -> SubScore {
    const KEY: &str = "hook";
    const LABEL: &str = "Hook (first 3 s)";
    let frames = &ctx.decoded.frame_stats;
    let window = HOOK_SECS.min(ctx.duration.max(0.0));
    let early: Vec<&FrameStats> = frames.iter().filter(|f| f.time_secs < window.max(0.1)).collect();
    if early.is_empty() {
        return not_measured(KEY, LABEL, 1.5);
    }
    let early_motion = mean(&motion_diffs(early.iter().copied())).unwrap_or(0.0);
    let motion_pts = curve(early_motion, &[(0.0, 0.0), (1.0, 15.0), (3.0, 30.0), (6.0, 35.0)]);
    let cut = ctx.decoded.scene_cuts.iter().any(|c| c.time_secs > 0.05 && c.time_secs < window);
    let cut_pts = if cut { 15.0 } else { 0.0 };
    let black_open = stretches(frames, ctx.duration, 0.3, is_black).first().is_some_and(|s| s.start <= 0.05);
    let open_pts = if black_open { 0.0 } else { 10.0 };
    let sound = ctx.features.and_then(|f| f.sound_onset_secs);
    let speech = ctx.features.and_then(|f| f.speech_onset_secs);
    let sound_pts = match sound {
        Some(t) if t <= 0.5 => 20.0,
        Some(t) if t <= 1.5 => 10.0,
        _ => 0.0,
    };
    let speech_pts = match speech {
        Some(t) if t <= 1.5 => 20.0,
        Some(t) if t <= HOOK_SECS => 10.0,
        _ => 0.0,
    };
    let score = motion_pts + cut_pts + open_pts + sound_pts + speech_pts;
    // Advice for the part that lost the most points.
    let gaps = [
        (35.0 - motion_pts, "open on movement: start mid-action, with a gesture or a quick zoom"),
        (15.0 - cut_pts, "cut to a new shot within the first 3 seconds"),
        (10.0 - open_pts, "do not open on a black frame: start on your best shot"),
        (20.0 - sound_pts, "start sound immediately: music or voice from the first frame"),
        (20.0 - speech_pts, "say the key line (the promise of the video) within the first second and a half"),
    ];
    let advice = if score >= 80.0 {
        "The opening grabs attention: keep starting this strongly.".to_owned()
    } else {
        let worst = gaps.iter().max_by(|a, b| a.0.total_cmp(&b.0)).map_or("start with your strongest moment", |g| g.1);
        format!("The first 3 seconds score {:.0} of 100: {worst}.", score)
    };
    sub(
        KEY,
        LABEL,
        1.5,
        Some(score),
        json!({
            "early_motion": r2(early_motion),
            "cut_in_first_3s": cut,
            "opens_on_black": black_open,
            "sound_onset_secs": sound.map(r2),
            "speech_onset_secs": speech.map(r2),
            "speech_ratio": ctx.features.map(|f| r2(f.speech_ratio)),
        }),
        advice,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t: f64, mean: f32, diff: Option<f32>) -> FrameStats {
        FrameStats {
            time_secs: t,
            luma_mean: mean,
            luma_std: if mean < 18.0 { 1.0 } else { 40.0 },
            black_ratio: 0.0,
            white_ratio: 0.0,
            sharpness: 100.0,
            noise_sigma: 1.0,
            colourfulness: 30.0,
            difference: diff,
            shift: None,
            picture: [0.0, 0.0, 1.0, 1.0],
            scene_cut: false,
        }
    }

    #[test]
    fn stretches_cover_the_time_until_the_next_frame() {
        let frames: Vec<FrameStats> = (0..20).map(|i| frame(f64::from(i) * 0.1, if i < 8 { 5.0 } else { 100.0 }, Some(3.0))).collect();
        let black = stretches(&frames, 2.0, 0.5, is_black);
        assert_eq!(black, vec![Stretch { start: 0.0, end: 0.8 }]);
        // A trailing stretch runs to the end of the video.
        let frames: Vec<FrameStats> = (0..20).map(|i| frame(f64::from(i) * 0.1, 100.0, Some(if i >= 5 { 0.0 } else { 3.0 }))).collect();
        let frozen = stretches(&frames, 2.0, 1.5, |f| f.difference.is_some_and(|d| d < FROZEN_DIFF));
        assert_eq!(frozen, vec![Stretch { start: 0.5, end: 2.0 }]);
        assert!(stretches(&frames[..3], 0.3, 0.5, is_black).is_empty());
    }
}
