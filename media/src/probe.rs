//! Probing: what is in a file, checked against the configured limits before any decoding.

use std::path::Path;

use ffmpeg_next as ffmpeg;
use serde::Serialize;

use reelq_core::domain::JobErrorCode;

use crate::MediaSettings;

/// Why a file was refused. Every variant is the user's input, never retried.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct MediaError {
    /// Stable code.
    pub code: JobErrorCode,
    /// Human explanation.
    pub message: String,
}

impl MediaError {
    fn new(code: JobErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// What a probe found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Probe {
    /// FFmpeg's demuxer name (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`).
    pub container: String,
    /// Its long name.
    pub format_long_name: String,
    /// Duration in seconds.
    pub duration_secs: f64,
    /// Overall bit rate, bits per second.
    pub bit_rate: i64,
    /// File size in bytes.
    pub size_bytes: u64,
    /// The main video stream.
    pub video: VideoStream,
    /// The main audio stream, if any.
    pub audio: Option<AudioStream>,
    /// Every stream, in file order.
    pub streams: Vec<StreamInfo>,
}

/// The main video stream.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VideoStream {
    pub index: usize,
    pub codec: String,
    /// Coded width, before rotation.
    pub width: u32,
    /// Coded height, before rotation.
    pub height: u32,
    /// Width as displayed, after rotation.
    pub display_width: u32,
    /// Height as displayed, after rotation.
    pub display_height: u32,
    /// Average frames per second.
    pub frame_rate: f64,
    /// Clockwise display rotation in degrees (0, 90, 180, 270).
    pub rotation: i32,
    pub pixel_format: String,
    /// Frame count when the container records it.
    pub frames: Option<i64>,
}

/// The main audio stream.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AudioStream {
    pub index: usize,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub sample_format: String,
}

/// One stream of any kind.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StreamInfo {
    pub index: usize,
    /// `video`, `audio`, `subtitle`, `data`, `attachment` or `unknown`.
    pub kind: String,
    pub codec: String,
}

fn medium_name(m: ffmpeg::media::Type) -> &'static str {
    match m {
        ffmpeg::media::Type::Video => "video",
        ffmpeg::media::Type::Audio => "audio",
        ffmpeg::media::Type::Subtitle => "subtitle",
        ffmpeg::media::Type::Data => "data",
        ffmpeg::media::Type::Attachment => "attachment",
        ffmpeg::media::Type::Unknown => "unknown",
    }
}

fn rational(r: ffmpeg::Rational) -> f64 {
    if r.denominator() == 0 { 0.0 } else { f64::from(r.numerator()) / f64::from(r.denominator()) }
}

/// Opens and describes a file, enforcing the limits. Blocking: call it off the async runtime.
pub fn probe(path: &Path, limits: &MediaSettings) -> Result<Probe, MediaError> {
    super::init();
    let size_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let ctx =
        ffmpeg::format::input(&path).map_err(|e| MediaError::new(JobErrorCode::InvalidMedia, format!("the file could not be read as a video: {e}")))?;
    let stream_count = ctx.streams().count();
    if stream_count > limits.max_streams {
        return Err(MediaError::new(
            JobErrorCode::TooManyStreams,
            format!("the file has {stream_count} streams; at most {} are accepted", limits.max_streams),
        ));
    }
    let mut streams = Vec::with_capacity(stream_count);
    for s in ctx.streams() {
        let p = s.parameters();
        streams.push(StreamInfo { index: s.index(), kind: medium_name(p.medium()).to_owned(), codec: p.id().name().to_owned() });
    }

    let vstream =
        ctx.streams().best(ffmpeg::media::Type::Video).ok_or_else(|| MediaError::new(JobErrorCode::NoVideoStream, "the file has no video stream"))?;
    let vctx = ffmpeg::codec::context::Context::from_parameters(vstream.parameters())
        .map_err(|e| MediaError::new(JobErrorCode::InvalidMedia, format!("the video stream cannot be described: {e}")))?;
    let vdec = vctx.decoder().video().map_err(|e| MediaError::new(JobErrorCode::InvalidMedia, format!("no decoder for the video stream: {e}")))?;
    let (width, height) = (vdec.width(), vdec.height());
    if width == 0 || height == 0 {
        return Err(MediaError::new(JobErrorCode::InvalidMedia, "the video stream has no frame size"));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(MediaError::new(
            JobErrorCode::ResolutionTooHigh,
            format!("the video is {width}×{height} ({pixels} pixels); at most {} pixels are accepted", limits.max_pixels),
        ));
    }
    let rotation = vstream
        .side_data()
        .find(|sd| sd.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix)
        .and_then(|sd| super::decode::clockwise_rotation(sd.data()))
        .or_else(|| vstream.metadata().get("rotate").and_then(|r| r.parse::<i32>().ok()).map(|r| r.rem_euclid(360)))
        .unwrap_or(0);
    let (display_width, display_height) = if rotation == 90 || rotation == 270 { (height, width) } else { (width, height) };

    let duration_secs = if ctx.duration() > 0 {
        ctx.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)
    } else {
        let tb = rational(vstream.time_base());
        (vstream.duration().max(0) as f64) * tb
    };
    if duration_secs > limits.max_duration_secs {
        return Err(MediaError::new(
            JobErrorCode::VideoTooLong,
            format!("the video lasts {duration_secs:.1} s; at most {:.0} s are accepted", limits.max_duration_secs),
        ));
    }
    let frames = (vstream.frames() > 0).then(|| vstream.frames());
    let video = VideoStream {
        index: vstream.index(),
        codec: vstream.parameters().id().name().to_owned(),
        width,
        height,
        display_width,
        display_height,
        frame_rate: rational(vstream.avg_frame_rate()),
        rotation,
        pixel_format: format!("{:?}", vdec.format()).to_lowercase(),
        frames,
    };

    let audio = match ctx.streams().best(ffmpeg::media::Type::Audio) {
        Some(a) => {
            let actx = ffmpeg::codec::context::Context::from_parameters(a.parameters()).ok();
            let adec = actx.and_then(|c| c.decoder().audio().ok());
            adec.map(|d| AudioStream {
                index: a.index(),
                codec: a.parameters().id().name().to_owned(),
                sample_rate: d.rate(),
                channels: d.channels(),
                sample_format: format!("{:?}", d.format()).to_lowercase(),
            })
        }
        None => None,
    };

    Ok(Probe {
        container: ctx.format().name().to_owned(),
        format_long_name: ctx.format().description().to_owned(),
        duration_secs,
        bit_rate: ctx.bit_rate(),
        size_bytes,
        video,
        audio,
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(vals: [i32; 9]) -> Vec<u8> {
        vals.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn display_matrix_rotations() {
        use super::super::decode::clockwise_rotation;
        let one = 1 << 16;
        assert_eq!(clockwise_rotation(&matrix([one, 0, 0, 0, one, 0, 0, 0, 1 << 30])), Some(0));
        // What FFmpeg stores for a portrait phone recording (ffprobe: "rotation of -90.00
        // degrees"): shown after a 90° clockwise turn.
        assert_eq!(clockwise_rotation(&matrix([0, one, 0, -one, 0, 0, 0, 0, 1 << 30])), Some(90));
        assert_eq!(clockwise_rotation(&matrix([0, -one, 0, one, 0, 0, 0, 0, 1 << 30])), Some(270));
        assert_eq!(clockwise_rotation(&matrix([-one, 0, 0, 0, -one, 0, 0, 0, 1 << 30])), Some(180));
        assert_eq!(clockwise_rotation(&[0u8; 10]), None);
    }

    #[test]
    fn more_streams_than_the_limit_have_their_own_code() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clip =
            super::super::decode::clips::make(dir.path(), "two.mp4", "testsrc2=size=64x48:rate=5", Some("sine=sample_rate=8000"), None, &["-t", "1"]);
        let limits = MediaSettings { max_streams: 1, ..MediaSettings::default() };
        let err = probe(&clip, &limits).expect_err("two streams over a limit of one");
        assert_eq!(err.code, JobErrorCode::TooManyStreams);
        assert!(err.to_string().contains("2 streams"), "{err}");
        assert!(probe(&clip, &MediaSettings { max_streams: 2, ..MediaSettings::default() }).is_ok(), "at the limit");
    }

    #[test]
    fn garbage_is_invalid_media_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.mp4");
        std::fs::write(&path, b"\0\0\0\x20ftypisom this is not really a video at all").expect("write");
        let err = probe(&path, &MediaSettings::default()).expect_err("garbage");
        assert_eq!(err.code, JobErrorCode::InvalidMedia);
    }
}
