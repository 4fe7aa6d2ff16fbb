//! Pixel arithmetic on tight 8-bit buffers.

/// A tight 8-bit single-channel image.
pub struct Gray {
    pub w: usize,
    pub h: usize,
    pub data: Vec<u8>,
}

impl Gray {
    /// Box-averages `factor`×`factor` blocks (the remainder at the edges is dropped).
    pub fn box_down(&self, factor: usize) -> Gray {
        let (w, h) = ((self.w / factor).max(1), (self.h / factor).max(1));
        let f = factor.min(self.w).min(self.h).max(1);
        let mut data = vec![0u8; w * h];
        let mut row = vec![0u32; w];
        for ty in 0..h {
            row.iter_mut().for_each(|r| *r = 0);
            for y in ty * f..((ty + 1) * f).min(self.h) {
                let line = &self.data[y * self.w..(y + 1) * self.w];
                for (tx, r) in row.iter_mut().enumerate() {
                    let start = tx * f;
                    *r += line[start..(start + f).min(self.w)].iter().map(|&v| u32::from(v)).sum::<u32>();
                }
            }
            let n = (f * f) as u32;
            for (tx, r) in row.iter().enumerate() {
                data[ty * w + tx] = ((r + n / 2) / n) as u8;
            }
        }
        Gray { w, h, data }
    }
}

/// The picture area inside black bars, in pixel coordinates (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl Area {
    /// The same area on an image `factor` times larger, clamped to its size.
    pub fn scaled(&self, factor: usize, w: usize, h: usize) -> Area {
        let x1 = if self.x1 * factor >= w.saturating_sub(factor) { w } else { self.x1 * factor };
        let y1 = if self.y1 * factor >= h.saturating_sub(factor) { h } else { self.y1 * factor };
        Area { x0: (self.x0 * factor).min(x1), y0: (self.y0 * factor).min(y1), x1, y1 }
    }

    /// Left, top, right, bottom as fractions of `dims`, after a clockwise rotation.
    pub fn rotated_fractions(&self, dims: (usize, usize), rotation: i32) -> [f32; 4] {
        let (w, h) = (dims.0.max(1) as f32, dims.1.max(1) as f32);
        let (l, t, r, b) = (self.x0 as f32 / w, self.y0 as f32 / h, self.x1 as f32 / w, self.y1 as f32 / h);
        match rotation {
            90 => [1.0 - b, l, 1.0 - t, r],
            180 => [1.0 - r, 1.0 - b, 1.0 - l, 1.0 - t],
            270 => [t, 1.0 - r, b, 1.0 - l],
            _ => [l, t, r, b],
        }
    }
}

/// A row or column belongs to a bar when it is dark and flat.
fn is_bar(values: impl Iterator<Item = u8>) -> bool {
    let (mut n, mut sum, mut lo, mut hi) = (0u32, 0u32, u8::MAX, 0u8);
    for v in values {
        n += 1;
        sum += u32::from(v);
        lo = lo.min(v);
        hi = hi.max(v);
    }
    n > 0 && sum <= 20 * n && hi.saturating_sub(lo) <= 24
}

/// Finds black bars (letterbox, pillarbox) on a thumbnail. An all-black frame has no bars.
pub fn picture_box(t: &Gray) -> Area {
    let row = |y: usize| t.data[y * t.w..(y + 1) * t.w].iter().copied();
    let col = |x: usize| (0..t.h).map(move |y| t.data[y * t.w + x]);
    let mut y0 = 0;
    while y0 < t.h && is_bar(row(y0)) {
        y0 += 1;
    }
    if y0 == t.h {
        return Area { x0: 0, y0: 0, x1: t.w, y1: t.h };
    }
    let mut y1 = t.h;
    while y1 > y0 + 1 && is_bar(row(y1 - 1)) {
        y1 -= 1;
    }
    let mut x0 = 0;
    while x0 < t.w && is_bar(col(x0)) {
        x0 += 1;
    }
    let mut x1 = t.w;
    while x1 > x0 + 1 && is_bar(col(x1 - 1)) {
        x1 -= 1;
    }
    if x0 >= x1 {
        return Area { x0: 0, y0, x1: t.w, y1 };
    }
    Area { x0, y0, x1, y1 }
}

pub struct Tone {
    pub mean: f32,
    pub std: f32,
    pub black: f32,
    pub white: f32,
}

/// Mean, spread and clipped shares of the area, from every other pixel of every other row
/// (a quarter of the work, statistically the same).
pub fn tone(img: &Gray, a: &Area) -> Tone {
    let mut hist = [0u64; 256];
    for y in (a.y0..a.y1).step_by(2) {
        for &v in img.data[y * img.w + a.x0..y * img.w + a.x1].iter().step_by(2) {
            hist[usize::from(v)] += 1;
        }
    }
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return Tone { mean: 0.0, std: 0.0, black: 0.0, white: 0.0 };
    }
    let nf = n as f64;
    let mean = hist.iter().enumerate().map(|(v, c)| v as f64 * *c as f64).sum::<f64>() / nf;
    let var = hist.iter().enumerate().map(|(v, c)| (v as f64 - mean).powi(2) * *c as f64).sum::<f64>() / nf;
    let black = hist[..=16].iter().sum::<u64>() as f64 / nf;
    let white = hist[245..].iter().sum::<u64>() as f64 / nf;
    Tone { mean: mean as f32, std: var.sqrt() as f32, black: black as f32, white: white as f32 }
}

/// Variance of the 4-neighbour Laplacian over the area's interior, on every other row.
pub fn laplacian_variance(img: &Gray, a: &Area) -> f32 {
    if a.x1 < a.x0 + 3 || a.y1 < a.y0 + 3 {
        return 0.0;
    }
    let (mut sum, mut sq, mut n) = (0i64, 0i64, 0i64);
    for y in (a.y0 + 1..a.y1 - 1).step_by(2) {
        let up = &img.data[(y - 1) * img.w + a.x0..(y - 1) * img.w + a.x1];
        let mid = &img.data[y * img.w + a.x0..y * img.w + a.x1];
        let down = &img.data[(y + 1) * img.w + a.x0..(y + 1) * img.w + a.x1];
        let (mut rs, mut rq) = (0i64, 0i64);
        for x in 1..mid.len() - 1 {
            let l = i32::from(up[x]) + i32::from(down[x]) + i32::from(mid[x - 1]) + i32::from(mid[x + 1]) - 4 * i32::from(mid[x]);
            rs += i64::from(l);
            rq += i64::from(l * l);
        }
        sum += rs;
        sq += rq;
        n += mid.len() as i64 - 2;
    }
    let mean = sum as f64 / n as f64;
    (sq as f64 / n as f64 - mean * mean).max(0.0) as f32
}

/// Immerkær's noise estimate (σ = √(π/2) · mean|I ∗ N| / 6 with N the 3×3 mask
/// [1 −2 1; −2 4 −2; 1 −2 1]) over the flattest fifth of 8×8 blocks, leaving out blocks
/// near black or white where clipping hides noise. The mask is only applied to the blocks
/// kept, so the cost is one pass of block sums.
pub fn noise_sigma(img: &Gray, a: &Area) -> f32 {
    const B: usize = 8;
    // (variance × 64², x, y) of each block whose mean is not clipped.
    let mut blocks: Vec<(u64, usize, usize)> = Vec::new();
    let mut by = a.y0 + 1;
    while by + B < a.y1 {
        let mut bx = a.x0 + 1;
        while bx + B < a.x1 {
            let (mut s, mut ss) = (0u64, 0u64);
            for y in by..by + B {
                for &v in &img.data[y * img.w + bx..y * img.w + bx + B] {
                    let v = u64::from(v);
                    s += v;
                    ss += v * v;
                }
            }
            let n = (B * B) as u64;
            if (12 * n..=243 * n).contains(&s) {
                blocks.push((ss * n - s * s, bx, by));
            }
            bx += B;
        }
        by += B;
    }
    if blocks.is_empty() {
        return 0.0;
    }
    let keep = (blocks.len() / 5).max(1);
    blocks.select_nth_unstable_by_key(keep - 1, |b| b.0);
    let mut total = 0i64;
    for &(_, bx, by) in &blocks[..keep] {
        for y in by..by + B {
            let (up, mid, down) = (&img.data[(y - 1) * img.w..], &img.data[y * img.w..], &img.data[(y + 1) * img.w..]);
            for x in bx..bx + B {
                let p = |row: &[u8], i: usize| i32::from(row[i]);
                let m = p(up, x - 1) + p(up, x + 1) + p(down, x - 1) + p(down, x + 1) - 2 * (p(up, x) + p(down, x) + p(mid, x - 1) + p(mid, x + 1))
                    + 4 * p(mid, x);
                total += i64::from(m.abs());
            }
        }
    }
    let mean_mask = total as f64 / (keep * B * B) as f64;
    ((std::f64::consts::PI / 2.0).sqrt() * mean_mask / 6.0) as f32
}

/// Mean absolute difference of two same-sized images.
pub fn mean_abs_diff(a: &Gray, b: &Gray) -> Option<f32> {
    if a.w != b.w || a.h != b.h || a.data.is_empty() {
        return None;
    }
    let s: u64 = a.data.iter().zip(&b.data).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    Some(s as f32 / a.data.len() as f32)
}

/// Best shift of `b` against `a` by projection profiles, as fractions of width and height;
/// `None` when the images differ in size or have too little texture to tell.
pub fn global_shift(a: &Gray, b: &Gray) -> Option<[f32; 2]> {
    if a.w != b.w || a.h != b.h || a.w < 8 || a.h < 8 {
        return None;
    }
    let cols = |g: &Gray| (0..g.w).map(|x| (0..g.h).map(|y| f64::from(g.data[y * g.w + x])).sum::<f64>() / g.h as f64).collect::<Vec<_>>();
    let rows = |g: &Gray| (0..g.h).map(|y| g.data[y * g.w..(y + 1) * g.w].iter().map(|&v| f64::from(v)).sum::<f64>() / g.w as f64).collect::<Vec<_>>();
    let dx = best_offset(&cols(a), &cols(b))?;
    let dy = best_offset(&rows(a), &rows(b))?;
    Some([dx as f32 / a.w as f32, dy as f32 / a.h as f32])
}

/// The offset `s` minimising mean |a[i] − b[i + s]| (profiles normalised to their means).
fn best_offset(a: &[f64], b: &[f64]) -> Option<isize> {
    let n = a.len();
    let spread = |p: &[f64]| {
        let m = p.iter().sum::<f64>() / p.len() as f64;
        (p.iter().map(|v| (v - m).powi(2)).sum::<f64>() / p.len() as f64).sqrt()
    };
    if spread(a) < 1.0 || spread(b) < 1.0 {
        return None;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n as f64, b.iter().sum::<f64>() / n as f64);
    let max = (n / 6).max(2) as isize;
    let mut best = (f64::INFINITY, 0isize);
    for s in -max..=max {
        let (mut sum, mut count) = (0.0, 0usize);
        for (i, av) in a.iter().enumerate() {
            let j = i as isize + s;
            if j < 0 || j >= n as isize {
                continue;
            }
            sum += ((av - ma) - (b[j as usize] - mb)).abs();
            count += 1;
        }
        if count >= n / 2 {
            let cost = sum / count as f64;
            if cost < best.0 - 1e-9 || (cost - best.0).abs() <= 1e-9 && s.abs() < best.1.abs() {
                best = (cost, s);
            }
        }
    }
    best.0.is_finite().then_some(best.1)
}

/// Hasler and Süsstrunk's colourfulness metric M = σ_rgyb + 0.3 μ_rgyb on RGB24.
pub fn colourfulness(rgb: &[u8]) -> f32 {
    let n = rgb.len() / 3;
    if n == 0 {
        return 0.0;
    }
    let (mut s_rg, mut s_yb, mut q_rg, mut q_yb) = (0f64, 0f64, 0f64, 0f64);
    for p in rgb.chunks_exact(3) {
        let (r, g, b) = (f64::from(p[0]), f64::from(p[1]), f64::from(p[2]));
        let rg = r - g;
        let yb = 0.5 * (r + g) - b;
        s_rg += rg;
        s_yb += yb;
        q_rg += rg * rg;
        q_yb += yb * yb;
    }
    let nf = n as f64;
    let (m_rg, m_yb) = (s_rg / nf, s_yb / nf);
    let (v_rg, v_yb) = ((q_rg / nf - m_rg * m_rg).max(0.0), (q_yb / nf - m_yb * m_yb).max(0.0));
    ((v_rg + v_yb).sqrt() + 0.3 * (m_rg * m_rg + m_yb * m_yb).sqrt()) as f32
}

/// The part of an RGB24 image `w` pixels wide inside `a`.
pub fn crop_area_rgb(rgb: &[u8], w: usize, a: &Area) -> Vec<u8> {
    let mut out = Vec::with_capacity((a.x1 - a.x0) * (a.y1 - a.y0) * 3);
    for y in a.y0..a.y1 {
        out.extend_from_slice(&rgb[(y * w + a.x0) * 3..(y * w + a.x1) * 3]);
    }
    out
}

/// The central `cw`×`ch` part of an RGB24 image.
pub fn crop_rgb(rgb: &[u8], w: usize, h: usize, cw: usize, ch: usize) -> Vec<u8> {
    let (cw, ch) = (cw.min(w), ch.min(h));
    let (x0, y0) = ((w - cw) / 2, (h - ch) / 2);
    let mut out = Vec::with_capacity(cw * ch * 3);
    for y in y0..y0 + ch {
        out.extend_from_slice(&rgb[(y * w + x0) * 3..(y * w + x0 + cw) * 3]);
    }
    out
}

/// Rotates an RGB24 image clockwise by 90, 180 or 270 degrees; returns it and its size.
pub fn rotate_rgb(rgb: &[u8], w: usize, h: usize, rotation: i32) -> (Vec<u8>, usize, usize) {
    let mut out = vec![0u8; rgb.len()];
    let (ow, oh) = match rotation {
        90 | 270 => (h, w),
        180 => (w, h),
        _ => return (rgb.to_vec(), w, h),
    };
    for y in 0..h {
        for x in 0..w {
            let (ox, oy) = match rotation {
                90 => (h - 1 - y, x),
                180 => (w - 1 - x, h - 1 - y),
                _ => (y, w - 1 - x),
            };
            let (s, d) = ((y * w + x) * 3, (oy * ow + ox) * 3);
            out[d..d + 3].copy_from_slice(&rgb[s..s + 3]);
        }
    }
    (out, ow, oh)
}
