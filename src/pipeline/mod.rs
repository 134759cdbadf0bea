//! The image pipeline's CPU stages: decode, detector input, box decoding + NMS, square crops,
//! classifier input, and the image-level aggregation. Nothing here is async or touches a
//! model: `core` runs these on the blocking pool and sends the rows to the batchers.

pub mod crop;
pub mod decode;
pub mod detect;
pub mod preprocess;
pub mod resample;

use image::RgbImage;

use crate::models::{DetectorConfig, DetectorDecoder, InputConfig};
use crop::{square_region, Border};
use detect::{decode_ultraface, FaceBox};
use preprocess::model_input;

/// Faces from one image's detector outputs (`scores` and `boxes` are this image's rows of the
/// outputs the config names), in pixels of a `width` x `height` image, after NMS.
pub fn detected_faces(cfg: &DetectorConfig, scores: &[f32], boxes: &[f32], width: u32, height: u32) -> Vec<FaceBox> {
    match cfg.decoder {
        DetectorDecoder::Ultraface => decode_ultraface(scores, boxes, width, height, cfg.score_threshold, cfg.nms_iou),
    }
}

/// The classifier row for each face: its square crop, resized and normalised.
pub fn face_rows(
    img: &RgbImage,
    faces: Vec<FaceBox>,
    inputs: &[InputConfig],
    margin: f32,
    border: Border,
) -> Vec<(FaceBox, Vec<Vec<f32>>)> {
    faces
        .into_iter()
        .map(|b| {
            let region = square_region(&b, img.width(), img.height(), margin, border);
            (b, inputs.iter().map(|input| model_input(img, region, input)).collect())
        })
        .collect()
}

/// Image score from face scores: the most manipulated face decides.
pub fn aggregate(face_scores: &[f32]) -> Option<f32> {
    face_scores.iter().copied().reduce(f32::max)
}

#[cfg(test)]
mod tests {
    #[test]
    fn image_score_is_the_max_face_score() {
        assert_eq!(super::aggregate(&[0.1, 0.7, 0.3]), Some(0.7));
        assert_eq!(super::aggregate(&[]), None);
    }
}
