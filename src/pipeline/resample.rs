//! Pillow's resampling, reproduced exactly for 8-bit RGB: separable convolution with Pillow's
//! coefficients, rounded to its 22-bit fixed point, horizontal pass then vertical pass, each
//! clipped to a byte.
//!
//! Why not `fast_image_resize` here: its Catmull-Rom filter is the same curve as Pillow's
//! `BICUBIC`, but its fixed-point arithmetic differs, and on CLIP's 224-px crops 28% of the bytes
//! came out one to four levels away from Pillow's. CLIP (and every head fitted on its
//! embeddings in Python) was fed Pillow's bytes, so the encoder's input must be those bytes:
//! `tests/python/test_probe.py` holds dfserve's tensor to Pillow's within 1e-4.

use image::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// A resampling filter as Pillow defines it: the kernel and its support (radius) at scale 1.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    kernel: fn(f64) -> f64,
    support: f64,
}

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow's `Image.BICUBIC`.
pub const BICUBIC: Filter = Filter { kernel: bicubic, support: 2.0 };

/// One output pixel's taps: the first input index and the fixed-point weights.
struct Taps {
    first: Vec<usize>,
    count: Vec<usize>,
    weights: Vec<i32>,
    ksize: usize,
}

/// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for output pixels of the
/// source span `[in0, in1)` of an axis `in_size` long.
fn coefficients(in_size: usize, in0: f64, in1: f64, out_size: usize, filter: Filter) -> Taps {
    let scale = (in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut taps = Taps { first: Vec::new(), count: Vec::new(), weights: vec![0; out_size * ksize], ksize };
    let ss = 1.0 / filterscale;
    let mut k = vec![0.0f64; ksize];
    for xx in 0..out_size {
        let center = in0 + (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero; negatives are clamped to 0 next anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = (((center + support + 0.5) as i64).min(in_size as i64).max(xmin as i64) as usize) - xmin;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = (filter.kernel)((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(xmax) {
            let w = if ww != 0.0 { kx / ww } else { *kx };
            let fixed = w * (1u64 << PRECISION_BITS) as f64;
            taps.weights[xx * ksize + x] = if w < 0.0 { (-0.5 + fixed) as i32 } else { (0.5 + fixed) as i32 };
        }
        taps.first.push(xmin);
        taps.count.push(xmax);
    }
    taps
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Resizes the source box `(x0, y0, x1, y1)` (fractional pixels, inside `img`) to
/// `width` x `height` RGB bytes, as Pillow's `img.resize((width, height), filter, box)` does.
pub fn resize_box(img: &RgbImage, bx: (f64, f64, f64, f64), width: u32, height: u32, filter: Filter) -> Vec<u8> {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let src = img.as_raw();
    let need_h = out_w != in_w || bx.0 != 0.0 || bx.2 != out_w as f64;
    let need_v = out_h != in_h || bx.1 != 0.0 || bx.3 != out_h as f64;
    let horiz = coefficients(in_w, bx.0, bx.2, out_w, filter);
    let vert = coefficients(in_h, bx.1, bx.3, out_h, filter);

    // Horizontal pass over only the rows the vertical pass reads (as Pillow does).
    let (row_first, row_last) = (vert.first[0], vert.first[out_h - 1] + vert.count[out_h - 1]);
    let (tmp, tmp_w, row0): (std::borrow::Cow<[u8]>, usize, usize) = if need_h {
        let rows = row_last - row_first;
        let mut tmp = vec![0u8; rows * out_w * 3];
        for y in 0..rows {
            let line = &src[(y + row_first) * in_w * 3..(y + row_first + 1) * in_w * 3];
            let out = &mut tmp[y * out_w * 3..(y + 1) * out_w * 3];
            for xx in 0..out_w {
                let (first, n) = (horiz.first[xx], horiz.count[xx]);
                let w = &horiz.weights[xx * horiz.ksize..xx * horiz.ksize + n];
                let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
                for (i, wi) in w.iter().enumerate() {
                    let p = &line[(first + i) * 3..(first + i) * 3 + 3];
                    for c in 0..3 {
                        ss[c] += p[c] as i64 * *wi as i64;
                    }
                }
                for c in 0..3 {
                    out[xx * 3 + c] = clip8(ss[c]);
                }
            }
        }
        (tmp.into(), out_w, row_first)
    } else {
        (src.as_slice().into(), in_w, 0)
    };
    if !need_v {
        // Rows [row_first, row_last) are exactly the output's rows here.
        return tmp[..out_h * tmp_w * 3].to_vec();
    }
    let mut out = vec![0u8; out_w * out_h * 3];
    for yy in 0..out_h {
        let (first, n) = (vert.first[yy] - row0, vert.count[yy]);
        let w = &vert.weights[yy * vert.ksize..yy * vert.ksize + n];
        for xx in 0..out_w {
            let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
            for (i, wi) in w.iter().enumerate() {
                let at = ((first + i) * tmp_w + xx) * 3;
                for c in 0..3 {
                    ss[c] += tmp[at + c] as i64 * *wi as i64;
                }
            }
            for c in 0..3 {
                out[(yy * out_w + xx) * 3 + c] = clip8(ss[c]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn same_size_whole_box_is_a_copy() {
        let img = RgbImage::from_fn(5, 3, |x, y| Rgb([x as u8 * 40, y as u8 * 80, 7]));
        assert_eq!(resize_box(&img, (0.0, 0.0, 5.0, 3.0), 5, 3, BICUBIC), img.as_raw().clone());
    }

    #[test]
    fn flat_image_stays_flat_and_weights_sum_to_one() {
        let img = RgbImage::from_pixel(37, 23, Rgb([200, 10, 99]));
        let out = resize_box(&img, (0.0, 0.0, 37.0, 23.0), 11, 16, BICUBIC);
        assert!(out.chunks(3).all(|p| p == [200, 10, 99]));
        let taps = coefficients(37, 0.0, 37.0, 11, BICUBIC);
        for xx in 0..11 {
            let sum: i64 = taps.weights[xx * taps.ksize..(xx + 1) * taps.ksize].iter().map(|w| *w as i64).sum();
            assert!((sum - (1 << PRECISION_BITS)).abs() <= taps.ksize as i64, "{sum}");
        }
    }
}
