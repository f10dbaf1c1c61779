//! Image preprocessing: decode (with a pixel limit checked before decoding),
//! convert channels, resize, normalise, lay out as NCHW or NHWC.

use std::io::Cursor;

use fast_image_resize as fir;
use image::{DynamicImage, ImageReader, Limits};

use super::manifest::{
    ChannelOrder, ChannelPolicy, ImageInput, Layout, ResizeFilter, ResizeMode, TensorType,
};
use super::{Batch, ItemError, Staged};

/// Prepared once per model: the spec plus lookup tables that fold
/// scale, mean and std into one load per pixel.
pub struct ImagePreprocessor {
    spec: ImageInput,
    max_pixels: u64,
    /// `lut[c][v]`: normalised value of byte `v` in model channel `c`.
    lut: Vec<[f32; 256]>,
    lut16: Vec<[half::f16; 256]>,
    alg: fir::ResizeAlg,
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
        let alg = match spec.resize_filter {
            ResizeFilter::Nearest => fir::ResizeAlg::Nearest,
            ResizeFilter::Triangle => fir::ResizeAlg::Convolution(fir::FilterType::Bilinear),
            ResizeFilter::Hamming => fir::ResizeAlg::Convolution(fir::FilterType::Hamming),
            ResizeFilter::CatmullRom => fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom),
            ResizeFilter::Mitchell => fir::ResizeAlg::Convolution(fir::FilterType::Mitchell),
            ResizeFilter::Gaussian => fir::ResizeAlg::Convolution(fir::FilterType::Gaussian),
            ResizeFilter::Lanczos3 => fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3),
        };
        ImagePreprocessor {
            spec,
            max_pixels,
            lut,
            lut16,
            alg,
        }
    }

    pub fn spec(&self) -> &ImageInput {
        &self.spec
    }

    /// Decode and resize to the model's size; returns interleaved u8 pixels.
    pub fn stage(&self, bytes: &[u8]) -> Result<Vec<u8>, ItemError> {
        let img = self.decode(bytes)?;
        let img = self.convert(img)?;
        self.resize(img)
    }

    fn decode(&self, bytes: &[u8]) -> Result<DynamicImage, ItemError> {
        if bytes.is_empty() {
            return Err(ItemError::Empty);
        }
        let reader = |bytes| -> Result<ImageReader<Cursor<&[u8]>>, ItemError> {
            let r = ImageReader::new(Cursor::new(bytes))
                .with_guessed_format()
                .map_err(|e| ItemError::Decode(e.to_string()))?;
            if r.format().is_none() {
                return Err(ItemError::Decode(
                    "unrecognised format; expected PNG or JPEG".into(),
                ));
            }
            Ok(r)
        };
        // Read only the header first, so a decompression bomb is refused
        // before a single large buffer is allocated.
        let (width, height) = reader(bytes)?
            .into_dimensions()
            .map_err(|e| ItemError::Decode(e.to_string()))?;
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(ItemError::TooLarge {
                width,
                height,
                pixels,
                limit: self.max_pixels,
            });
        }
        let mut r = reader(bytes)?;
        let mut limits = Limits::default();
        limits.max_image_width = Some(width);
        limits.max_image_height = Some(height);
        // 8 bytes per pixel covers 16-bit RGBA; anything more is not an image we accept.
        limits.max_alloc = Some(pixels.saturating_mul(8).max(1 << 20));
        r.limits(limits);
        r.decode().map_err(|e| ItemError::Decode(e.to_string()))
    }

    fn convert(&self, img: DynamicImage) -> Result<DynamicImage, ItemError> {
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
        Ok(match (expected, &img) {
            (1, DynamicImage::ImageLuma8(_)) | (3, DynamicImage::ImageRgb8(_)) => img,
            (1, _) => DynamicImage::ImageLuma8(img.into_luma8()),
            _ => DynamicImage::ImageRgb8(img.into_rgb8()),
        })
    }

    fn resize(&self, img: DynamicImage) -> Result<Vec<u8>, ItemError> {
        let (tw, th) = (self.spec.width, self.spec.height);
        let (w, h) = (img.width(), img.height());
        if w == 0 || h == 0 {
            return Err(ItemError::Decode("image has zero width or height".into()));
        }
        let pixel_type = if self.spec.channels == 1 {
            fir::PixelType::U8
        } else {
            fir::PixelType::U8x3
        };
        let src_buf = match img {
            DynamicImage::ImageLuma8(b) => b.into_raw(),
            DynamicImage::ImageRgb8(b) => b.into_raw(),
            other => {
                return Err(ItemError::Decode(format!(
                    "unexpected pixel format {:?}",
                    other.color()
                )))
            }
        };
        let mut options = fir::ResizeOptions::new().resize_alg(self.alg);
        match self.spec.resize_mode {
            ResizeMode::Stretch => {
                if (w, h) == (tw, th) {
                    return Ok(src_buf);
                }
            }
            ResizeMode::ShortSideCenterCrop => {
                // Scale so the shorter side becomes resize_short, then cut the centre.
                let short = f64::from(self.spec.resize_short.unwrap_or(tw.min(th)));
                let s = short / f64::from(w.min(h));
                let (rw, rh) = ((f64::from(w) * s).round(), (f64::from(h) * s).round());
                let (cw, ch) = (f64::from(tw).min(rw), f64::from(th).min(rh));
                let left = ((rw - cw) / 2.0).floor() / s;
                let top = ((rh - ch) / 2.0).floor() / s;
                options = options.crop(left, top, cw / s, ch / s);
            }
        }
        let src = fir::images::Image::from_vec_u8(w, h, src_buf, pixel_type)
            .map_err(|e| ItemError::Decode(format!("resize: {e}")))?;
        let mut dst = fir::images::Image::new(tw, th, pixel_type);
        fir::Resizer::new()
            .resize(&src, &mut dst, &options)
            .map_err(|e| ItemError::Decode(format!("resize: {e}")))?;
        Ok(dst.into_vec())
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
                let mut data = vec![0f32; items.len() * per_item];
                for (item, out) in items.iter().zip(data.chunks_exact_mut(per_item)) {
                    if let Staged::Pixels(px) = item {
                        self.normalise(px, out, &self.lut);
                    }
                }
                Batch::F32 { shape, data }
            }
            TensorType::Float16 => {
                let mut data = vec![half::f16::ZERO; items.len() * per_item];
                for (item, out) in items.iter().zip(data.chunks_exact_mut(per_item)) {
                    if let Staged::Pixels(px) = item {
                        self.normalise(px, out, &self.lut16);
                    }
                }
                Batch::F16 { shape, data }
            }
        }
    }

    fn normalise<T: Copy>(&self, px: &[u8], out: &mut [T], lut: &[[T; 256]]) {
        let c = self.spec.channels as usize;
        let plane = out.len() / c;
        let bgr = self.spec.channel_order == ChannelOrder::BGR && c == 3;
        match self.spec.layout {
            Layout::NCHW => {
                if c == 1 {
                    for (o, &p) in out.iter_mut().zip(px) {
                        *o = lut[0][p as usize];
                    }
                } else {
                    for mc in 0..c {
                        let sc = if bgr { c - 1 - mc } else { mc };
                        let table = &lut[mc];
                        let dst = &mut out[mc * plane..(mc + 1) * plane];
                        for (o, chunk) in dst.iter_mut().zip(px.chunks_exact(c)) {
                            *o = table[chunk[sc] as usize];
                        }
                    }
                }
            }
            Layout::NHWC => {
                for (o_px, chunk) in out.chunks_exact_mut(c).zip(px.chunks_exact(c)) {
                    for mc in 0..c {
                        let sc = if bgr { c - 1 - mc } else { mc };
                        o_px[mc] = lut[mc][chunk[sc] as usize];
                    }
                }
            }
        }
    }
}
