//! Delivery sub-scores: aspect ratio, resolution, frame rate, bitrate and duration, judged
//! against what the vertical short-video platforms play (9:16, 1080×1920, 30 fps).

use serde_json::json;

use super::{Context, SubScore, curve, log_curve, median, r1, r2, r4, sub};

/// 9:16.
const TARGET_ASPECT: f64 = 9.0 / 16.0;
/// A video with bars covering more than this share of the frame is called letterboxed.
const BARS_SHARE: f64 = 0.05;

pub(super) fn scores(ctx: &Context<'_>) -> Vec<SubScore> {
    vec![aspect_ratio(ctx), resolution(ctx), frame_rate(ctx), bitrate(ctx), duration(ctx)]
}

/// The displayed frame (rotation and pixel aspect applied) and the picture inside its bars.
struct Geometry {
    frame_w: f64,
    frame_h: f64,
    picture_w: f64,
    picture_h: f64,
}

impl Geometry {
    fn of(ctx: &Context<'_>) -> Self {
        let d = ctx.decoded;
        let (w, h) = if d.width > 0 && d.height > 0 {
            (f64::from(d.width), f64::from(d.height))
        } else {
            (f64::from(ctx.probe.video.display_width), f64::from(ctx.probe.video.display_height))
        };
        // Pixel aspect stretches the coded width, which is the displayed height after a
        // quarter turn.
        let sar = if d.pixel_aspect > 0.0 { d.pixel_aspect } else { 1.0 };
        let (frame_w, h) = if d.rotation == 90 || d.rotation == 270 { (w, h * sar) } else { (w * sar, h) };
        let part = |i: usize| median(d.frame_stats.iter().map(|f| f64::from(f.picture[i])).collect());
        let (l, t, r, b) = (part(0).unwrap_or(0.0), part(1).unwrap_or(0.0), part(2).unwrap_or(1.0), part(3).unwrap_or(1.0));
        let (fw, fh) = ((r - l).clamp(0.05, 1.0), (b - t).clamp(0.05, 1.0));
        Self { frame_w, frame_h: h, picture_w: frame_w * fw, picture_h: h * fh }
    }

    fn bars_share(&self) -> f64 {
        1.0 - (self.picture_w * self.picture_h) / (self.frame_w * self.frame_h).max(1.0)
    }
}

fn ratio_name(r: f64) -> String {
    let named = [(9.0 / 16.0, "9:16"), (3.0 / 4.0, "3:4"), (4.0 / 5.0, "4:5"), (1.0, "1:1"), (4.0 / 3.0, "4:3"), (16.0 / 9.0, "16:9"), (2.39, "2.39:1")];
    named.iter().find(|(v, _)| (r / v).ln().abs() < 0.03).map_or_else(|| format!("{r:.2}:1"), |(_, n)| (*n).to_owned())
}

/// Distance from 9:16 on a log scale, so 16:9 and 81:256 are equally far.
fn aspect_ratio(ctx: &Context<'_>) -> SubScore {
    let g = Geometry::of(ctx);
    if g.frame_w <= 0.0 || g.frame_h <= 0.0 {
        return sub("aspect_ratio", "Aspect ratio", 1.5, None, json!({}), "The frame size is unknown.".into());
    }
    let ratio = g.picture_w / g.picture_h;
    let d = (ratio / TARGET_ASPECT).ln().abs();
    let score = if d <= 0.03 { 100.0 } else { (100.0 - 70.0 * d).max(10.0) };
    let bars = g.bars_share();
    let advice = if score >= 80.0 {
        "The picture fills a vertical 9:16 screen: keep framing for it.".to_owned()
    } else if bars > BARS_SHARE {
        format!(
            "The picture is {} with black bars covering {:.0} % of the frame: reframe or crop it to fill 9:16 (1080×1920) so it plays full screen.",
            ratio_name(ratio),
            bars * 100.0
        )
    } else {
        format!(
            "The video is {}: shoot or crop to vertical 9:16 (1080×1920) so it fills the phone screen instead of showing with bars.",
            ratio_name(ratio)
        )
    };
    sub(
        "aspect_ratio",
        "Aspect ratio",
        1.5,
        Some(score),
        json!({
            "frame_aspect": r4(g.frame_w / g.frame_h),
            "picture_aspect": r4(ratio),
            "picture": ratio_name(ratio),
            "bars_ratio": r2(bars),
        }),
        advice,
    )
}

/// Short side of the picture against 1080: smaller uploads are upscaled by the player and look
/// soft next to native 1080p.
fn resolution(ctx: &Context<'_>) -> SubScore {
    let g = Geometry::of(ctx);
    let short = g.picture_w.min(g.picture_h);
    if short <= 0.0 {
        return sub("resolution", "Resolution", 1.0, None, json!({}), "The frame size is unknown.".into());
    }
    let score = curve(short, &[(240.0, 15.0), (360.0, 35.0), (480.0, 50.0), (540.0, 55.0), (720.0, 75.0), (1080.0, 100.0)]);
    let advice = if score >= 80.0 {
        "Resolution is ready for full-screen playback.".to_owned()
    } else {
        format!(
            "The picture is only {:.0}×{:.0}: record and export at 1080×1920 so it stays crisp on full-screen phones.",
            g.picture_w.round(),
            g.picture_h.round()
        )
    };
    sub(
        "resolution",
        "Resolution",
        1.0,
        Some(score),
        json!({ "width": g.frame_w.round(), "height": g.frame_h.round(), "picture_short_side": short.round() }),
        advice,
    )
}

fn fps_of(ctx: &Context<'_>) -> Option<f64> {
    ctx.decoded
        .measured_frame_rate
        .filter(|f| f.is_finite() && *f > 0.0 && *f < 1000.0)
        .or_else(|| Some(ctx.probe.video.frame_rate).filter(|f| f.is_finite() && *f > 0.0 && *f < 1000.0))
}

/// 30 fps is the platforms' norm (60 is accepted); 24–25 reads as cinematic; below 20 motion
/// stutters.
fn frame_rate(ctx: &Context<'_>) -> SubScore {
    let Some(fps) = fps_of(ctx) else {
        return sub("frame_rate", "Frame rate", 0.75, None, json!({}), "The frame rate could not be measured.".into());
    };
    let score = curve(fps, &[(10.0, 15.0), (15.0, 40.0), (24.0, 85.0), (29.0, 100.0)]);
    let advice = if score >= 80.0 {
        "The frame rate gives smooth motion.".to_owned()
    } else {
        format!("The video runs at {:.0} fps, so motion stutters: record and export at 30 fps (or 60 for fast action).", fps)
    };
    sub("frame_rate", "Frame rate", 0.75, Some(score), json!({ "fps": r2(fps), "declared_fps": r2(ctx.probe.video.frame_rate) }), advice)
}

/// Bits per pixel per frame of the video stream: the platforms re-encode uploads, and a
/// starved upload (under 0.05 for H.264) loses detail twice.
fn bitrate(ctx: &Context<'_>) -> SubScore {
    let report = &ctx.decoded.report;
    let (w, h) = (f64::from(ctx.probe.video.width), f64::from(ctx.probe.video.height));
    let fps = fps_of(ctx);
    let bits_per_sec = if report.video_complete && ctx.duration > 0.0 {
        Some(report.video_bytes as f64 * 8.0 / ctx.duration)
    } else if ctx.probe.bit_rate > 0 {
        // The container's overall rate includes audio; take off a typical 128 kbit/s.
        let audio = if ctx.probe.audio.is_some() { 128_000.0 } else { 0.0 };
        Some((ctx.probe.bit_rate as f64 - audio).max(ctx.probe.bit_rate as f64 * 0.5))
    } else if ctx.probe.size_bytes > 0 && ctx.duration > 0.0 {
        Some(ctx.probe.size_bytes as f64 * 8.0 / ctx.duration)
    } else {
        None
    };
    let (Some(rate), Some(fps)) = (bits_per_sec, fps) else {
        return sub("bitrate", "Bitrate", 0.75, None, json!({}), "The bitrate could not be measured.".into());
    };
    if w <= 0.0 || h <= 0.0 {
        return sub("bitrate", "Bitrate", 0.75, None, json!({}), "The frame size is unknown.".into());
    }
    let bpp = rate / (w * h * fps);
    let score = log_curve(bpp, &[(0.01, 10.0), (0.02, 35.0), (0.05, 70.0), (0.1, 100.0)]);
    // 0.1 bit per pixel of 1080×1920 at the video's frame rate (at most 60).
    let advised = 0.1 * 1080.0 * 1920.0 * fps.min(60.0) / 1e6;
    let advice = if score >= 80.0 {
        "The bitrate leaves headroom for the platform's re-encoding.".to_owned()
    } else {
        format!(
            "The video is encoded at {:.1} Mbit/s ({:.3} bits per pixel): export 1080×1920 at about {:.0} Mbit/s so detail survives the platform's re-encoding.",
            rate / 1e6,
            bpp,
            advised
        )
    };
    sub(
        "bitrate",
        "Bitrate",
        0.75,
        Some(score),
        json!({ "video_bits_per_sec": rate.round(), "bits_per_pixel": r4(bpp), "codec": ctx.probe.video.codec }),
        advice,
    )
}

/// Completion drives distribution: 7–60 s is the sweet spot; under 3 s there is no story;
/// past 90 s fewer viewers finish.
fn duration(ctx: &Context<'_>) -> SubScore {
    let d = ctx.duration;
    let score = curve(d, &[(0.0, 0.0), (3.0, 30.0), (7.0, 100.0), (60.0, 100.0), (90.0, 85.0), (180.0, 60.0), (600.0, 30.0)]);
    let advice = if score >= 80.0 {
        "The length suits short video.".to_owned()
    } else if d < 7.0 {
        format!("At {:.1} s the video is very short: aim for 7–60 s so there is room for a hook, a payoff and a loop.", d)
    } else {
        format!("At {:.0} s the video is long for a short: cut it to under 60 s, or split it into a series.", d)
    };
    sub("duration", "Duration", 1.0, Some(score), json!({ "seconds": r1(d) }), advice)
}
