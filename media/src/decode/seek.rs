//! Reaching the sampled frames by seeking, when keyframes are dense and nothing needs every
//! frame.

use ffmpeg::codec::threading;
use ffmpeg::frame;
use ffmpeg_next as ffmpeg;

use super::sequential::{drain_video, send_video};
use super::sink::VideoSink;
use super::stream::{VideoInfo, open_video_decoder, read_packet};
use super::targets::Targets;
use super::{Clock, DecodeError, DecodeOptions, DecodeReport};

pub(super) enum SeekError {
    Decode(DecodeError),
    CannotSeek,
}

impl From<DecodeError> for SeekError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

/// Seeks to each sample time and takes the first frame inside its slot (the keyframe when
/// there is one within half a sample interval).
pub(super) fn run_seek(
    ictx: &mut ffmpeg::format::context::Input,
    info: &VideoInfo,
    opts: &DecodeOptions,
    sink: &mut VideoSink,
    clock: &Clock<'_>,
    report: &mut DecodeReport,
) -> Result<(), SeekError> {
    let (times, tolerance) = match &sink.targets {
        Targets::Fixed { times, tolerance } => (times.clone(), *tolerance),
        _ => return Err(SeekError::CannotSeek),
    };
    // Seeking flushes the decoder, which would throw frame threads' work away each time.
    let threads = threading::Config { kind: threading::Type::Slice, count: opts.threads, ..threading::Config::default() };
    let mut dec = open_video_decoder(ictx, info, threads)?;
    let mut vframe = frame::Video::empty();
    // Unknown spacing (a forced seek): seek for every slot that is not a few frames away.
    let kf_interval = report.keyframe_interval_secs.unwrap_or(0.0);
    let mut last_key: Option<f64> = None;
    let mut eof = false;
    let mut i = 0;
    while i < times.len() && !eof {
        clock.check()?;
        let target = times[i];
        let slot_start = target - tolerance;
        // Keep decoding forward when the slot starts within a few frames, or when no newer
        // keyframe is expected before it; seek otherwise.
        let near = sink.last_t.is_some_and(|p| slot_start - p <= 4.0 * info.frame_secs);
        let same_gop = last_key.is_some_and(|k| k + 0.9 * kf_interval > target + tolerance) && sink.last_t.is_some_and(|p| p < target);
        let sought = !(near || same_gop);
        if sought {
            ictx.seek(info.seek_target(target + tolerance), ..info.seek_target(target + tolerance) + 1).map_err(|_| SeekError::CannotSeek)?;
            report.seeks += 1;
            dec.flush();
            sink.reset_timeline();
        }
        // After a seek, frames before the first keyframe cannot be decoded correctly, and that
        // keyframe is the one the seek landed on.
        let mut keyed = !sought;
        let taken = sink.samples.len();
        while sink.samples.len() == taken && sink.target_index() == Some(i) {
            clock.check()?;
            let Some(packet) = read_packet(ictx, report) else {
                eof = true;
                break;
            };
            if packet.stream() != info.index {
                continue;
            }
            report.note_video_packet(&packet, info);
            if packet.is_key() && (!sought || !keyed) {
                keyed = true;
                last_key = packet.pts().map(|ts| info.secs(ts));
            }
            if !keyed {
                continue;
            }
            send_video(&mut dec, &packet, &mut vframe, sink, Some(slot_start), clock, report)?;
        }
        // The sink may have used the frame for a later slot, or skipped slots that no frame
        // fell into.
        i = sink.target_index().unwrap_or(times.len());
    }
    if eof && dec.send_eof().is_ok() {
        drain_video(&mut dec, &mut vframe, sink, None, clock, report)?;
    }
    Ok(())
}
