//! The image pipeline's CPU stages: decode, detector input, box decoding + NMS, square crops,
//! classifier input, and the image-level aggregation. Nothing here is async or touches a
//! model: `core` runs these on the blocking pool and sends the rows to the batchers.

pub mod crop;
pub mod decode;
pub mod detect;
pub mod preprocess;

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
