//! Decoding every packet in order, video and audio together.

use std::collections::VecDeque;

use ffmpeg::codec::threading;
use ffmpeg::{Packet, codec, frame};
use ffmpeg_next as ffmpeg;

use super::audio::AudioPipe;
use super::sink::VideoSink;
use super::stream::{VideoInfo, is_again, open_video_decoder, read_packet};
use super::{Clock, DecodeError, DecodeOptions, DecodeReport};

/// Decodes every packet from the current position: video into `video`, audio into `audio`.
/// Returns whether it read to the end (it stops early once every sample is taken and nothing
/// else is wanted).
#[allow(clippy::too_many_arguments)]
pub(super) fn run_sequential(
    ictx: &mut ffmpeg::format::context::Input,
    info: &VideoInfo,
    opts: &DecodeOptions,
    mut video: Option<&mut VideoSink>,
    mut audio: Option<&mut AudioPipe>,
    mut pending: VecDeque<Packet>,
    clock: &Clock<'_>,
    report: &mut DecodeReport,
) -> Result<bool, DecodeError> {
    let mut vdec = match video {
        Some(_) => {
            let threads = threading::Config { kind: threading::Type::Frame, count: opts.threads, ..threading::Config::default() };
            Some(open_video_decoder(ictx, info, threads)?)
        }
        None => None,
    };
    // The codec may drop frames no other frame refers to while the next sample time is still
    // far ahead, but only when nothing needs every frame. With statistics on, which frames were
    // dropped would depend on the sample times, and so would the statistics frames.
    let may_skip = !opts.dense();
    let mut skipping = false;
    if !opts.dense()
        && opts.skip_deblocking
        && let Some(dec) = vdec.as_mut()
    {
        dec.skip_loop_filter(ffmpeg::Discard::All);
    }
    let mut vframe = frame::Video::empty();
    loop {
        clock.check()?;
        let Some(packet) = pending.pop_front().or_else(|| read_packet(ictx, report)) else { break };
        let stream = packet.stream();
        if stream == info.index {
            report.note_video_packet(&packet, info);
            let (Some(dec), Some(sink)) = (vdec.as_mut(), video.as_deref_mut()) else { continue };
            if may_skip {
                let t = packet.pts().map(|ts| info.secs(ts));
                let far = match (t, sink.next_target()) {
                    // Three frames of margin: a skipped frame right before the sample time
                    // only moves the sample a frame or two later.
                    (Some(t), Some(next)) => next - t > 3.0 * info.frame_secs,
                    (_, None) => true,
                    (None, Some(_)) => false,
                };
                if far != skipping {
                    skipping = far;
                    dec.skip_frame(if far { ffmpeg::Discard::NonReference } else { ffmpeg::Discard::Default });
                }
                if sink.done() {
                    if audio.is_none() {
                        return Ok(false);
                    }
                    // Only the audio is still wanted: stop decoding video.
                    continue;
                }
            }
            send_video(dec, &packet, &mut vframe, sink, None, clock, report)?;
        } else if let Some(pipe) = audio.as_deref_mut()
            && stream == pipe.index()
        {
            pipe.send(&packet, report);
        }
    }
    if let (Some(dec), Some(sink)) = (vdec.as_mut(), video)
        && dec.send_eof().is_ok()
    {
        drain_video(dec, &mut vframe, sink, None, clock, report)?;
    }
    if let Some(pipe) = audio {
        pipe.finish_stream(report);
    }
    Ok(true)
}

pub(super) fn send_video(
    dec: &mut codec::decoder::Video,
    packet: &Packet,
    vframe: &mut frame::Video,
    sink: &mut VideoSink,
    accept_from: Option<f64>,
    clock: &Clock<'_>,
    report: &mut DecodeReport,
) -> Result<(), DecodeError> {
    match dec.send_packet(packet) {
        Ok(()) => {}
        Err(e) if is_again(&e) => {
            drain_video(dec, vframe, sink, accept_from, clock, report)?;
            if dec.send_packet(packet).is_err() {
                report.decode_errors += 1;
            }
        }
        Err(_) => report.decode_errors += 1,
    }
    drain_video(dec, vframe, sink, accept_from, clock, report)
}

pub(super) fn drain_video(
    dec: &mut codec::decoder::Video,
    vframe: &mut frame::Video,
    sink: &mut VideoSink,
    accept_from: Option<f64>,
    clock: &Clock<'_>,
    report: &mut DecodeReport,
) -> Result<(), DecodeError> {
    loop {
        match dec.receive_frame(vframe) {
            Ok(()) => {
                clock.check()?;
                sink.on_frame(vframe, accept_from, report)?;
            }
            Err(ffmpeg::Error::Eof) => return Ok(()),
            Err(e) if is_again(&e) => return Ok(()),
            Err(_) => {
                report.decode_errors += 1;
                return Ok(());
            }
        }
    }
}
