//! The square face crop a classifier sees.
//!
//! MesoNet was trained on square face crops, so the crop is a square of side
//! `margin * max(box width, box height)` centred on the detected box. Near a border the square
//! either slides (and if needed shrinks) to stay inside the image (`clamp`, the default: no
//! black fill, which the model README found to cost accuracy) or keeps its place with the
//! outside filled black (`pad`).

use std::str::FromStr;

use super::detect::FaceBox;
use super::preprocess::Region;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Border {
    Clamp,
    Pad,
}

impl FromStr for Border {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "clamp" => Ok(Border::Clamp),
            "pad" => Ok(Border::Pad),
            _ => Err(format!("unknown crop border '{s}' (expected clamp or pad)")),
        }
    }
}

pub fn square_region(face: &FaceBox, img_w: u32, img_h: u32, margin: f32, border: Border) -> Region {
    let (w, h) = (img_w as f64, img_h as f64);
    let cx = (face.x1 as f64 + face.x2 as f64) / 2.0;
    let cy = (face.y1 as f64 + face.y2 as f64) / 2.0;
    let mut side = (face.width().max(face.height()) as f64 * margin as f64).max(1.0);
    match border {
        Border::Pad => Region { x: cx - side / 2.0, y: cy - side / 2.0, w: side, h: side },
        Border::Clamp => {
            side = side.min(w).min(h);
            let x = (cx - side / 2.0).clamp(0.0, w - side);
            let y = (cy - side / 2.0).clamp(0.0, h - side);
            Region { x, y, w: side, h: side }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x1: f32, y1: f32, x2: f32, y2: f32) -> FaceBox {
        FaceBox { x1, y1, x2, y2, confidence: 1.0 }
    }

    #[test]
    fn square_around_the_centre_with_margin() {
        let r = square_region(&face(40.0, 50.0, 60.0, 90.0), 200, 200, 1.5, Border::Clamp);
        assert_eq!(r, Region { x: 20.0, y: 40.0, w: 60.0, h: 60.0 });
    }

    #[test]
    fn clamp_slides_inside_and_shrinks_to_fit() {
        let r = square_region(&face(0.0, 0.0, 20.0, 20.0), 100, 100, 2.0, Border::Clamp);
        assert_eq!(r, Region { x: 0.0, y: 0.0, w: 40.0, h: 40.0 });
        let r = square_region(&face(0.0, 0.0, 100.0, 50.0), 100, 50, 1.3, Border::Clamp);
        assert_eq!(r, Region { x: 25.0, y: 0.0, w: 50.0, h: 50.0 });
    }

    #[test]
    fn pad_keeps_the_square_centred() {
        let r = square_region(&face(0.0, 0.0, 20.0, 20.0), 100, 100, 2.0, Border::Pad);
        assert_eq!(r, Region { x: -10.0, y: -10.0, w: 40.0, h: 40.0 });
    }

    #[test]
    fn parses_border() {
        assert_eq!("pad".parse::<Border>(), Ok(Border::Pad));
        assert!("wrap".parse::<Border>().is_err());
    }
}
