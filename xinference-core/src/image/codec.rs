//! Image files: generated pixels to PNG (default, as OpenAI returns), JPEG or WebP, and
//! uploaded images (any of those) to pixels.

use crate::{Error, Result};
use image::{ImageFormat, RgbImage};
use std::io::Cursor;

/// An output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// PNG (the default).
    Png,
    /// JPEG (quality 90).
    Jpeg,
    /// WebP (lossless).
    Webp,
}

impl OutputFormat {
    /// OpenAI's `output_format` (`png`, `jpeg`/`jpg`, `webp`); 400 for anything else.
    pub fn parse(text: Option<&str>) -> Result<Self> {
        match text.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("png") => Ok(OutputFormat::Png),
            Some("jpeg") | Some("jpg") => Ok(OutputFormat::Jpeg),
            Some("webp") => Ok(OutputFormat::Webp),
            Some(other) => Err(Error::bad_request(format!(
                "output_format {other:?} is not one of png, jpeg, webp"
            ))),
        }
    }

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
        }
    }

    /// The media type.
    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
        }
    }
}

/// Float pixels in [0, 1] to bytes as diffusers' `numpy_to_pil` does: `(x * 255).round()`.
pub fn to_rgb8(pixels: &[f32]) -> Vec<u8> {
    pixels
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

/// Encodes an RGB image.
pub fn encode(
    pixels: &[f32],
    width: usize,
    height: usize,
    format: OutputFormat,
) -> Result<Vec<u8>> {
    let img = RgbImage::from_raw(width as u32, height as u32, to_rgb8(pixels))
        .ok_or_else(|| Error::internal("image buffer does not match its size"))?;
    let mut out = Cursor::new(Vec::new());
    let result = match format {
        OutputFormat::Png => img.write_to(&mut out, ImageFormat::Png),
        OutputFormat::Webp => img.write_to(&mut out, ImageFormat::WebP),
        OutputFormat::Jpeg => {
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
            img.write_with_encoder(encoder)
        }
    };
    result.map_err(|e| Error::internal(format!("cannot encode the image: {e}")))?;
    Ok(out.into_inner())
}

/// Largest side of an uploaded image (or mask), in pixels; a larger one is refused from its
/// header, before it is decoded.
pub const MAX_UPLOAD_SIDE: usize = 4096;

/// Decodes an uploaded image (PNG, JPEG, WebP) to RGB floats in [0, 1], resized (Lanczos, as
/// PIL's default for diffusers' preprocessing) to `width x height` when given, else to its own
/// size rounded down to a multiple of `multiple`. 400 when it is not an image.
pub fn decode(
    bytes: &[u8],
    size: Option<(usize, usize)>,
    multiple: usize,
) -> Result<(Vec<f32>, usize, usize)> {
    let unreadable = |e: image::ImageError| {
        Error::bad_request(format!("the uploaded image cannot be read: {e}"))
    };
    // Its size from the header first: a small file can claim a huge image.
    let (width, height) = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::bad_request(format!("the uploaded image cannot be read: {e}")))?
        .into_dimensions()
        .map_err(unreadable)?;
    if width as usize > MAX_UPLOAD_SIDE || height as usize > MAX_UPLOAD_SIDE {
        return Err(Error::bad_request(format!(
            "the uploaded image is {width}x{height} pixels; at most {MAX_UPLOAD_SIDE} a side is accepted"
        )));
    }
    let img = image::load_from_memory(bytes)
        .map_err(unreadable)?
        .to_rgb8();
    let (w, h) = match size {
        Some(s) => s,
        None => {
            let m = multiple.max(1) as u32;
            (
                (img.width() / m * m) as usize,
                (img.height() / m * m) as usize,
            )
        }
    };
    if w == 0 || h == 0 {
        return Err(Error::bad_request(format!(
            "the uploaded image is smaller than {multiple} pixels"
        )));
    }
    let img = if (w as u32, h as u32) != img.dimensions() {
        image::imageops::resize(
            &img,
            w as u32,
            h as u32,
            image::imageops::FilterType::Lanczos3,
        )
    } else {
        img
    };
    let pixels = img
        .into_raw()
        .into_iter()
        .map(|b| f32::from(b) / 255.0)
        .collect();
    Ok((pixels, w, h))
}

/// 400 unless `mask` is an image of the same width and height as `image` (inpainting).
pub fn check_same_size(image: &[u8], mask: &[u8]) -> Result<()> {
    let dims = |bytes: &[u8], what: &str| {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .ok()
            .and_then(|r| r.into_dimensions().ok())
            .ok_or_else(|| Error::bad_request(format!("the uploaded {what} cannot be read")))
    };
    let (a, b) = (dims(image, "image")?, dims(mask, "mask_image")?);
    if a != b {
        return Err(Error::bad_request(format!(
            "mask_image is {}x{} but the image is {}x{}; they must be the same size",
            b.0, b.1, a.0, a.1
        )));
    }
    Ok(())
}

/// Decodes an inpainting mask to grey levels in [0, 1] (`height x width`), as diffusers'
/// mask processor: PIL's `convert("L")` (ITU-R 601-2 luma, PIL's rounding), then resized
/// (Lanczos) to `width x height` when its size differs. 400 when it is not an image.
pub fn decode_mask(bytes: &[u8], width: usize, height: usize) -> Result<Vec<f32>> {
    let img = image::load_from_memory(bytes)
        .map_err(|e| Error::bad_request(format!("the uploaded mask_image cannot be read: {e}")))?;
    let grey = match img {
        image::DynamicImage::ImageLuma8(g) => g,
        other => {
            let rgb = other.to_rgb8();
            let (w, h) = rgb.dimensions();
            image::GrayImage::from_fn(w, h, |x, y| {
                let [r, g, b] = rgb.get_pixel(x, y).0.map(u32::from);
                image::Luma([((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8])
            })
        }
    };
    let grey = if grey.dimensions() != (width as u32, height as u32) {
        image::imageops::resize(
            &grey,
            width as u32,
            height as u32,
            image::imageops::FilterType::Lanczos3,
        )
    } else {
        grey
    };
    Ok(grey
        .into_raw()
        .into_iter()
        .map(|b| f32::from(b) / 255.0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: image::DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn an_upload_larger_than_the_limit_is_refused_from_its_header() {
        let wide = png(image::DynamicImage::new_luma8(
            MAX_UPLOAD_SIDE as u32 + 1,
            1,
        ));
        let e = decode(&wide, None, 8).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::BadRequest);
        assert!(e.message().contains("at most 4096"), "{e}");
        let ok = png(image::DynamicImage::new_rgb8(16, 8));
        assert_eq!(decode(&ok, None, 8).unwrap().1, 16);
        assert!(decode(b"not an image", None, 8).is_err());
    }

    #[test]
    fn masks_turn_grey_as_pil_does_and_must_match_the_image_size() {
        // PIL: L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16.
        let rgb = image::RgbImage::from_pixel(2, 1, image::Rgb([200, 100, 50]));
        let mask = png(image::DynamicImage::ImageRgb8(rgb));
        let grey = decode_mask(&mask, 2, 1).unwrap();
        let expected = ((200 * 19595 + 100 * 38470 + 50 * 7471 + 0x8000) >> 16) as f32 / 255.0;
        assert_eq!(grey, vec![expected; 2]);
        let image = png(image::DynamicImage::ImageRgb8(image::RgbImage::new(2, 1)));
        let other = png(image::DynamicImage::ImageLuma8(image::GrayImage::new(1, 2)));
        assert!(check_same_size(&image, &mask).is_ok());
        assert_eq!(
            check_same_size(&image, &other)
                .unwrap_err()
                .kind()
                .http_status(),
            400
        );
        assert!(decode_mask(b"not an image", 2, 1).is_err());
    }
}
