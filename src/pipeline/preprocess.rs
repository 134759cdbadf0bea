//! Turning pixels into a model's input row: crop, resize (SIMD, via `fast_image_resize`) and
//! normalise into the layout and channel order the model config names.

use fast_image_resize::images::Image;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use crate::models::{ChannelOrder, Fit, InputConfig, Layout, ResizeFilter};

/// A rectangle of the source image, in pixels. May extend past the image borders, in which case
/// the outside is filled with black (zero) before resizing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Region {
    pub fn whole(img: &RgbImage) -> Region {
        Region { x: 0.0, y: 0.0, w: img.width() as f64, h: img.height() as f64 }
    }

    fn inside(&self, img: &RgbImage) -> bool {
        self.x >= 0.0
            && self.y >= 0.0
            && self.x + self.w <= img.width() as f64
            && self.y + self.h <= img.height() as f64
    }
}

/// Resizes `region` of `img` to `width` x `height` RGB bytes.
pub fn resize_region(img: &RgbImage, region: Region, width: u32, height: u32, filter: ResizeFilter) -> Vec<u8> {
    let alg = match filter {
        ResizeFilter::Nearest => ResizeAlg::Nearest,
        ResizeFilter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
        // Bit-exact Pillow, which CLIP's preprocessing is defined by (see `resample`).
        ResizeFilter::Bicubic => {
            let bicubic = super::resample::BICUBIC;
            if region.inside(img) {
                let bx = (region.x, region.y, region.x + region.w, region.y + region.h);
                return super::resample::resize_box(img, bx, width, height, bicubic);
            }
            let padded = padded_copy(img, region);
            let whole = (0.0, 0.0, padded.width() as f64, padded.height() as f64);
            return super::resample::resize_box(&padded, whole, width, height, bicubic);
        }
    };
    let mut dst = Image::new(width, height, PixelType::U8x3);
    let mut resizer = Resizer::new();
    let result = if region.inside(img) {
        let opts = ResizeOptions::new().resize_alg(alg).crop(region.x, region.y, region.w, region.h);
        resizer.resize(img, &mut dst, &opts)
    } else {
        let padded = padded_copy(img, region);
        resizer.resize(&padded, &mut dst, &ResizeOptions::new().resize_alg(alg))
    };
    // Both images are U8x3 and non-empty, the only conditions under which resize can fail.
    result.expect("resizing between two non-empty RGB8 images");
    dst.into_vec()
}

/// Copies `region` (rounded to whole pixels) into a new image, black where it leaves `img`.
fn padded_copy(img: &RgbImage, region: Region) -> RgbImage {
    let (x0, y0) = (region.x.round() as i64, region.y.round() as i64);
    let (w, h) = (region.w.round().max(1.0) as u32, region.h.round().max(1.0) as u32);
    let mut out = RgbImage::new(w, h);
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    let src = img.as_raw();
    let cols_from = (-x0).clamp(0, w as i64);
    let cols_to = (iw - x0).clamp(0, w as i64);
    if cols_from >= cols_to {
        return out;
    }
    for row in 0..h as i64 {
        let sy = y0 + row;
        if sy < 0 || sy >= ih {
            continue;
        }
        let s = ((sy * iw + x0 + cols_from) * 3) as usize;
        let d = ((row * w as i64 + cols_from) * 3) as usize;
        let n = ((cols_to - cols_from) * 3) as usize;
        out.as_mut()[d..d + n].copy_from_slice(&src[s..s + n]);
    }
    out
}

/// Writes `rgb` (`cfg.width * cfg.height` RGB pixels) into `out` as `(p * scale - mean) / std`,
/// in the model's layout and channel order.
pub fn pack(rgb: &[u8], cfg: &InputConfig, out: &mut [f32]) {
    let plane = cfg.width as usize * cfg.height as usize;
    debug_assert_eq!(rgb.len(), plane * 3);
    debug_assert_eq!(out.len(), plane * 3);
    let order: [usize; 3] = match cfg.channels {
        ChannelOrder::RGB => [0, 1, 2],
        ChannelOrder::BGR => [2, 1, 0],
    };
    // Fold scale, mean and std into one multiply-add per value.
    let mul: [f32; 3] = std::array::from_fn(|c| cfg.scale / cfg.std[order[c]]);
    let add: [f32; 3] = std::array::from_fn(|c| -cfg.mean[order[c]] / cfg.std[order[c]]);
    match cfg.layout {
        Layout::NHWC => {
            for (px, dst) in rgb.chunks_exact(3).zip(out.chunks_exact_mut(3)) {
                for c in 0..3 {
                    dst[c] = px[order[c]] as f32 * mul[c] + add[c];
                }
            }
        }
        Layout::NCHW => {
            let (r, rest) = out.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                r[i] = px[order[0]] as f32 * mul[0] + add[0];
                g[i] = px[order[1]] as f32 * mul[1] + add[1];
                b[i] = px[order[2]] as f32 * mul[2] + add[2];
            }
        }
    }
}

/// `region` resized so its shorter side is `side` (the other side rounded as Python's `round`
/// does, as CLIP's reference preprocessing computes it), then its centre `side` x `side` cut out.
pub fn shortest_edge_center_crop(img: &RgbImage, region: Region, side: u32, filter: ResizeFilter) -> Vec<u8> {
    let scale = side as f64 / region.w.min(region.h).max(f64::MIN_POSITIVE);
    let new_w = ((region.w * scale).round_ties_even() as u32).max(side);
    let new_h = ((region.h * scale).round_ties_even() as u32).max(side);
    let resized = resize_region(img, region, new_w, new_h, filter);
    if new_w == side && new_h == side {
        return resized;
    }
    let (left, top) = (((new_w - side) / 2) as usize, ((new_h - side) / 2) as usize);
    let (row, out_row) = (new_w as usize * 3, side as usize * 3);
    let mut out = Vec::with_capacity(out_row * side as usize);
    for y in top..top + side as usize {
        let start = y * row + left * 3;
        out.extend_from_slice(&resized[start..start + out_row]);
    }
    out
}

/// Crop + resize + pack in one call: the row a model gets for `region` of `img`.
pub fn model_input(img: &RgbImage, region: Region, cfg: &InputConfig) -> Vec<f32> {
    let rgb = match cfg.fit {
        Fit::Stretch => resize_region(img, region, cfg.width, cfg.height, cfg.resize),
        Fit::ShortestEdgeCenterCrop => shortest_edge_center_crop(img, region, cfg.width, cfg.resize),
    };
    let mut out = vec![0.0; cfg.item_len()];
    pack(&rgb, cfg, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn cfg(layout: Layout, channels: ChannelOrder, w: u32, h: u32) -> InputConfig {
        InputConfig {
            name: "input".into(),
            layout,
            width: w,
            height: h,
            channels,
            scale: 1.0,
            mean: [127.0, 127.0, 127.0],
            std: [128.0, 128.0, 128.0],
            resize: ResizeFilter::Nearest,
            fit: Fit::Stretch,
        }
    }

    #[test]
    fn pack_nhwc_and_nchw_with_normalisation() {
        let rgb = [255u8, 127, 0, 1, 2, 3];
        let mut out = [0f32; 6];
        pack(&rgb, &cfg(Layout::NHWC, ChannelOrder::RGB, 2, 1), &mut out);
        assert_eq!(out, [1.0, 0.0, -127.0 / 128.0, -126.0 / 128.0, -125.0 / 128.0, -124.0 / 128.0]);
        pack(&rgb, &cfg(Layout::NCHW, ChannelOrder::RGB, 2, 1), &mut out);
        assert_eq!(out, [1.0, -126.0 / 128.0, 0.0, -125.0 / 128.0, -127.0 / 128.0, -124.0 / 128.0]);
        pack(&rgb, &cfg(Layout::NCHW, ChannelOrder::BGR, 2, 1), &mut out);
        assert_eq!(out[0], -127.0 / 128.0, "blue plane first");
        assert_eq!(out[4], 1.0, "red plane last");
    }

    #[test]
    fn pack_scale_only_matches_divide_by_255() {
        let mut c = cfg(Layout::NHWC, ChannelOrder::RGB, 1, 1);
        c.scale = 1.0 / 255.0;
        c.mean = [0.0; 3];
        c.std = [1.0; 3];
        let mut out = [0f32; 3];
        pack(&[255, 51, 0], &c, &mut out);
        assert!((out[0] - 1.0).abs() < 1e-6 && (out[1] - 0.2).abs() < 1e-6 && out[2] == 0.0);
    }

    #[test]
    fn centre_crop_keeps_the_middle_of_a_wide_region() {
        // 8x4 image whose columns are numbered; shortest side 4 -> no resize needed, cut 4 wide.
        let img = RgbImage::from_fn(8, 4, |x, _| Rgb([x as u8 * 10, 0, 0]));
        let out = shortest_edge_center_crop(&img, Region::whole(&img), 4, ResizeFilter::Bicubic);
        let first_row: Vec<u8> = out[..12].chunks(3).map(|p| p[0]).collect();
        assert_eq!(first_row, vec![20, 30, 40, 50]);
        assert_eq!(out.len(), 4 * 4 * 3);
        // Tall: 4x8 cut to the middle rows 2..6.
        let img = RgbImage::from_fn(4, 8, |_, y| Rgb([y as u8, 0, 0]));
        let out = shortest_edge_center_crop(&img, Region::whole(&img), 4, ResizeFilter::Nearest);
        let col: Vec<u8> = out.chunks(12).map(|r| r[0]).collect();
        assert_eq!(col, vec![2, 3, 4, 5]);
    }

    #[test]
    fn nearest_resize_picks_pixel_centres() {
        // 4x1 image resized to 2x1 with nearest: centres at 1.0 and 3.0 -> pixels 1 and 3.
        let img = RgbImage::from_fn(4, 1, |x, _| Rgb([x as u8 * 10, 0, 0]));
        let out = resize_region(&img, Region::whole(&img), 2, 1, ResizeFilter::Nearest);
        assert_eq!(out, vec![10, 0, 0, 30, 0, 0]);
    }

    #[test]
    fn crop_region_inside_the_image() {
        let img = RgbImage::from_fn(10, 10, |x, y| Rgb([x as u8, y as u8, 0]));
        let out = resize_region(&img, Region { x: 4.0, y: 6.0, w: 2.0, h: 2.0 }, 2, 2, ResizeFilter::Nearest);
        assert_eq!(out, vec![4, 6, 0, 5, 6, 0, 4, 7, 0, 5, 7, 0]);
    }

    #[test]
    fn region_past_the_border_is_black_padded() {
        let img = RgbImage::from_pixel(4, 4, Rgb([200, 200, 200]));
        // Left half of the region is outside the image.
        let out = resize_region(&img, Region { x: -2.0, y: 0.0, w: 4.0, h: 4.0 }, 4, 4, ResizeFilter::Nearest);
        for row in out.chunks_exact(12) {
            assert_eq!(&row[..6], &[0; 6]);
            assert_eq!(&row[6..], &[200; 6]);
        }
        // Entirely outside: all black, no panic.
        let out = resize_region(&img, Region { x: 10.0, y: 10.0, w: 3.0, h: 3.0 }, 2, 2, ResizeFilter::Bilinear);
        assert!(out.iter().all(|v| *v == 0));
    }
}
