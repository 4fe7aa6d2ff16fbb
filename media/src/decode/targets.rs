//! When the uniform samples are taken.

use super::Sampling;

/// Uniform sample times.
pub(super) enum Targets {
    None,
    /// Known duration: fixed times with a tolerance of half the spacing either side.
    Fixed {
        times: Vec<f64>,
        tolerance: f64,
    },
    /// Unknown duration: every `interval` seconds, thinned by halves whenever more than `keep`
    /// frames are held, and reduced to `count` at the end when set.
    Open {
        interval: f64,
        keep: usize,
        count: Option<usize>,
    },
}

impl Targets {
    pub fn fixed(&self) -> Option<&[f64]> {
        match self {
            Self::Fixed { times, .. } => Some(times),
            _ => None,
        }
    }
}

pub(super) fn plan_targets(sampling: Sampling, duration: f64, max_samples: usize) -> Targets {
    let max = max_samples.max(1);
    match sampling {
        Sampling::Off | Sampling::Count(0) => Targets::None,
        Sampling::Count(k) if duration > 0.0 => {
            let k = k.min(max);
            let step = duration / k as f64;
            Targets::Fixed { times: (0..k).map(|i| (i as f64 + 0.5) * step).collect(), tolerance: step / 2.0 }
        }
        Sampling::Count(k) => Targets::Open { interval: 1.0, keep: 2 * k.min(max), count: Some(k.min(max)) },
        Sampling::EverySecs(s) => {
            let s = if s.is_finite() && s > 0.0 { s } else { 1.0 };
            if duration > 0.0 {
                let s = s.max(duration / max as f64);
                let n = ((duration / s).ceil() as usize).clamp(1, max);
                Targets::Fixed { times: (0..n).map(|i| i as f64 * s).filter(|t| *t < duration).collect(), tolerance: s / 2.0 }
            } else {
                Targets::Open { interval: s, keep: max, count: None }
            }
        }
    }
}

pub(super) fn sample_interval(sampling: Sampling, duration: f64, count: usize) -> f64 {
    match sampling {
        Sampling::EverySecs(s) if s > 0.0 => s.max(duration / count.max(1) as f64),
        _ => duration / count.max(1) as f64,
    }
}
