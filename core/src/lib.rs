//! reelq's vocabulary, shared by every crate: job states, lanes, analyses, typed options and the
//! stable error codes clients see.
//!
//! It links no IO crate (no database, broker, storage, FFmpeg or ONNX Runtime), so the media and
//! analysis crates can use it without pulling in the services' infrastructure.

pub mod catalogue;
pub mod domain;
pub mod options;
pub mod views;
