//! Where decoded frames go: timestamps, uniform samples, scene frames and statistics.

use std::collections::VecDeque;

use ffmpeg::format::Pixel;
use ffmpeg::frame;
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;

use reelq_core::domain::JobErrorCode;

use super::pixels;
use super::stream::{VideoInfo, rational};
use super::targets::Targets;
use super::{
    DecodeError, DecodeOptions, DecodeOutput, DecodeReport, DecodedAudio, FrameSize, FrameStats, SampleKind, SampledFrame, SceneCut, SceneOptions,
};

/// A cached scaler and its output frame.
struct Scaler {
    key: (Pixel, u32, u32, Pixel, u32, u32),
    ctx: scaling::Context,
    out: frame::Video,
}

fn scale<'a>(cache: &'a mut Option<Scaler>, src: &frame::Video, dst: Pixel, w: u32, h: u32) -> Result<&'a frame::Video, DecodeError> {
    let key = (src.format(), src.width(), src.height(), dst, w, h);
    if cache.as_ref().is_none_or(|s| s.key != key) {
        let ctx = scaling::Context::get(src.format(), src.width(), src.height(), dst, w, h, scaling::Flags::BILINEAR)
            .map_err(|e| DecodeError::invalid(format!("frames in pixel format {:?} cannot be converted: {e}", src.format())))?;
        *cache = Some(Scaler { key, ctx, out: frame::Video::empty() });
    }
    let Some(s) = cache.as_mut() else { return Err(DecodeError::invalid("scaler unavailable")) };
    s.ctx.run(src, &mut s.out).map_err(|e| DecodeError::invalid(format!("a frame could not be converted: {e}")))?;
    Ok(&s.out)
}

/// Copies the first plane of a packed frame into a tight buffer of `row_bytes` per row.
fn tight_plane(f: &frame::Video, row_bytes: usize) -> Option<Vec<u8>> {
    if f.planes() == 0 {
        return None;
    }
    let (stride, h) = (f.stride(0), f.height() as usize);
    let data = f.data(0);
    if stride < row_bytes || data.len() < stride * h.saturating_sub(1) + row_bytes {
        return None;
    }
    let mut out = Vec::with_capacity(row_bytes * h);
    for y in 0..h {
        out.extend_from_slice(&data[y * stride..y * stride + row_bytes]);
    }
    Some(out)
}

/// Longest side of the statistics thumbnail.
const THUMB_LONG: usize = 160;
/// Short side of the working luma image.
const WORK_SHORT: u32 = 480;

/// Receives decoded frames and keeps what the options ask for.
pub(super) struct VideoSink {
    opts_size: FrameSize,
    scenes: Option<SceneOptions>,
    keep_stats: bool,
    measure: bool,
    stats_gap: f64,
    max_pixels: u64,
    rotation: i32,
    time_base: f64,
    start_ts: Option<i64>,
    frame_secs: f64,
    duration: f64,
    pub targets: Targets,
    next: usize,
    /// For open targets: the next time wanted.
    open_next: f64,
    pub last_t: Option<f64>,
    pub frames: u64,
    coded: Option<(u32, u32)>,
    pixel_aspect: f64,
    intervals: Vec<f64>,
    last_frame_t: Option<f64>,
    max_t: f64,
    rgb: Option<Scaler>,
    gray: Option<Scaler>,
    /// The colour thumbnail's scaler, apart from the samples' so neither rebuilds the other's.
    thumb_rgb: Option<Scaler>,
    prev_thumb: Option<pixels::Gray>,
    last_stats_t: Option<f64>,
    recent_diffs: VecDeque<f32>,
    last_cut_t: Option<f64>,
    pub samples: Vec<SampledFrame>,
    scene_frames: Vec<(f32, SampledFrame)>,
    cuts: Vec<SceneCut>,
    stats: Vec<FrameStats>,
}

impl VideoSink {
    pub fn new(info: &VideoInfo, opts: &DecodeOptions, targets: Targets) -> Self {
        let open_next = 0.0;
        let fps = if opts.stats_max_fps.is_finite() && opts.stats_max_fps > 0.0 { opts.stats_max_fps } else { 15.0 };
        Self {
            opts_size: opts.frame_size,
            scenes: opts.scenes,
            keep_stats: opts.frame_stats,
            measure: opts.dense(),
            // Half a frame of slack so that 30 fps footage at 15 is every other frame.
            stats_gap: (1.0 / fps - info.frame_secs / 2.0).max(0.0),
            max_pixels: opts.limits.max_pixels,
            rotation: info.rotation,
            time_base: info.time_base,
            start_ts: info.start_ts,
            frame_secs: info.frame_secs,
            duration: info.duration,
            targets,
            next: 0,
            open_next,
            last_t: None,
            frames: 0,
            coded: None,
            pixel_aspect: 1.0,
            intervals: Vec::new(),
            last_frame_t: None,
            max_t: 0.0,
            rgb: None,
            gray: None,
            thumb_rgb: None,
            prev_thumb: None,
            last_stats_t: None,
            recent_diffs: VecDeque::new(),
            last_cut_t: None,
            samples: Vec::new(),
            scene_frames: Vec::new(),
            cuts: Vec::new(),
            stats: Vec::new(),
        }
    }

    /// The next uniform sample time, if any is left.
    pub fn next_target(&self) -> Option<f64> {
        match &self.targets {
            Targets::None => None,
            Targets::Fixed { times, .. } => times.get(self.next).copied(),
            Targets::Open { .. } => Some(self.open_next),
        }
    }

    /// The slot of the next fixed sample: the earliest and latest frame time it takes.
    pub fn slot(&self) -> Option<(f64, f64)> {
        match &self.targets {
            Targets::Fixed { times, tolerance } => times.get(self.next).map(|t| (t - tolerance, t + tolerance)),
            _ => None,
        }
    }

    pub fn target_index(&self) -> Option<usize> {
        match &self.targets {
            Targets::Fixed { times, .. } => (self.next < times.len()).then_some(self.next),
            _ => None,
        }
    }

    /// Every sample is taken and nothing else is wanted from the frames.
    pub fn done(&self) -> bool {
        !self.measure
            && match &self.targets {
                Targets::None => true,
                Targets::Fixed { times, .. } => self.next >= times.len(),
                Targets::Open { .. } => false,
            }
    }

    /// After a seek: the next frame is not the successor of the last one.
    pub fn reset_timeline(&mut self) {
        self.last_t = None;
        self.prev_thumb = None;
    }

    fn frame_time(&mut self, f: &frame::Video, report: &mut DecodeReport) -> f64 {
        let raw = f.timestamp().or_else(|| f.pts());
        let candidate = raw.map(|ts| {
            let start = *self.start_ts.get_or_insert(ts);
            ts.saturating_sub(start) as f64 * self.time_base
        });
        // A jump far past the declared end is a corrupt timestamp, not a long still.
        let ceiling = if self.duration > 0.0 { self.duration * 2.0 + 10.0 } else { f64::INFINITY };
        let t = match (candidate, self.last_t) {
            (Some(t), None) if t.is_finite() && t <= ceiling => t,
            (Some(t), Some(last)) if t.is_finite() && t > last && t <= ceiling.max(last + 10.0) => t,
            (_, Some(last)) => {
                report.timestamp_repairs += 1;
                last + self.frame_secs
            }
            (_, None) => {
                report.timestamp_repairs += 1;
                self.max_t
            }
        };
        self.last_t = Some(t);
        t
    }

    /// Whether the frame at `t` is a uniform sample; advances the targets.
    fn wants(&mut self, t: f64, accept_from: Option<f64>) -> bool {
        let half = self.frame_secs / 2.0;
        match &mut self.targets {
            Targets::None => false,
            Targets::Fixed { times, tolerance } => {
                while self.next < times.len() && t > times[self.next] + *tolerance {
                    self.next += 1;
                }
                let Some(&target) = times.get(self.next) else { return false };
                let take = t + half >= target || accept_from.is_some_and(|a| t >= a && t >= target - *tolerance);
                if take {
                    self.next += 1;
                    while self.next < times.len() && times[self.next] <= t + half {
                        self.next += 1;
                    }
                }
                take
            }
            Targets::Open { interval, .. } => {
                if t + half >= self.open_next {
                    while self.open_next <= t + half {
                        self.open_next += *interval;
                    }
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Keeps open-ended sampling within its budget by dropping every other frame.
    fn thin(&mut self) {
        if let Targets::Open { interval, keep, .. } = &mut self.targets
            && self.samples.len() > *keep
        {
            let mut i = 0;
            self.samples.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            *interval *= 2.0;
            if let Some(last) = self.samples.last() {
                self.open_next = last.time_secs + *interval;
            }
        }
    }

    pub fn on_frame(&mut self, f: &frame::Video, accept_from: Option<f64>, report: &mut DecodeReport) -> Result<(), DecodeError> {
        report.frames_decoded += 1;
        let (w, h) = (f.width(), f.height());
        if w == 0 || h == 0 || f.planes() == 0 || f.format() == Pixel::None {
            report.decode_errors += 1;
            return Ok(());
        }
        if u64::from(w) * u64::from(h) > self.max_pixels {
            return Err(DecodeError::Invalid {
                code: JobErrorCode::ResolutionTooHigh,
                message: format!("a frame is {w}×{h}; at most {} pixels are accepted", self.max_pixels),
            });
        }
        self.frames += 1;
        if self.coded.is_none() {
            self.coded = Some((w, h));
            let sar = rational(f.aspect_ratio());
            self.pixel_aspect = if sar.is_finite() && (0.1..=10.0).contains(&sar) { sar } else { 1.0 };
        }
        if f.is_interlaced() {
            report.interlaced_frames += 1;
        }
        let t = self.frame_time(f, report);
        if let Some(prev) = self.last_frame_t
            && t > prev
            && self.intervals.len() < 10_000
        {
            self.intervals.push(t - prev);
        }
        self.last_frame_t = Some(t);
        self.max_t = self.max_t.max(t);

        let mut cut = None;
        if self.measure && self.last_stats_t.is_none_or(|l| t - l >= self.stats_gap || t < l) {
            self.last_stats_t = Some(t);
            report.stats_frames += 1;
            if let Some(stats) = self.measure_frame(f, t)? {
                if stats.scene_cut {
                    cut = stats.difference;
                }
                if self.keep_stats {
                    self.stats.push(stats);
                }
            }
        }

        if self.wants(t, accept_from) {
            let sample = self.convert(f, t, SampleKind::Uniform, report)?;
            self.samples.push(sample);
            self.thin();
        }
        if let (Some(diff), Some(scenes)) = (cut, self.scenes)
            && scenes.max_frames > 0
        {
            let weakest = self.scene_frames.iter().enumerate().min_by(|a, b| a.1.0.total_cmp(&b.1.0)).map(|(i, s)| (i, s.0));
            if self.scene_frames.len() < scenes.max_frames {
                let frame = self.convert(f, t, SampleKind::SceneCut, report)?;
                self.scene_frames.push((diff, frame));
            } else if let Some((i, weakest)) = weakest
                && diff > weakest
            {
                let frame = self.convert(f, t, SampleKind::SceneCut, report)?;
                self.scene_frames[i] = (diff, frame);
            }
        }
        Ok(())
    }

    /// Output size before rotation for the configured frame size.
    fn scaled_size(&self, w: u32, h: u32) -> (u32, u32) {
        let clamp = |v: f64| (v.round() as u32).clamp(1, 4096);
        let short_scaled = |n: u32| {
            let (dw, dh) = (f64::from(w) * self.pixel_aspect, f64::from(h));
            if dw >= dh { (clamp(f64::from(n) * dw / dh), clamp(f64::from(n))) } else { (clamp(f64::from(n)), clamp(f64::from(n) * dh / dw)) }
        };
        match self.opts_size {
            FrameSize::Square(n) => (n.clamp(1, 4096), n.clamp(1, 4096)),
            FrameSize::CenterCrop(n) | FrameSize::ShortSide(n) => short_scaled(n.clamp(1, 4096)),
        }
    }

    fn convert(&mut self, f: &frame::Video, t: f64, kind: SampleKind, report: &mut DecodeReport) -> Result<SampledFrame, DecodeError> {
        report.frames_converted += 1;
        let (sw, sh) = self.scaled_size(f.width(), f.height());
        let out = scale(&mut self.rgb, f, Pixel::RGB24, sw, sh)?;
        let mut rgb = tight_plane(out, sw as usize * 3).ok_or_else(|| DecodeError::invalid("a converted frame has an unexpected layout"))?;
        let (mut w, mut h) = (sw, sh);
        if let FrameSize::CenterCrop(n) = self.opts_size {
            let n = n.clamp(1, 4096).min(sw).min(sh);
            rgb = pixels::crop_rgb(&rgb, sw as usize, sh as usize, n as usize, n as usize);
            (w, h) = (n, n);
        }
        if self.rotation != 0 {
            let (r, rw, rh) = pixels::rotate_rgb(&rgb, w as usize, h as usize, self.rotation);
            rgb = r;
            (w, h) = (rw as u32, rh as u32);
        }
        let colourfulness = pixels::colourfulness(&rgb);
        Ok(SampledFrame { time_secs: t, kind, width: w, height: h, rgb, colourfulness })
    }

    /// Statistics of one frame; `None` when it is too small to measure.
    fn measure_frame(&mut self, f: &frame::Video, t: f64) -> Result<Option<FrameStats>, DecodeError> {
        let (w, h) = (f.width(), f.height());
        let scale_factor = (f64::from(WORK_SHORT) / f64::from(w.min(h))).min(1.0);
        let (ww, wh) = (((f64::from(w) * scale_factor).round() as u32).max(1), ((f64::from(h) * scale_factor).round() as u32).max(1));
        if ww < 8 || wh < 8 {
            return Ok(None);
        }
        let out = scale(&mut self.gray, f, Pixel::GRAY8, ww, wh)?;
        let Some(data) = tight_plane(out, ww as usize) else { return Ok(None) };
        let work = pixels::Gray { w: ww as usize, h: wh as usize, data };
        let factor = work.w.max(work.h).div_ceil(THUMB_LONG).max(1);
        let thumb = work.box_down(factor);
        let bx = pixels::picture_box(&thumb);
        let work_box = bx.scaled(factor, work.w, work.h);
        let tone = pixels::tone(&work, &work_box);
        let sharpness = pixels::laplacian_variance(&work, &work_box);
        let noise_sigma = pixels::noise_sigma(&work, &work_box);
        let colour = scale(&mut self.thumb_rgb, f, Pixel::RGB24, thumb.w as u32, thumb.h as u32)?;
        let colourfulness = tight_plane(colour, thumb.w * 3).map_or(0.0, |rgb| pixels::colourfulness(&pixels::crop_area_rgb(&rgb, thumb.w, &bx)));
        let (difference, shift) = match &self.prev_thumb {
            Some(prev) => (pixels::mean_abs_diff(prev, &thumb), pixels::global_shift(prev, &thumb)),
            None => (None, None),
        };
        let mut scene_cut = false;
        if let (Some(d), Some(scenes)) = (difference, self.scenes) {
            let recent = if self.recent_diffs.is_empty() { 0.0 } else { self.recent_diffs.iter().sum::<f32>() / self.recent_diffs.len() as f32 };
            if d >= scenes.threshold && d >= 2.5 * recent + 2.0 && self.last_cut_t.is_none_or(|c| t - c >= scenes.min_gap_secs) {
                scene_cut = true;
                self.last_cut_t = Some(t);
                self.cuts.push(SceneCut { time_secs: t, difference: d });
            }
            self.recent_diffs.push_back(d);
            if self.recent_diffs.len() > 5 {
                self.recent_diffs.pop_front();
            }
        }
        let dims = (thumb.w, thumb.h);
        self.prev_thumb = Some(thumb);
        let shift = if scene_cut { None } else { shift };
        let display_shift = shift.map(|[dx, dy]| if self.rotation == 90 || self.rotation == 270 { [dy, dx] } else { [dx, dy] });
        Ok(Some(FrameStats {
            time_secs: t,
            luma_mean: tone.mean,
            luma_std: tone.std,
            black_ratio: tone.black,
            white_ratio: tone.white,
            sharpness,
            noise_sigma,
            colourfulness,
            difference,
            shift: display_shift,
            picture: bx.rotated_fractions(dims, self.rotation),
            scene_cut,
        }))
    }

    pub fn finish(self, info: &VideoInfo, audio: Option<DecodedAudio>, report: DecodeReport) -> DecodeOutput {
        let (cw, ch) = self.coded.unwrap_or((0, 0));
        let (width, height) = if self.rotation == 90 || self.rotation == 270 { (ch, cw) } else { (cw, ch) };
        let mut intervals = self.intervals;
        intervals.sort_by(f64::total_cmp);
        let median = intervals.get(intervals.len() / 2).copied();
        // Decoded frames depend on what was skipped for the other analyses sharing the decode;
        // packets do not. Frame intervals serve only when the packets carry no times.
        let measured_frame_rate = report.packet_frame_rate().or_else(|| median.filter(|m| *m > 0.0).map(|m| 1.0 / m));
        let frame_end = self.max_t + median.unwrap_or(self.frame_secs);
        let duration_secs = if self.frames > 0 { frame_end.max(info.duration) } else { info.duration };
        let mut samples = self.samples;
        if let Targets::Open { count: Some(k), .. } = self.targets
            && samples.len() > k
        {
            let n = samples.len();
            let picks: Vec<usize> = (0..k).map(|i| ((i as f64 + 0.5) * n as f64 / k as f64) as usize).collect();
            samples = samples.into_iter().enumerate().filter(|(i, _)| picks.contains(i)).map(|(_, s)| s).collect();
        }
        let mut scene_frames: Vec<SampledFrame> = self.scene_frames.into_iter().map(|(_, f)| f).collect();
        scene_frames.sort_by(|a, b| a.time_secs.total_cmp(&b.time_secs));
        DecodeOutput {
            width,
            height,
            rotation: self.rotation,
            pixel_aspect: self.pixel_aspect,
            duration_secs,
            measured_frame_rate,
            samples,
            scene_frames,
            scene_cuts: self.cuts,
            frame_stats: self.stats,
            audio,
            report,
        }
    }
}
