//! An image's **layout embedding** from its proposed boxes, so that the
//! diversity strategies (k-center, the cold-start seed set) work on
//! detection images, which a detection model gives no embedding for.
//!
//! Each box adds its score to the cell of a `GRID × GRID` grid (over the
//! image, by the box's centre) of its class; the vector is L2-normalised.
//! Two pages with the same kinds of blocks in the same places are close;
//! a page with a table where others have figures is far. It describes
//! what the model saw, not the pixels: two blank pages are equal.

/// Cells per side of the grid.
pub const GRID: usize = 3;

/// The embedding's length for `num_classes` classes.
pub fn layout_dim(num_classes: usize) -> usize {
    num_classes * GRID * GRID
}

/// One box: its class, score, and corners in pixels of a `width` ×
/// `height` image. Boxes of an unknown class, or with a non-finite score
/// or corner, are skipped.
pub fn layout_embedding(
    boxes: impl IntoIterator<Item = (usize, f32, [f64; 4])>,
    width: u32,
    height: u32,
    num_classes: usize,
) -> Vec<f32> {
    let mut v = vec![0f32; layout_dim(num_classes)];
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let cell = |centre: f64, side: f64| {
        let i = (centre / side * GRID as f64).floor();
        i.clamp(0.0, (GRID - 1) as f64) as usize
    };
    for (class, score, [x0, y0, x1, y1]) in boxes {
        let finite = score.is_finite() && [x0, y0, x1, y1].iter().all(|c| c.is_finite());
        if class >= num_classes || !finite {
            continue;
        }
        let (gx, gy) = (cell((x0 + x1) / 2.0, w), cell((y0 + y1) / 2.0, h));
        v[class * GRID * GRID + gy * GRID + gx] += score.max(0.0);
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_layouts_are_close_and_different_ones_far() {
        let page = |class: usize, x: f64| {
            layout_embedding([(class, 0.9, [x, 10.0, x + 50.0, 60.0])], 300, 300, 2)
        };
        let dist = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt()
        };
        let (a, b) = (page(0, 10.0), page(0, 20.0));
        assert_eq!(a.len(), 18);
        assert!(dist(&a, &b) < 1e-6, "same class, same cell");
        assert!(dist(&a, &page(1, 10.0)) > 1.0, "another class");
        assert!(dist(&a, &page(0, 250.0)) > 1.0, "another place");
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-6);
        // Nothing usable: the zero vector, never a NaN.
        let empty = layout_embedding([(5, 0.9, [0.0; 4]), (0, f32::NAN, [0.0; 4])], 0, 0, 2);
        assert!(empty.iter().all(|x| *x == 0.0));
    }
}
