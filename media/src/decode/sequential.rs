//! Decoding every packet in order, video and audio together.

use std::collections::VecDeque;

use ffmpeg::codec::threading;
use ffmpeg::{Packet, codec, frame};
use ffmpeg_next as ffmpeg;

use super::audio::AudioPipe;
use super::sink::VideoSink;
use super::stream::{VideoInfo, is_again, open_video_decoder, read_packet};
use super::{Clock, DecodeError, DecodeOptions, DecodeReport};

/// Which video packets a sequential pass decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Frames {
    /// Every frame (the codec may still drop non-reference frames far from a sample time when
    /// nothing needs every frame).
    All,
    /// Keyframes only: the other packets are read past without decoding, and each sample takes
    /// the first keyframe in its slot. Should a slot pass without one (the spacing the first
    /// packets showed does not hold further on), the pass seeks back to the keyframe before
    /// that slot and decodes every frame from there, as [`Frames::All`].
    Keyframes,
}

/// Keyframe times remembered for [`Frames::Keyframes`]: more than frame threads hold back.
const KEYS_REMEMBERED: usize = 64;

/// Decodes every packet from the current position: video into `video`, audio into `audio`.
/// Returns whether it read to the end (it stops early once every sample is taken and nothing
/// else is wanted).
#[allow(clippy::too_many_arguments)]
pub(super) fn run_sequential(
    ictx: &mut ffmpeg::format::context::Input,
    info: &VideoInfo,
    opts: &DecodeOptions,
    mut frames: Frames,
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
    // After leaving keyframes-only decoding without a seek, non-key packets lack their
    // references until the next keyframe.
    let mut await_key = false;
    // After a seek back, packets up to this file position were already counted and their audio
    // already heard.
    let (mut furthest, mut replay_until) = (-1isize, -1isize);
    // Times of the last keyframes sent: frame threads hand their frames back a few packets
    // later, so a slot whose keyframe was sent is not missed although no frame filled it yet.
    let mut keys_sent: VecDeque<f64> = VecDeque::with_capacity(KEYS_REMEMBERED);
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
        let replayed = packet.position() >= 0 && packet.position() <= replay_until;
        furthest = furthest.max(packet.position());
        if stream == info.index {
            if !replayed {
                report.note_video_packet(&packet, info);
            }
            let (Some(dec), Some(sink)) = (vdec.as_mut(), video.as_deref_mut()) else { continue };
            if frames == Frames::Keyframes {
                if sink.done() {
                    if audio.is_none() {
                        return Ok(false);
                    }
                    continue;
                }
                let t = packet.pts().map(|ts| info.secs(ts));
                if packet.is_key() {
                    if keys_sent.len() == KEYS_REMEMBERED {
                        keys_sent.pop_front();
                    }
                    keys_sent.extend(t);
                    let from = sink.slot().map(|(start, _)| start);
                    send_video(dec, &packet, &mut vframe, sink, from, clock, report)?;
                    continue;
                }
                if let (Some(t), Some((start, end))) = (t, sink.slot())
                    && t > end
                    && !keys_sent.iter().any(|k| (start..=end).contains(k))
                {
                    // A slot went by without a keyframe: decode everything from the keyframe
                    // before it.
                    frames = Frames::All;
                    let target = info.seek_target(start);
                    if ictx.seek(target, ..target + 1).is_ok() {
                        report.seeks += 1;
                        dec.flush();
                        sink.reset_timeline();
                        pending.clear();
                        replay_until = furthest;
                    } else {
                        await_key = true;
                    }
                }
                continue;
            }
            if await_key {
                if !packet.is_key() {
                    continue;
                }
                await_key = false;
            }
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
            && !replayed
        {
            pipe.send(&packet, report);
        }
    }
    if let (Some(dec), Some(sink)) = (vdec.as_mut(), video)
        && dec.send_eof().is_ok()
    {
        // Frame threads hand frames back late: the last keyframes still go to their slots.
        let from = if frames == Frames::Keyframes { sink.slot().map(|(start, _)| start) } else { None };
        drain_video(dec, &mut vframe, sink, from, clock, report)?;
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
