//! Packed RGB frames and the resizing the models' preprocessing needs.

use super::InferenceError;

/// A borrowed packed RGB24 frame (`width * height * 3` bytes, rows top to bottom).
#[derive(Debug, Clone, Copy)]
pub struct RgbView<'a> {
    pub data: &'a [u8],
    pub width: u32,
    pub height: u32,
}

impl<'a> RgbView<'a> {
    pub fn new(data: &'a [u8], width: u32, height: u32) -> Result<Self, InferenceError> {
        let want = width as usize * height as usize * 3;
        if width == 0 || height == 0 || data.len() != want {
            return Err(InferenceError::Input(format!("an RGB frame of {width}x{height} needs {want} bytes, got {}", data.len())));
        }
        Ok(Self { data, width, height })
    }

    pub fn to_owned(&self) -> RgbImage {
        RgbImage { data: self.data.to_vec(), width: self.width, height: self.height }
    }

    #[inline]
    fn px(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Bilinear sample of the region `(x0, y0, w, h)` resized to `out_w × out_h`, written as
    /// planar floats by `write(channel, index, value)` (value in 0..=255).
    pub fn sample_region(&self, region: (f32, f32, f32, f32), out_w: usize, out_h: usize, mut write: impl FnMut(usize, usize, f32)) {
        let (x0, y0, w, h) = region;
        let sx = w / out_w as f32;
        let sy = h / out_h as f32;
        let max_x = (self.width - 1) as f32;
        let max_y = (self.height - 1) as f32;
        for oy in 0..out_h {
            let fy = (y0 + (oy as f32 + 0.5) * sy - 0.5).clamp(0.0, max_y);
            let y_lo = fy.floor() as u32;
            let y_hi = (y_lo + 1).min(self.height - 1);
            let ty = fy - y_lo as f32;
            for ox in 0..out_w {
                let fx = (x0 + (ox as f32 + 0.5) * sx - 0.5).clamp(0.0, max_x);
                let x_lo = fx.floor() as u32;
                let x_hi = (x_lo + 1).min(self.width - 1);
                let tx = fx - x_lo as f32;
                let (a, b, c, d) = (self.px(x_lo, y_lo), self.px(x_hi, y_lo), self.px(x_lo, y_hi), self.px(x_hi, y_hi));
                for ch in 0..3 {
                    let top = f32::from(a[ch]) * (1.0 - tx) + f32::from(b[ch]) * tx;
                    let bottom = f32::from(c[ch]) * (1.0 - tx) + f32::from(d[ch]) * tx;
                    write(ch, oy * out_w + ox, top * (1.0 - ty) + bottom * ty);
                }
            }
        }
    }
}

/// An owned packed RGB24 frame, for queues that outlive the caller's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

impl RgbImage {
    pub fn view(&self) -> RgbView<'_> {
        RgbView { data: &self.data, width: self.width, height: self.height }
    }
}
