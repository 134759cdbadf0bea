//! Face detector output decoding and non-maximum suppression.

use serde::Serialize;

/// A detected face in source-image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaceBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    /// Detector confidence in [0, 1].
    pub confidence: f32,
}

impl FaceBox {
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }
    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }
    fn area(&self) -> f32 {
        self.width() * self.height()
    }

    pub fn iou(&self, other: &FaceBox) -> f32 {
        let w = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let h = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// Decodes one image's UltraFace outputs: `scores` is `[P, 2]` (background, face) and `boxes`
/// is `[P, 4]` normalised (x1, y1, x2, y2). Keeps faces above `threshold`, scaled to the
/// original image and clamped to it, then applies NMS.
pub fn decode_ultraface(
    scores: &[f32],
    boxes: &[f32],
    img_w: u32,
    img_h: u32,
    threshold: f32,
    nms_iou: f32,
) -> Vec<FaceBox> {
    let (w, h) = (img_w as f32, img_h as f32);
    let faces = scores
        .chunks_exact(2)
        .zip(boxes.chunks_exact(4))
        .filter(|(s, _)| s[1] > threshold)
        .map(|(s, b)| FaceBox {
            x1: (b[0] * w).clamp(0.0, w),
            y1: (b[1] * h).clamp(0.0, h),
            x2: (b[2] * w).clamp(0.0, w),
            y2: (b[3] * h).clamp(0.0, h),
            confidence: s[1],
        })
        .filter(|f| f.width() >= 1.0 && f.height() >= 1.0)
        .collect();
    nms(faces, nms_iou)
}

/// Greedy NMS: highest confidence first, dropping any box that overlaps a kept one by more
/// than `iou`. Returns the kept boxes by descending confidence.
pub fn nms(mut faces: Vec<FaceBox>, iou: f32) -> Vec<FaceBox> {
    faces.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut kept: Vec<FaceBox> = Vec::new();
    for f in faces {
        if kept.iter().all(|k| k.iou(&f) <= iou) {
            kept.push(f);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(x1: f32, y1: f32, x2: f32, y2: f32, c: f32) -> FaceBox {
        FaceBox { x1, y1, x2, y2, confidence: c }
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = fb(0.0, 0.0, 10.0, 10.0, 1.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&fb(10.0, 0.0, 20.0, 10.0, 1.0)), 0.0);
        // Overlap 5x10 = 50, union 150.
        assert!((a.iou(&fb(5.0, 0.0, 15.0, 10.0, 1.0)) - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let kept = nms(
            vec![
                fb(0.0, 0.0, 10.0, 10.0, 0.8),
                fb(1.0, 1.0, 11.0, 11.0, 0.9),
                fb(50.0, 50.0, 60.0, 60.0, 0.75),
                fb(5.0, 0.0, 15.0, 10.0, 0.85), // IoU 1/3 with the 0.9 box... > 0.3, dropped
            ],
            0.3,
        );
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert_eq!(kept[0].confidence, 0.9);
        assert_eq!(kept[1].confidence, 0.75);
    }

    #[test]
    fn ultraface_decoding_scales_clamps_and_thresholds() {
        let scores = [0.1, 0.9, 0.5, 0.5, 0.2, 0.8, 0.05, 0.95];
        let boxes = [
            0.1, 0.2, 0.3, 0.4, // kept
            0.0, 0.0, 1.0, 1.0, // below threshold
            0.11, 0.21, 0.31, 0.41, // overlaps the first, lower score: suppressed
            0.9, 0.9, 1.2, 1.3, // partly outside: clamped
        ];
        let faces = decode_ultraface(&scores, &boxes, 200, 100, 0.7, 0.3);
        assert_eq!(faces.len(), 2, "{faces:?}");
        let f = faces[0];
        assert_eq!(f.confidence, 0.95);
        assert_eq!((f.x1, f.y1, f.x2, f.y2), (180.0, 90.0, 200.0, 100.0));
        let g = faces[1];
        assert!((g.x1 - 20.0).abs() < 1e-4 && (g.y1 - 20.0).abs() < 1e-4);
        assert!((g.x2 - 60.0).abs() < 1e-4 && (g.y2 - 40.0).abs() < 1e-4);
    }
}
