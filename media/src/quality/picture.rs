//! Picture sub-scores: sharpness, exposure, contrast, colourfulness, noise.

use serde_json::json;

use super::{Context, SubScore, curve, log_curve, median, r1, r2, sub};

pub(super) fn scores(ctx: &Context<'_>) -> Vec<SubScore> {
    vec![sharpness(ctx), exposure(ctx), contrast(ctx), colourfulness(ctx), noise(ctx)]
}

fn not_measured(ctx: &Context<'_>, key: &'static str, label: &'static str, weight: f64) -> SubScore {
    let advice = if ctx.decoded.frame_stats.is_empty() {
        "No frames could be measured; check that the video plays."
    } else {
        "Every measured frame is black, so the picture cannot be judged: check the recording."
    };
    sub(key, label, weight, None, json!({}), advice.into())
}

/// Variance of the Laplacian: 100 is the usual line between soft and acceptable on
/// 480p-sized luma; compressed video rarely exceeds 400.
fn sharpness(ctx: &Context<'_>) -> SubScore {
    const KEY: &str = "sharpness";
    const LABEL: &str = "Sharpness";
    let Some(m) = median(ctx.lit.iter().map(|f| f64::from(f.sharpness)).collect()) else {
        return not_measured(ctx, KEY, LABEL, 1.5);
    };
    let score = log_curve(m, &[(20.0, 10.0), (50.0, 40.0), (100.0, 70.0), (200.0, 90.0), (400.0, 100.0)]);
    let advice = if score >= 80.0 {
        "Frames are sharp: keep focusing and exporting the way you do.".to_owned()
    } else {
        format!(
            "Frames look soft (sharpness {:.0}; crisp footage measures above 200): lock focus on your subject, clean the lens, add light so the camera uses a shorter shutter, and export at the source resolution instead of upscaling.",
            m
        )
    };
    sub(KEY, LABEL, 1.5, Some(score), json!({ "laplacian_variance": r1(m), "frames_measured": ctx.lit.len() }), advice)
}

/// Mid-grey luma is 128; a short video reads well with its median between 60 and 190.
/// Crushed shadows above 5 % of the picture and blown highlights above 3 % lose detail that
/// the platforms' re-encoding cannot bring back.
fn exposure(ctx: &Context<'_>) -> SubScore {
    const KEY: &str = "exposure";
    const LABEL: &str = "Exposure";
    let (Some(luma), Some(crushed), Some(blown)) = (
        median(ctx.lit.iter().map(|f| f64::from(f.luma_mean)).collect()),
        median(ctx.lit.iter().map(|f| f64::from(f.black_ratio)).collect()),
        median(ctx.lit.iter().map(|f| f64::from(f.white_ratio)).collect()),
    ) else {
        return not_measured(ctx, KEY, LABEL, 1.5);
    };
    let dark = (60.0 - luma).max(0.0) * 1.2;
    let bright = (luma - 190.0).max(0.0) * 1.5;
    let crush = (crushed - 0.05).max(0.0) * 150.0;
    let blow = (blown - 0.03).max(0.0) * 200.0;
    let score = 100.0 - dark - bright - crush - blow;
    let advice = if score >= 80.0 {
        "Exposure is balanced: keep lighting your subject this way.".to_owned()
    } else if dark + crush >= bright + blow {
        format!(
            "The picture is too dark (median luma {:.0} of 255, {:.0} % of pixels crushed to black): add light on your subject or raise exposure by about {:.1} stops.",
            luma,
            crushed * 100.0,
            ((110.0 / luma.max(8.0)).log2()).clamp(0.3, 4.0)
        )
    } else {
        format!(
            "The picture is overexposed (median luma {:.0} of 255, {:.0} % of pixels blown to white): lower exposure by about {:.1} stops or move away from bright backlight.",
            luma,
            blown * 100.0,
            ((luma / 128.0).log2()).clamp(0.3, 4.0)
        )
    };
    sub(KEY, LABEL, 1.5, Some(score), json!({ "median_luma": r1(luma), "crushed_ratio": r2(crushed), "blown_ratio": r2(blown) }), advice)
}

/// RMS contrast (luma standard deviation): below 20 looks washed out on a phone.
fn contrast(ctx: &Context<'_>) -> SubScore {
    const KEY: &str = "contrast";
    const LABEL: &str = "Contrast";
    let Some(m) = median(ctx.lit.iter().map(|f| f64::from(f.luma_std)).collect()) else {
        return not_measured(ctx, KEY, LABEL, 0.75);
    };
    let score = curve(m, &[(10.0, 10.0), (20.0, 45.0), (35.0, 80.0), (50.0, 100.0)]);
    let advice = if score >= 80.0 {
        "Contrast is healthy: keep your current grade.".to_owned()
    } else {
        format!(
            "The image looks flat (luma spread {:.0}; punchy shorts sit above 45): raise contrast in the edit or light the subject against a darker background.",
            m
        )
    };
    sub(KEY, LABEL, 0.75, Some(score), json!({ "luma_std": r1(m) }), advice)
}

/// Hasler–Süsstrunk: 15 is "slightly", 33 "moderately", 45 "averagely" colourful. Greyscale
/// can be a choice, so the floor is 25. Measured on the statistics frames, not on the sampled
/// ones: those change with what else the decode serves.
fn colourfulness(ctx: &Context<'_>) -> SubScore {
    const KEY: &str = "colourfulness";
    const LABEL: &str = "Colourfulness";
    let frames = &ctx.lit;
    let Some(m) = median(frames.iter().map(|f| f64::from(f.colourfulness)).collect()) else {
        return not_measured(ctx, KEY, LABEL, 0.5);
    };
    let score = curve(m, &[(0.0, 25.0), (15.0, 50.0), (33.0, 80.0), (45.0, 100.0)]);
    let advice = if score >= 80.0 {
        "Colours are lively: keep them.".to_owned()
    } else {
        format!(
            "Colours are muted (colourfulness {:.0}; lively footage scores above 45): add saturation in the edit, fix the white balance, or bring colourful props or clothing into frame.",
            m
        )
    };
    sub(KEY, LABEL, 0.5, Some(score), json!({ "colourfulness": r1(m), "frames_measured": frames.len() }), advice)
}

/// Noise σ in flat areas: below 2.5 is clean; above 5 grain is visible on a phone and eats
/// the platform's bitrate.
fn noise(ctx: &Context<'_>) -> SubScore {
    const KEY: &str = "noise";
    const LABEL: &str = "Noise";
    let Some(m) = median(ctx.lit.iter().map(|f| f64::from(f.noise_sigma)).collect()) else {
        return not_measured(ctx, KEY, LABEL, 0.75);
    };
    let score = curve(m, &[(1.0, 100.0), (2.5, 90.0), (5.0, 60.0), (8.0, 30.0), (12.0, 10.0)]);
    let advice = if score >= 80.0 {
        "The image is clean: keep shooting with this much light.".to_owned()
    } else {
        format!(
            "The image is grainy (noise σ {:.1} in flat areas; clean footage is below 2.5): add light so the camera can lower its ISO, or apply light denoising before export.",
            m
        )
    };
    sub(KEY, LABEL, 0.75, Some(score), json!({ "noise_sigma": r2(m) }), advice)
}
