//! Image decoding (all formats, EXIF orientation, size limits) and preprocessing of whatever
//! decodes: the path every uploaded image takes before a model sees it.
#![no_main]

use dfserve::models::{ChannelOrder, InputConfig, Layout, ResizeFilter};
use dfserve::pipeline::decode::{decode_rgb, DecodeLimits};
use dfserve::pipeline::preprocess::{model_input, Region};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small pixel limit keeps each run fast; the limit logic is exercised all the same.
    let Ok(img) = decode_rgb(data, DecodeLimits { max_pixels: 4_000_000 }) else { return };
    let cfg = InputConfig {
        name: "input".into(),
        layout: Layout::NCHW,
        width: 32,
        height: 24,
        channels: ChannelOrder::BGR,
        scale: 1.0,
        mean: [127.0; 3],
        std: [128.0; 3],
        resize: ResizeFilter::Bilinear,
    };
    let row = model_input(&img, Region::whole(&img), &cfg);
    assert_eq!(row.len(), 32 * 24 * 3);
    // A crop that runs past the border, as face crops near an edge do.
    let (w, h) = (img.width() as f64, img.height() as f64);
    let region = Region { x: w * 0.75, y: -h * 0.25, w: w * 0.5 + 1.0, h: h * 0.5 + 1.0 };
    let _ = model_input(&img, region, &InputConfig { resize: ResizeFilter::Nearest, layout: Layout::NHWC, ..cfg });
});
