//! Image preprocessing: decode (with a pixel limit checked before decoding),
//! convert channels, resize, normalise, lay out as NCHW or NHWC.

use std::io::Cursor;

use fast_image_resize as fir;
use image::{ColorType, DynamicImage, ImageDecoder, ImageReader, Limits};

use super::manifest::{
    ChannelOrder, ChannelPolicy, ImageInput, Layout, ResizeFilter, ResizeMode, TensorType,
};
use super::{Batch, DecodeBudget, ItemError, Staged};

fn decode_err(e: image::ImageError) -> ItemError {
    ItemError::Decode(e.to_string())
}

/// Largest decode buffer a thread keeps between images (a 2.8-megapixel RGB
/// photo); bigger ones are freed after use.
const KEEP_DECODE_BUFFER: usize = 8 << 20;

thread_local! {
    /// One resizer per staging thread: it keeps its scratch buffers between
    /// images instead of allocating and zeroing them for every page.
    static RESIZER: std::cell::RefCell<fir::Resizer> = std::cell::RefCell::new(fir::Resizer::new());
    /// Decoded pixels of the image being staged on this thread, reused.
    static DECODE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The last f32 batch buffer given back on this thread (see [`recycle_f32`]).
    static F32_SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Keep `buf` for the next f32 batch packed on this thread.
pub(crate) fn recycle_f32(buf: Vec<f32>) {
    F32_SCRATCH.set(buf);
}

/// OpenCV's `INTER_LANCZOS4` kernel: sinc(x)·sinc(x/4) on |x| < 4.
///
/// The resizer evaluates the kernel 18 times per output column and row of
/// every image; two `sin` calls each were a tenth of a page's staging time.
/// A table at 1/1024-pixel steps with linear interpolation is exact to ~1e-7,
/// far below the 1/2^14 the u8 path quantises coefficients to.
fn lanczos4() -> fir::FilterType {
    const STEPS: f64 = 1024.0;
    static TABLE: std::sync::OnceLock<Box<[f64]>> = std::sync::OnceLock::new();
    fn exact(x: f64) -> f64 {
        let sinc = |x: f64| {
            if x == 0.0 {
                1.0
            } else {
                let a = x * std::f64::consts::PI;
                a.sin() / a
            }
        };
        sinc(x) * sinc(x / 4.0)
    }
    fn kernel(x: f64) -> f64 {
        let a = x.abs();
        if a >= 4.0 {
            return 0.0;
        }
        let table = TABLE.get_or_init(|| {
            (0..=4 * STEPS as usize + 1)
                .map(|i| exact(i as f64 / STEPS))
                .collect()
        });
        let t = a * STEPS;
        let i = t as usize;
        let f = t - i as f64;
        table[i] * (1.0 - f) + table[i + 1] * f
    }
    match fir::Filter::new("lanczos4", kernel, 4.0) {
        Ok(f) => fir::FilterType::Custom(f),
        // Only a non-positive or infinite support is refused; 4.0 is neither.
        Err(_) => fir::FilterType::Lanczos3,
    }
}

/// Prepared once per model: the spec plus lookup tables that fold
/// scale, mean and std into one load per pixel.
pub struct ImagePreprocessor {
    spec: ImageInput,
    max_pixels: u64,
    /// `lut[c][v]`: normalised value of byte `v` in model channel `c`.
    lut: Vec<[f32; 256]>,
    lut16: Vec<[half::f16; 256]>,
    alg: fir::ResizeAlg,
    /// Turn the image upright by its EXIF orientation before resizing, so
    /// boxes are in the pixels a person sees. Classification keeps the
    /// decoded pixels as they are, as it always has.
    upright: bool,
}

impl ImagePreprocessor {
    pub fn new(spec: ImageInput, max_pixels: u64) -> Self {
        let channels = spec.channels as usize;
        let lut: Vec<[f32; 256]> = (0..channels)
            .map(|c| {
                let (mean, std) = spec.channel_norm(c);
                let mut t = [0f32; 256];
                for (v, slot) in t.iter_mut().enumerate() {
                    *slot = (v as f32 * spec.scale - mean) / std;
                }
                t
            })
            .collect();
        let lut16 = lut
            .iter()
            .map(|t| {
                let mut h = [half::f16::ZERO; 256];
                for (d, s) in h.iter_mut().zip(t.iter()) {
                    *d = half::f16::from_f32(*s);
                }
                h
            })
            .collect();
        let filter = match spec.resize_filter {
            ResizeFilter::Nearest => None,
            ResizeFilter::Triangle => Some(fir::FilterType::Bilinear),
            ResizeFilter::Hamming => Some(fir::FilterType::Hamming),
            ResizeFilter::CatmullRom => Some(fir::FilterType::CatmullRom),
            ResizeFilter::Mitchell => Some(fir::FilterType::Mitchell),
            ResizeFilter::Gaussian => Some(fir::FilterType::Gaussian),
            ResizeFilter::Lanczos3 => Some(fir::FilterType::Lanczos3),
            ResizeFilter::Lanczos4 => Some(lanczos4()),
        };
        let alg = match filter {
            None => fir::ResizeAlg::Nearest,
            Some(f) if spec.resize_antialias => fir::ResizeAlg::Convolution(f),
            Some(f) => fir::ResizeAlg::Interpolation(f),
        };
        ImagePreprocessor {
            spec,
            max_pixels,
            lut,
            lut16,
            alg,
            upright: false,
        }
    }

    /// Apply EXIF orientation before resizing (detection models).
    pub fn upright(mut self) -> Self {
        self.upright = true;
        self
    }

    pub fn spec(&self) -> &ImageInput {
        &self.spec
    }

    /// Decode, convert and resize to the model's size.
    pub fn stage(&self, bytes: &[u8]) -> Result<Staged, ItemError> {
        self.stage_within(bytes, &mut DecodeBudget::unlimited())
    }

    /// [`Self::stage`], charging the decoded size to `budget` once the header
    /// is read and before any pixel is decoded.
    pub fn stage_within(
        &self,
        bytes: &[u8],
        budget: &mut DecodeBudget,
    ) -> Result<Staged, ItemError> {
        let mut decoder = self.open(bytes)?;
        let (width, height) = decoder.dimensions();
        let color = decoder.color_type();
        budget.charge(width, height, color)?;
        let orientation = match self.upright {
            true => decoder
                .orientation()
                .unwrap_or(image::metadata::Orientation::NoTransforms),
            false => image::metadata::Orientation::NoTransforms,
        };
        if orientation != image::metadata::Orientation::NoTransforms {
            let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
            img.apply_orientation(orientation);
            let (width, height) = (img.width(), img.height());
            let (data, channels) = self.convert(img)?;
            let data = self.resize(&data, channels, width, height)?;
            return Ok(Staged::Pixels {
                data,
                channels,
                source: [width, height],
            });
        }
        // 8-bit grey or RGB that needs no conversion (the usual case) is
        // decoded into this thread's reused buffer and resized from there:
        // no fresh, zeroed allocation per image.
        let direct = match color {
            ColorType::L8 => {
                self.spec.channels == 1 || self.spec.channel_policy == ChannelPolicy::Convert
            }
            ColorType::Rgb8 => self.spec.channels == 3,
            _ => false,
        };
        if direct {
            let channels = if color == ColorType::L8 { 1 } else { 3 };
            let len = usize::try_from(decoder.total_bytes())
                .map_err(|_| ItemError::Decode("image too large for memory".into()))?;
            let data = DECODE_BUFFER.with_borrow_mut(|buf| {
                buf.truncate(len);
                buf.resize(len, 0);
                let staged = decoder
                    .read_image(buf)
                    .map_err(decode_err)
                    .and_then(|()| self.resize(buf, channels, width, height));
                if buf.capacity() > KEEP_DECODE_BUFFER {
                    // One huge image must not pin its buffer for good.
                    *buf = Vec::new();
                }
                staged
            })?;
            return Ok(Staged::Pixels {
                data,
                channels,
                source: [width, height],
            });
        }
        let img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
        let (data, channels) = self.convert(img)?;
        let data = self.resize(&data, channels, width, height)?;
        Ok(Staged::Pixels {
            data,
            channels,
            source: [width, height],
        })
    }

    /// Decode to upright interleaved u8 pixels at the image's own size
    /// (grey stays 1 channel, anything else becomes 3): what OCR crops its
    /// lines from. The pixel limit and `budget` are checked on the header.
    pub(crate) fn decode_native(
        &self,
        bytes: &[u8],
        budget: &mut DecodeBudget,
    ) -> Result<(Vec<u8>, u8, u32, u32), ItemError> {
        let mut decoder = self.open(bytes)?;
        let (width, height) = decoder.dimensions();
        budget.charge(width, height, decoder.color_type())?;
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut img = DynamicImage::from_decoder(decoder).map_err(decode_err)?;
        if orientation != image::metadata::Orientation::NoTransforms {
            img.apply_orientation(orientation);
        }
        let (width, height) = (img.width(), img.height());
        if width == 0 || height == 0 {
            return Err(ItemError::Decode("image has zero width or height".into()));
        }
        let (data, channels) = self.convert(img)?;
        Ok((data, channels, width, height))
    }

    /// Read the header and set limits; nothing is decoded yet.
    fn open<'a>(&self, bytes: &'a [u8]) -> Result<impl ImageDecoder + 'a, ItemError> {
        if bytes.is_empty() {
            return Err(ItemError::Empty);
        }
        let reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| ItemError::Decode(e.to_string()))?;
        if reader.format().is_none() {
            return Err(ItemError::Decode(
                "unrecognised format; expected PNG or JPEG".into(),
            ));
        }
        // Making the decoder reads only the header, so a decompression bomb
        // is refused here, before a single large buffer is allocated.
        let mut decoder = reader.into_decoder().map_err(decode_err)?;
        let (width, height) = decoder.dimensions();
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(ItemError::TooLarge {
                width,
                height,
                pixels,
                limit: self.max_pixels,
            });
        }
        let mut limits = Limits::default();
        limits.max_image_width = Some(width);
        limits.max_image_height = Some(height);
        // 8 bytes per pixel covers 16-bit RGBA; anything more is not an image we accept.
        limits.max_alloc = Some(pixels.saturating_mul(8).max(1 << 20));
        decoder.set_limits(limits).map_err(decode_err)?;
        Ok(decoder)
    }

    /// Reduce any decoded image to interleaved u8 grey or RGB, with our own
    /// tight loops for the common cases: `image`'s generic conversions go
    /// through colour management and cost more than decoding itself.
    fn convert(&self, img: DynamicImage) -> Result<(Vec<u8>, u8), ItemError> {
        let color = img.color();
        let found = color.channel_count() - u8::from(color.has_alpha());
        let expected = self.spec.channels;
        if u32::from(found) != expected && self.spec.channel_policy == ChannelPolicy::Strict {
            return Err(ItemError::Channels {
                found,
                expected,
                color: format!("{color:?}"),
            });
        }
        let (data, channels) = match img {
            DynamicImage::ImageLuma8(b) => (b.into_raw(), 1),
            DynamicImage::ImageRgb8(b) => (b.into_raw(), 3),
            DynamicImage::ImageLumaA8(b) => {
                (b.into_raw().chunks_exact(2).map(|p| p[0]).collect(), 1)
            }
            DynamicImage::ImageRgba8(b) => {
                let raw = b.into_raw();
                let mut rgb = Vec::with_capacity(raw.len() / 4 * 3);
                for p in raw.chunks_exact(4) {
                    rgb.extend_from_slice(&p[..3]);
                }
                (rgb, 3)
            }
            other if expected == 1 => (other.into_luma8().into_raw(), 1),
            other => (other.into_rgb8().into_raw(), 3),
        };
        if expected == 1 && channels == 3 {
            // ITU-R 601-2 luma, as PIL's convert("L"), in fixed point.
            let grey = data
                .chunks_exact(3)
                .map(|p| {
                    ((u32::from(p[0]) * 19595
                        + u32::from(p[1]) * 38470
                        + u32::from(p[2]) * 7471
                        + 32768)
                        >> 16) as u8
                })
                .collect();
            return Ok((grey, 1));
        }
        Ok((data, channels))
    }

    fn resize(&self, src_buf: &[u8], channels: u8, w: u32, h: u32) -> Result<Vec<u8>, ItemError> {
        let (tw, th) = (self.spec.width, self.spec.height);
        if w == 0 || h == 0 {
            return Err(ItemError::Decode("image has zero width or height".into()));
        }
        let pixel_type = if channels == 1 {
            fir::PixelType::U8
        } else {
            fir::PixelType::U8x3
        };
        let mut options = fir::ResizeOptions::new().resize_alg(self.alg);
        match self.spec.resize_mode {
            ResizeMode::Stretch => {
                if (w, h) == (tw, th) {
                    return Ok(src_buf.to_vec());
                }
            }
            ResizeMode::ShortSideCenterCrop => {
                // Scale so the shorter side becomes resize_short, then cut the centre.
                let short = f64::from(self.spec.resize_short.unwrap_or(tw.min(th)));
                let s = short / f64::from(w.min(h));
                let (rw, rh) = ((f64::from(w) * s).round(), (f64::from(h) * s).round());
                let (cw, ch) = (f64::from(tw).min(rw), f64::from(th).min(rh));
                // Map the crop back through the ratio of the *rounded* size,
                // per axis, as resizing to (rw, rh) and then cropping does
                // (OpenCV, PIL); 1/s drifts by up to a pixel across the crop.
                let (sx, sy) = (f64::from(w) / rw, f64::from(h) / rh);
                let left = ((rw - cw) / 2.0).floor() * sx;
                let top = ((rh - ch) / 2.0).floor() * sy;
                options = options.crop(left, top, cw * sx, ch * sy);
            }
            ResizeMode::Letterbox => return self.letterbox(src_buf, pixel_type, channels, w, h),
        }
        let src = fir::images::ImageRef::new(w, h, src_buf, pixel_type)
            .map_err(|e| ItemError::Decode(format!("resize: {e}")))?;
        let mut dst = fir::images::Image::new(tw, th, pixel_type);
        RESIZER
            .with_borrow_mut(|resizer| resizer.resize(&src, &mut dst, &options))
            .map_err(|e| ItemError::Decode(format!("resize: {e}")))?;
        Ok(dst.into_vec())
    }

    /// Fit the image inside the model's size keeping its aspect ratio, centred
    /// on a `pad_value` background (see [`super::detect::Letterbox`]).
    fn letterbox(
        &self,
        src_buf: &[u8],
        pixel_type: fir::PixelType,
        channels: u8,
        w: u32,
        h: u32,
    ) -> Result<Vec<u8>, ItemError> {
        let (tw, th) = (self.spec.width, self.spec.height);
        let lb = super::detect::Letterbox::new(w, h, tw, th);
        let src = fir::images::ImageRef::new(w, h, src_buf, pixel_type)
            .map_err(|e| ItemError::Decode(format!("resize: {e}")))?;
        let mut inner = fir::images::Image::new(lb.width, lb.height, pixel_type);
        let options = fir::ResizeOptions::new().resize_alg(self.alg);
        RESIZER
            .with_borrow_mut(|resizer| resizer.resize(&src, &mut inner, &options))
            .map_err(|e| ItemError::Decode(format!("resize: {e}")))?;
        let c = usize::from(channels);
        let row = lb.width as usize * c;
        let mut out = vec![self.spec.pad_value; tw as usize * th as usize * c];
        for (y, line) in inner.buffer().chunks_exact(row).enumerate() {
            let at = ((lb.top as usize + y) * tw as usize + lb.left as usize) * c;
            out[at..at + row].copy_from_slice(line);
        }
        Ok(out)
    }

    /// Normalise staged pixels into one batch tensor.
    pub fn pack(&self, items: &[&Staged]) -> Batch {
        let (c, h, w) = (
            self.spec.channels as usize,
            self.spec.height as usize,
            self.spec.width as usize,
        );
        let shape = match self.spec.layout {
            Layout::NCHW => vec![items.len(), c, h, w],
            Layout::NHWC => vec![items.len(), h, w, c],
        };
        let per_item = c * h * w;
        match self.spec.dtype {
            TensorType::Float32 => {
                // Not zeroed: every element is written below (staged pixels
                // cover the whole item; anything else is zero-filled).
                let mut data = F32_SCRATCH.take();
                data.truncate(items.len() * per_item);
                data.resize(items.len() * per_item, 0.0);
                for (item, out) in items.iter().zip(data.chunks_exact_mut(per_item)) {
                    match item {
                        Staged::Pixels {
                            data, channels: 1, ..
                        } if self.spec.layout == Layout::NCHW => {
                            self.normalise_grey_planes(data, out)
                        }
                        Staged::Pixels { data, channels, .. } => {
                            self.normalise(data, *channels, out, &self.lut)
                        }
                        Staged::Tokens(_) | Staged::Audio(_) | Staged::Page(_) => out.fill(0.0),
                    }
                }
                Batch::F32 { shape, data }
            }
            TensorType::Float16 => {
                let mut data = vec![half::f16::ZERO; items.len() * per_item];
                for (item, out) in items.iter().zip(data.chunks_exact_mut(per_item)) {
                    if let Staged::Pixels { data, channels, .. } = item {
                        self.normalise(data, *channels, out, &self.lut16);
                    }
                }
                Batch::F16 { shape, data }
            }
        }
    }

    /// Grey pixels into every f32 NCHW plane as `p * a + b` per channel (the
    /// lookup table's value, folded the other way): a contiguous multiply-add
    /// the compiler vectorises, where table lookups go one element at a time.
    /// Grey is the common case: Fashion-MNIST, and scanned or rendered pages.
    fn normalise_grey_planes(&self, px: &[u8], out: &mut [f32]) {
        let c = self.spec.channels as usize;
        let plane = out.len() / c;
        for (mc, dst) in out.chunks_exact_mut(plane).enumerate() {
            let (mean, std) = self.spec.channel_norm(mc);
            let (a, b) = (self.spec.scale / std, -mean / std);
            for (o, &p) in dst.iter_mut().zip(px) {
                *o = f32::from(p) * a + b;
            }
        }
    }

    /// `src_c` is the staged buffer's channel count: 1 for grey (widened to
    /// every model channel here) or the model's own channel count.
    fn normalise<T: Copy>(&self, px: &[u8], src_c: u8, out: &mut [T], lut: &[[T; 256]]) {
        let c = self.spec.channels as usize;
        let src_c = usize::from(src_c);
        let plane = out.len() / c;
        let bgr = self.spec.channel_order == ChannelOrder::BGR && c == 3;
        let source = |mc: usize| {
            if src_c == 1 {
                0
            } else if bgr {
                c - 1 - mc
            } else {
                mc
            }
        };
        match self.spec.layout {
            Layout::NCHW => {
                for mc in 0..c {
                    let sc = source(mc);
                    let table = &lut[mc];
                    let dst = &mut out[mc * plane..(mc + 1) * plane];
                    if src_c == 1 {
                        for (o, &p) in dst.iter_mut().zip(px) {
                            *o = table[p as usize];
                        }
                    } else {
                        for (o, chunk) in dst.iter_mut().zip(px.chunks_exact(src_c)) {
                            *o = table[chunk[sc] as usize];
                        }
                    }
                }
            }
            Layout::NHWC => {
                for (o_px, chunk) in out.chunks_exact_mut(c).zip(px.chunks_exact(src_c)) {
                    for (mc, o) in o_px.iter_mut().enumerate() {
                        *o = lut[mc][chunk[source(mc)] as usize];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::ResizeFilter;

    fn spec(channels: u32, layout: Layout, order: ChannelOrder) -> ImageInput {
        ImageInput {
            name: "x".into(),
            dtype: TensorType::Float32,
            width: 2,
            height: 1,
            channels,
            layout,
            resize_filter: ResizeFilter::Triangle,
            resize_antialias: true,
            resize_mode: ResizeMode::Stretch,
            resize_short: None,
            channel_order: order,
            channel_policy: ChannelPolicy::Convert,
            scale: 1.0,
            mean: vec![],
            std: vec![],
            pad_value: 114,
        }
    }

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn f32s(batch: Batch) -> Vec<f32> {
        match batch {
            Batch::F32 { data, .. } => data,
            _ => panic!("expected f32"),
        }
    }

    #[test]
    fn rgb_to_grey_matches_pil_luma() {
        let p = ImagePreprocessor::new(spec(1, Layout::NCHW, ChannelOrder::RGB), 1 << 20);
        let img = image::RgbImage::from_raw(2, 1, vec![255, 0, 0, 10, 200, 30]).unwrap();
        let staged = p.stage(&png(DynamicImage::ImageRgb8(img))).unwrap();
        // PIL: L = R*299/1000 + G*587/1000 + B*114/1000
        assert_eq!(f32s(p.pack(&[&staged])), vec![76.0, 124.0]);
    }

    #[test]
    fn grey_is_widened_and_bgr_is_swapped() {
        let grey = image::GrayImage::from_raw(2, 1, vec![7, 9]).unwrap();
        let p = ImagePreprocessor::new(spec(3, Layout::NCHW, ChannelOrder::RGB), 1 << 20);
        let staged = p.stage(&png(DynamicImage::ImageLuma8(grey))).unwrap();
        assert_eq!(f32s(p.pack(&[&staged])), vec![7.0, 9.0, 7.0, 9.0, 7.0, 9.0]);

        let rgb = image::RgbImage::from_raw(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let bytes = png(DynamicImage::ImageRgb8(rgb));
        let p = ImagePreprocessor::new(spec(3, Layout::NCHW, ChannelOrder::BGR), 1 << 20);
        let staged = p.stage(&bytes).unwrap();
        assert_eq!(f32s(p.pack(&[&staged])), vec![3.0, 6.0, 2.0, 5.0, 1.0, 4.0]);
        let p = ImagePreprocessor::new(spec(3, Layout::NHWC, ChannelOrder::RGB), 1 << 20);
        let staged = p.stage(&bytes).unwrap();
        assert_eq!(f32s(p.pack(&[&staged])), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn alpha_is_dropped_and_normalisation_applied() {
        let mut s = spec(3, Layout::NCHW, ChannelOrder::RGB);
        s.scale = 1.0 / 255.0;
        s.mean = vec![0.5];
        s.std = vec![0.5];
        let p = ImagePreprocessor::new(s, 1 << 20);
        let rgba = image::RgbaImage::from_raw(2, 1, vec![255, 0, 255, 0, 0, 255, 0, 255]).unwrap();
        let staged = p.stage(&png(DynamicImage::ImageRgba8(rgba))).unwrap();
        assert_eq!(
            f32s(p.pack(&[&staged])),
            vec![1.0, -1.0, -1.0, 1.0, 1.0, -1.0]
        );
    }

    #[test]
    fn grey_fast_path_matches_the_lookup_tables() {
        let mut s = spec(3, Layout::NCHW, ChannelOrder::BGR);
        s.width = 256;
        s.scale = 1.0 / 255.0;
        s.mean = vec![0.485, 0.456, 0.406];
        s.std = vec![0.229, 0.224, 0.225];
        let p = ImagePreprocessor::new(s, 1 << 20);
        let grey = image::GrayImage::from_raw(256, 1, (0..=255).collect()).unwrap();
        let staged = p.stage(&png(DynamicImage::ImageLuma8(grey))).unwrap();
        let packed = f32s(p.pack(&[&staged]));
        for (mc, plane) in packed.chunks_exact(256).enumerate() {
            for (v, got) in plane.iter().enumerate() {
                let want = p.lut[mc][v];
                assert!(
                    (got - want).abs() <= 1e-5,
                    "channel {mc}, value {v}: {got} vs {want}"
                );
            }
        }
    }
}
