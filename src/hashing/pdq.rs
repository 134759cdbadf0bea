//! PDQ, Meta's perceptual image hash (256 bits plus a 0–100 quality), computed the way the
//! reference implementation does, operation for operation, so that the same pixels give the
//! same bits.
//!
//! Steps (facts from the reference, `pdq/cpp` in facebook/ThreatExchange): luminance; two
//! passes of a Jarosz box filter along rows then columns, with windows sized so 64 samples
//! cover the image; decimation to 64x64 by sampling window centres; a quality score from the
//! gradients of that 64x64 image; the 16x16 low-frequency block of a 64-point DCT (the DC row
//! and column left out); one bit per coefficient: above the median or not.
//!
//! Every intermediate is `f32`, summed in the reference's order (Rust never fuses multiply and
//! add, as the reference's default x86-64 build does not). Luminance is taken in `f64` and
//! rounded to `f32`, as the `pdqhash` Python bindings (the test oracle) compute it; the C++
//! command-line tool sums in `f32`, which can differ in the last bit of a luminance value.

use std::f64::consts::PI;
use std::sync::OnceLock;

use image::RgbImage;

/// Images with a side shorter than this hash to all zeros with quality 0, as in the reference.
const MIN_HASHABLE_DIM: usize = 5;
const JAROSZ_PASSES: usize = 2;

/// A PDQ hash and its quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pdq {
    /// Bit `k` of the hash is bit `k % 16` of word `k / 16`, as in the reference's `Hash256`.
    pub words: [u16; 16],
    /// 0 (flat, unusable) to 100.
    pub quality: u8,
}

impl Pdq {
    /// 64 hex digits, word 15 first: the reference's text form.
    pub fn hex(&self) -> String {
        self.words.iter().rev().map(|w| format!("{w:04x}")).collect()
    }

    /// Parses the reference's text form.
    pub fn parse_hex(s: &str) -> Option<[u16; 16]> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut words = [0u16; 16];
        for (i, chunk) in s.as_bytes().chunks(4).enumerate() {
            let text = std::str::from_utf8(chunk).ok()?;
            words[15 - i] = u16::from_str_radix(text, 16).ok()?;
        }
        Some(words)
    }

    /// The hash as four 64-bit lanes, for fast Hamming distances.
    pub fn lanes(words: &[u16; 16]) -> [u64; 4] {
        let mut lanes = [0u64; 4];
        for (i, w) in words.iter().enumerate() {
            lanes[i / 4] |= u64::from(*w) << ((i % 4) * 16);
        }
        lanes
    }
}

/// Number of differing bits.
#[inline(always)]
pub fn hamming(a: &[u64; 4], b: &[u64; 4]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

/// Every hash within `max` bits of `query`: its index and distance, in order. A linear scan:
/// on CPUs with AVX2 the same loop is compiled for AVX2 and POPCNT (chosen at run time, since
/// release builds target baseline x86-64), which `dfserve hashes bench` measured at about
/// twice the speed of the baseline build.
pub fn within(query: &[u64; 4], hashes: &[[u64; 4]], max: u32) -> Vec<(usize, u32)> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU has just been checked to support both features.
        return unsafe { within_avx2(query, hashes, max) };
    }
    scan(query, hashes, max)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn within_avx2(query: &[u64; 4], hashes: &[[u64; 4]], max: u32) -> Vec<(usize, u32)> {
    scan(query, hashes, max)
}

#[inline(always)]
fn scan(query: &[u64; 4], hashes: &[[u64; 4]], max: u32) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    for (i, h) in hashes.iter().enumerate() {
        let d = hamming(query, h);
        if d <= max {
            out.push((i, d));
        }
    }
    out
}

/// The PDQ hash of an RGB image (already upright: EXIF orientation applied).
pub fn pdq(img: &RgbImage) -> Pdq {
    match dct(img) {
        Some((dct, quality)) => from_dct(&dct, quality),
        None => Pdq { words: [0; 16], quality: 0 },
    }
}

/// What the eight dihedral variants of [`pdq_dihedral`] are, in its order (the reference's):
/// variant `k` is the hash of the image turned or flipped so.
pub const DIHEDRAL: [&str; 8] = [
    "original",
    "rotate_90",
    "rotate_180",
    "rotate_270",
    "flip_vertical",
    "flip_horizontal",
    "transpose",
    "transverse",
];

/// The PDQ hashes of an image's eight rotations and mirror images, from one DCT as the
/// reference's dihedral hashing does: turning or mirroring the 64×64 block transposes the
/// DCT's coefficients or changes the signs of its odd-frequency rows or columns, since the
/// DCT-II basis `cos(π(2n+1)k/128)` is even in `n ↦ 63 − n` for even `k` and odd for odd `k`.
/// (The variants are close to, not equal to, hashing each turned image anew, whose
/// downsampling differs.) Equal bit for bit to the `pdqhash` bindings (tests/python/test_pdq.py).
pub fn pdq_dihedral(img: &RgbImage) -> [Pdq; 8] {
    let Some((d, quality)) = dct(img) else { return [Pdq { words: [0; 16], quality: 0 }; 8] };
    let sign = |flip: bool, v: f32| if flip { -v } else { v };
    // Row and column `i` of PDQ's DCT are frequency `i + 1` (it leaves out the DC term).
    let odd = |i: usize| i.is_multiple_of(2);
    let variant = |f: &dyn Fn(usize, usize) -> f32| {
        let mut m = [[0f32; 16]; 16];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = f(i, j);
            }
        }
        from_dct(&m, quality)
    };
    [
        variant(&|i, j| d[i][j]),
        variant(&|i, j| sign(odd(i), d[j][i])),
        variant(&|i, j| sign(odd(i) != odd(j), d[i][j])),
        variant(&|i, j| sign(odd(j), d[j][i])),
        variant(&|i, j| sign(odd(i), d[i][j])),
        variant(&|i, j| sign(odd(j), d[i][j])),
        variant(&|i, j| d[j][i]),
        variant(&|i, j| sign(odd(i) != odd(j), d[j][i])),
    ]
}

/// The bits of a 16×16 DCT: above its median or not.
fn from_dct(dct: &[[f32; 16]; 16], quality: u8) -> Pdq {
    let median = torben(dct.as_flattened());
    let mut words = [0u16; 16];
    for (k, v) in dct.as_flattened().iter().enumerate() {
        if *v > median {
            words[k >> 4] |= 1 << (k & 15);
        }
    }
    Pdq { words, quality }
}

/// The low 16×16 DCT coefficients of the image's 64×64 luma block, and the quality; `None`
/// for images too small to hash.
fn dct(img: &RgbImage) -> Option<([[f32; 16]; 16], u8)> {
    let (cols, rows) = (img.width() as usize, img.height() as usize);
    if rows < MIN_HASHABLE_DIM || cols < MIN_HASHABLE_DIM {
        return None;
    }
    let mut luma: Vec<f32> = img
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0;
            (f64::from(r) * 0.299 + f64::from(g) * 0.587 + f64::from(b) * 0.114) as f32
        })
        .collect();
    let mut block = [[0f32; 64]; 64];
    if rows == 64 && cols == 64 {
        for (i, row) in block.iter_mut().enumerate() {
            row.copy_from_slice(&luma[i * 64..(i + 1) * 64]);
        }
    } else {
        let mut scratch = vec![0f32; luma.len()];
        let along_rows = window_size(cols, 64);
        let along_cols = window_size(rows, 64);
        for _ in 0..JAROSZ_PASSES {
            for i in 0..rows {
                box_1d(&luma[i * cols..], &mut scratch[i * cols..], cols, 1, along_rows);
            }
            for j in 0..cols {
                box_1d(&scratch[j..], &mut luma[j..], rows, cols, along_cols);
            }
        }
        for (oi, row) in block.iter_mut().enumerate() {
            let ii = ((oi as f64 + 0.5) * rows as f64 / 64.0) as usize;
            for (oj, out) in row.iter_mut().enumerate() {
                let ij = ((oj as f64 + 0.5) * cols as f64 / 64.0) as usize;
                *out = luma[ii * cols + ij];
            }
        }
    }
    Some((dct_64_to_16(&block), quality(&block)))
}

fn window_size(old: usize, new: usize) -> usize {
    old.div_ceil(2 * new)
}

/// A box filter of `window` samples along one line (`len` samples, `stride` apart): each
/// output is the mean of the window centred on it, clipped at the ends.
fn box_1d(input: &[f32], output: &mut [f32], len: usize, stride: usize, window: usize) {
    let half = (window + 2) / 2; // 7 -> 4, 8 -> 5
    let phase1 = half - 1;
    let phase2 = window + 1 - half;
    let phase3 = len.saturating_sub(window);
    let phase4 = half - 1;
    let (mut li, mut ri, mut oi) = (0usize, 0usize, 0usize);
    let mut sum = 0f32;
    let mut count = 0i32;
    for _ in 0..phase1 {
        sum += input[ri];
        count += 1;
        ri += stride;
    }
    for _ in 0..phase2 {
        sum += input[ri];
        count += 1;
        output[oi] = sum / count as f32;
        ri += stride;
        oi += stride;
    }
    for _ in 0..phase3 {
        sum += input[ri];
        sum -= input[li];
        output[oi] = sum / count as f32;
        li += stride;
        ri += stride;
        oi += stride;
    }
    for _ in 0..phase4 {
        sum -= input[li];
        count -= 1;
        output[oi] = sum / count as f32;
        li += stride;
        oi += stride;
    }
}

/// The reference's quality: the sum of absolute vertical and horizontal steps of the 64x64
/// image, each scaled to percent of 255 and truncated, divided by 90, at most 100.
fn quality(block: &[[f32; 64]; 64]) -> u8 {
    let step = |u: f32, v: f32| (((u - v) * 100.0) / 255.0) as i32;
    let mut sum: i32 = 0;
    for (upper, lower) in block.iter().zip(&block[1..]) {
        for (u, v) in upper.iter().zip(lower) {
            sum += step(*u, *v).abs();
        }
    }
    for row in block {
        for j in 0..63 {
            sum += step(row[j], row[j + 1]).abs();
        }
    }
    (sum / 90).min(100) as u8
}

/// Rows 1..=16 of the 64-point DCT-II matrix, as the reference builds it.
fn dct_matrix() -> &'static [[f32; 64]; 16] {
    static MATRIX: OnceLock<[[f32; 64]; 16]> = OnceLock::new();
    MATRIX.get_or_init(|| {
        let scale = (2.0f64 / 64.0).sqrt() as f32;
        let mut d = [[0f32; 64]; 16];
        for (i, row) in d.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (f64::from(scale) * ((PI / 2.0 / 64.0) * (i + 1) as f64 * (2 * j + 1) as f64).cos()) as f32;
            }
        }
        d
    })
}

/// `D A D^T` for the 16 DCT rows `D`, summing in the reference's order.
fn dct_64_to_16(a: &[[f32; 64]; 64]) -> [[f32; 16]; 16] {
    let d = dct_matrix();
    let mut t = [[0f32; 64]; 16];
    for i in 0..16 {
        for j in 0..64 {
            let mut sum = 0f32;
            for k in 0..64 {
                sum += d[i][k] * a[k][j];
            }
            t[i][j] = sum;
        }
    }
    let mut b = [[0f32; 16]; 16];
    for i in 0..16 {
        for j in 0..16 {
            let mut sum = 0f32;
            for k in 0..64 {
                sum += t[i][k] * d[j][k];
            }
            b[i][j] = sum;
        }
    }
    b
}

/// Torben's median (the reference's `torben`): no sorting, no allocation.
fn torben(m: &[f32]) -> f32 {
    let n = m.len();
    let (mut min, mut max) = (m[0], m[0]);
    for v in &m[1..] {
        if *v < min {
            min = *v;
        }
        if *v > max {
            max = *v;
        }
    }
    let half = n.div_ceil(2);
    loop {
        let guess = (min + max) / 2.0;
        let (mut less, mut greater, mut equal) = (0usize, 0usize, 0usize);
        let (mut max_lt, mut min_gt) = (min, max);
        for v in m {
            if *v < guess {
                less += 1;
                if *v > max_lt {
                    max_lt = *v;
                }
            } else if *v > guess {
                greater += 1;
                if *v < min_gt {
                    min_gt = *v;
                }
            } else {
                equal += 1;
            }
        }
        if less <= half && greater <= half {
            return if less >= half {
                max_lt
            } else if less + equal >= half {
                guess
            } else {
                min_gt
            };
        } else if less > greater {
            max = max_lt;
        } else {
            min = min_gt;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_distances_count_bits() {
        let img = RgbImage::from_fn(100, 80, |x, y| image::Rgb([(x * 2) as u8, (y * 3) as u8, ((x * y) % 251) as u8]));
        let h = pdq(&img);
        assert_eq!(Pdq::parse_hex(&h.hex()), Some(h.words));
        let a = Pdq::lanes(&h.words);
        let mut flipped = h.words;
        flipped[3] ^= 0b1011;
        assert_eq!(hamming(&a, &Pdq::lanes(&flipped)), 3);
        // About half the bits are set: the median splits the coefficients.
        let ones: u32 = h.words.iter().map(|w| w.count_ones()).sum();
        assert!((120..=136).contains(&ones), "{ones}");
    }

    #[test]
    fn tiny_and_flat_images() {
        let tiny = RgbImage::new(4, 100);
        assert_eq!(pdq(&tiny), Pdq { words: [0; 16], quality: 0 });
        let flat = RgbImage::from_pixel(200, 200, image::Rgb([90, 90, 90]));
        assert_eq!(pdq(&flat).quality, 0);
    }
}
