//! Vision preprocessing: `{"image": "<base64 PNG or JPEG>", "top_k": k}` → a normalized
//! `[1, C, H, W]` FP32 tensor (and how many ranked classes the reply lists).

use base64::Engine as _;
use image::{DynamicImage, ImageReader, Limits};
use jpeg_decoder::{CodingProcess, Decoder, ImageInfo, PixelFormat};
use serde_json::Value;

use crate::spec::{Channels, VisionSpec};
use crate::tabular::json_type;
use crate::tensor::{Tensor, TensorData};
use ember_contract::{ApiError, Code};

/// Largest accepted image side, in pixels, before resizing.
pub const MAX_IMAGE_SIDE: u32 = 8192;
/// Largest decoder allocation, in bytes: bounds decompression bombs.
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// The fields a vision request may carry.
const FIELDS: [&str; 2] = ["image", "top_k"];

/// How many ranked classes the reply lists: the request's `top_k` (1 to the number of `labels`),
/// else the model's default.
pub fn top_k(spec: &VisionSpec, labels: usize, body: &Value) -> Result<usize, ApiError> {
    let Some(value) = body.get("top_k") else {
        return Ok(spec.top_k.min(labels));
    };
    let k = match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => n.as_i64().unwrap_or(i64::MAX),
        Value::Number(_) => {
            return Err(ApiError::invalid(
                Code::NotAnInteger,
                "top_k",
                format!("field 'top_k' must be a whole number, got {value}"),
            ))
        }
        other => {
            return Err(ApiError::invalid(
                Code::WrongType,
                "top_k",
                format!("field 'top_k' must be a number, got {}", json_type(other)),
            ))
        }
    };
    if k < 1 || k > labels as i64 {
        return Err(ApiError::invalid(
            Code::OutOfRange,
            "top_k",
            format!("field 'top_k' must be between 1 and {labels}, got {k}"),
        ));
    }
    Ok(k as usize)
}

/// Decodes, converts, resizes and normalizes the request's image for the model.
pub fn to_tensor(spec: &VisionSpec, body: &Value) -> Result<Tensor, ApiError> {
    let object = body.as_object().ok_or_else(|| {
        ApiError::invalid(
            Code::NotAnObject,
            "$",
            "the body must be a JSON object {\"image\": \"<base64 PNG or JPEG>\"}",
        )
    })?;
    if let Some(key) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            Code::UnknownField,
            key.as_str(),
            format!("unknown field '{key}'; a vision request carries only 'image' and 'top_k'"),
        ));
    }
    let encoded = match object.get("image") {
        None => {
            return Err(ApiError::invalid(
                Code::MissingField,
                "image",
                "field 'image' (base64 PNG or JPEG) is missing",
            ))
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(ApiError::invalid(
                Code::WrongType,
                "image",
                format!(
                    "field 'image' must be a base64 string, got {}",
                    json_type(other)
                ),
            ))
        }
    };
    let bytes = decode_base64(encoded)?;
    let image = decode_image(spec, &bytes)?;
    normalize(spec, image)
}

fn decode_base64(encoded: &str) -> Result<Vec<u8>, ApiError> {
    // Accept data URLs ("data:image/png;base64,...") as browsers produce them. Only a data URL
    // is searched for its marker: a plain payload is tens of kilobytes of base64.
    let payload = match encoded.strip_prefix("data:") {
        Some(url) => url.split_once(";base64,").map_or(encoded, |(_, rest)| rest),
        None => encoded,
    };
    base64::engine::general_purpose::STANDARD
        .decode(payload.trim())
        .map_err(|e| {
            ApiError::invalid(
                Code::BadBase64,
                "image",
                format!("field 'image' is not valid base64: {e}"),
            )
        })
}

fn not_an_image(detail: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(
        Code::NotAnImage,
        "image",
        format!("field 'image' is not a PNG or JPEG image: {detail}"),
    )
}

fn too_large() -> ApiError {
    ApiError::invalid(
        Code::ImageTooLarge,
        "image",
        format!("field 'image' exceeds {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels or the decode memory limit"),
    )
}

/// The request's image, decoded: a large JPEG at a reduced DCT scale ([`jpeg_scale`]), anything
/// else whole.
fn decode_image(spec: &VisionSpec, bytes: &[u8]) -> Result<DynamicImage, ApiError> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(not_an_image)?;
    match reader.format() {
        Some(image::ImageFormat::Jpeg) => decode_jpeg(spec, bytes),
        Some(image::ImageFormat::Png) => decode_png(reader),
        _ => Err(not_an_image("unrecognized format")),
    }
}

fn decode_png(mut reader: ImageReader<std::io::Cursor<&[u8]>>) -> Result<DynamicImage, ApiError> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => too_large(),
        other => not_an_image(other),
    })
}

fn decode_jpeg(spec: &VisionSpec, bytes: &[u8]) -> Result<DynamicImage, ApiError> {
    let mut decoder = Decoder::new(bytes);
    decoder.read_info().map_err(not_an_image)?;
    let info = decoder
        .info()
        .ok_or_else(|| not_an_image("no frame header"))?;
    let full = (u32::from(info.width), u32::from(info.height));
    if full.0.max(full.1) > MAX_IMAGE_SIDE {
        return Err(too_large());
    }
    // Only the DCT scales: a lossless JPEG decodes whole.
    let k = match info.coding_process {
        CodingProcess::Lossless => 1,
        _ => jpeg_scale(spec, full),
    };
    let (width, height) = decoder
        .scale(full.0.div_ceil(k) as u16, full.1.div_ceil(k) as u16)
        .map_err(not_an_image)?;
    let (width, height) = (u32::from(width), u32::from(height));
    if jpeg_decode_bytes(&info, full, (width, height)) > MAX_DECODE_BYTES {
        return Err(too_large());
    }
    let pixels = decoder.decode().map_err(not_an_image)?;
    let image = match info.pixel_format {
        PixelFormat::L8 => {
            image::GrayImage::from_raw(width, height, pixels).map(DynamicImage::from)
        }
        PixelFormat::L16 => {
            let wide = pixels
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .collect();
            image::ImageBuffer::<image::Luma<u16>, _>::from_raw(width, height, wide)
                .map(DynamicImage::from)
        }
        PixelFormat::RGB24 => {
            image::RgbImage::from_raw(width, height, pixels).map(DynamicImage::from)
        }
        PixelFormat::CMYK32 => {
            image::RgbImage::from_raw(width, height, cmyk_to_rgb(&pixels)).map(DynamicImage::from)
        }
    };
    image.ok_or_else(|| not_an_image("the decoded pixels do not fill the frame"))
}

/// How many times the model's resize target a JPEG's sides stay when decoded at a reduced scale
/// (Pillow's `reducing_gap` for `draft`): the resize then still shrinks by 2x or more and
/// antialiases over what the DCT scaling left, so the tensor stays close to a full decode's.
const REDUCING_GAP: u32 = 2;

/// The JPEG scale denominator to decode at: the largest of 8, 4, 2 and 1 that keeps both sides at
/// least [`REDUCING_GAP`] times what the model's resize goes to (the shorter side's target on
/// both, or the model's size). A 4032 x 3024 photo for a 256-pixel shorter side decodes at 1/4.
fn jpeg_scale(spec: &VisionSpec, (width, height): (u32, u32)) -> u32 {
    let (need_w, need_h) = match spec.shorter_side {
        Some(side) => (side, side),
        None => (spec.width, spec.height),
    };
    let (need_w, need_h) = (need_w * REDUCING_GAP, need_h * REDUCING_GAP);
    [8, 4, 2]
        .into_iter()
        .find(|k| width.div_ceil(*k) >= need_w && height.div_ceil(*k) >= need_h)
        .unwrap_or(1)
}

/// What decoding a JPEG allocates, at most: its component planes and the interleaved output at
/// the decoded size, and, for a progressive JPEG, every component's coefficients (two bytes a
/// pixel) at full size, kept until the last scan. Checked before decoding, so a small file that
/// declares a huge progressive image is refused instead of exhausting the instance's memory.
fn jpeg_decode_bytes(
    info: &ImageInfo,
    (full_w, full_h): (u32, u32),
    (width, height): (u32, u32),
) -> u64 {
    let components = info.pixel_format.pixel_bytes() as u64;
    let decoded = 2 * components * u64::from(width) * u64::from(height);
    let coefficients = match info.coding_process {
        CodingProcess::DctProgressive => {
            2 * components * u64::from(full_w.next_multiple_of(16) * full_h.next_multiple_of(16))
        }
        _ => 0,
    };
    decoded + coefficients
}

/// RGB of the inks `jpeg-decoder` hands over for a CMYK or YCCK JPEG: each colour's `255 - ink`,
/// darkened by the black's (`image` 0.24's conversion, from the same decoder).
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    cmyk.chunks_exact(4)
        .flat_map(|p| {
            let light = 255 - u16::from(p[3]);
            [0, 1, 2].map(|i| ((255 - u16::from(p[i])) * light / 255) as u8)
        })
        .collect()
}

/// The image's pixels (`channels` bytes each) at the model's size: its shorter side resized to
/// `shorter_side` and the centre cropped when the model declares one, else stretched. Bilinear,
/// antialiased when shrinking (Pillow's `BILINEAR`).
///
/// Only the crop is resampled: the crop's box in the source, at the full resize's scale, goes to
/// the model's size in one pass. Each output pixel has the same centre and filter weights as in
/// resize-then-crop (the filter still reads source pixels outside the box), at half the work for
/// a 4:3 photo.
fn fit(spec: &VisionSpec, pixels: Vec<u8>, (iw, ih): (u32, u32)) -> Result<Vec<u8>, ApiError> {
    let (w, h) = (spec.width, spec.height);
    let (rw, rh) = resized_size(spec, (iw, ih));
    let (left, top) = ((rw - w) / 2, (rh - h) / 2);
    if (rw, rh) == (iw, ih) {
        return Ok(crop(pixels, iw, (left, top), (w, h), spec.channels.count()));
    }
    let (sx, sy) = (iw as f64 / rw as f64, ih as f64 / rh as f64);
    let source_box = [
        left as f64 * sx,
        top as f64 * sy,
        w as f64 * sx,
        h as f64 * sy,
    ];
    resize(pixels, (iw, ih), source_box, (w, h), spec.channels).ok_or_else(|| {
        ApiError::invalid(Code::NotAnImage, "image", "the image could not be resized")
    })
}

/// The size an `iw` x `ih` image is resized to before its centre is cropped: its shorter side at
/// `shorter_side`, its aspect ratio kept; the model's size when it declares no shorter side.
fn resized_size(spec: &VisionSpec, (iw, ih): (u32, u32)) -> (u32, u32) {
    let Some(side) = spec.shorter_side else {
        return (spec.width, spec.height);
    };
    let scale = side as f64 / iw.min(ih) as f64;
    if iw <= ih {
        (side, ((ih as f64 * scale).round() as u32).max(side))
    } else {
        (((iw as f64 * scale).round() as u32).max(side), side)
    }
}

/// The `size` window at `origin` of an image `width` pixels wide.
fn crop(
    pixels: Vec<u8>,
    width: u32,
    origin: (u32, u32),
    size: (u32, u32),
    channels: usize,
) -> Vec<u8> {
    let (row, kept) = (width as usize * channels, size.0 as usize * channels);
    let left = origin.0 as usize * channels;
    let mut cropped = Vec::with_capacity(kept * size.1 as usize);
    for line in pixels
        .chunks_exact(row)
        .skip(origin.1 as usize)
        .take(size.1 as usize)
    {
        cropped.extend_from_slice(&line[left..left + kept]);
    }
    cropped
}

/// Resamples the source's `[left, top, width, height]` box (fractional pixels) to `to`.
fn resize(
    pixels: Vec<u8>,
    from: (u32, u32),
    [left, top, width, height]: [f64; 4],
    to: (u32, u32),
    channels: Channels,
) -> Option<Vec<u8>> {
    use fast_image_resize::images::Image;
    use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let kind = match channels {
        Channels::Grayscale => PixelType::U8,
        Channels::Rgb => PixelType::U8x3,
    };
    let source = Image::from_vec_u8(from.0, from.1, pixels, kind).ok()?;
    let mut target = Image::new(to.0, to.1, kind);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .crop(left, top, width, height);
    Resizer::new().resize(&source, &mut target, &options).ok()?;
    Some(target.into_vec())
}

/// `pixel / 255` (inverted if declared), fitted to the model's size, then `(x - mean) / std`,
/// laid out channel-first.
fn normalize(spec: &VisionSpec, image: DynamicImage) -> Result<Tensor, ApiError> {
    let (w, h) = (spec.width, spec.height);
    let channels = spec.channels.count();
    let plane = (w * h) as usize;
    let mut data = vec![0f32; channels * plane];
    let size = (image.width(), image.height());
    let pixels = match spec.channels {
        Channels::Grayscale => image.into_luma8().into_raw(),
        Channels::Rgb => image.into_rgb8().into_raw(),
    };
    let pixels = fit(spec, pixels, size)?;
    // Each channel's 256 possible values, normalized once: a lookup per pixel instead of a
    // division (bit for bit the same values).
    let normalized: Vec<[f32; 256]> = (0..channels)
        .map(|c| {
            std::array::from_fn(|px| {
                let mut x = px as f32 / 255.0;
                if spec.invert {
                    x = 1.0 - x;
                }
                (x - spec.mean[c]) / spec.std[c]
            })
        })
        .collect();
    for (c, (out, table)) in data.chunks_exact_mut(plane).zip(&normalized).enumerate() {
        for (x, pixel) in out.iter_mut().zip(pixels.chunks_exact(channels)) {
            *x = table[pixel[c] as usize];
        }
    }
    Ok(Tensor {
        name: spec.input.clone(),
        shape: vec![1, channels, h as usize, w as usize],
        data: TensorData::F32(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imagenet() -> VisionSpec {
        VisionSpec {
            input: "input".into(),
            width: 224,
            height: 224,
            shorter_side: Some(256),
            channels: Channels::Rgb,
            invert: false,
            mean: vec![0.5; 3],
            std: vec![0.5; 3],
            top_k: 5,
        }
    }

    /// An RGB image with detail at every scale, so that any shift of a filter window shows.
    fn textured(width: u32, height: u32) -> Vec<u8> {
        (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .flat_map(|(x, y)| {
                let wave = ((x * 7 + y * 13) % 251) as u8;
                [wave, (x ^ y) as u8, ((x * y) % 256) as u8]
            })
            .collect()
    }

    /// The model's input as resize-then-crop computes it: the whole image to the shorter side,
    /// then the centre window.
    fn resize_then_crop(spec: &VisionSpec, pixels: Vec<u8>, (iw, ih): (u32, u32)) -> Vec<u8> {
        let (rw, rh) = resized_size(spec, (iw, ih));
        let whole = [0.0, 0.0, iw as f64, ih as f64];
        let resized = resize(pixels, (iw, ih), whole, (rw, rh), spec.channels).unwrap();
        let origin = ((rw - spec.width) / 2, (rh - spec.height) / 2);
        crop(resized, rw, origin, (spec.width, spec.height), 3)
    }

    #[test]
    fn a_jpeg_decodes_at_the_smallest_scale_twice_the_resize_target() {
        let imagenet = imagenet();
        for (size, k) in [
            ((4032, 3024), 4),
            ((4096, 4096), 8),
            ((1024, 1024), 2),
            ((1023, 1024), 2),
            ((1022, 1024), 1),
            ((512, 512), 1),
            ((451, 300), 1),
            ((8000, 300), 1),
        ] {
            assert_eq!(jpeg_scale(&imagenet, size), k, "{size:?}");
        }
        let stretched = VisionSpec {
            shorter_side: None,
            width: 8,
            height: 8,
            ..imagenet
        };
        assert_eq!(jpeg_scale(&stretched, (200, 100)), 4);
        assert_eq!(jpeg_scale(&stretched, (16, 16)), 1);
    }

    #[test]
    fn resampling_only_the_crop_gives_the_pixels_of_resize_then_crop() {
        let spec = imagenet();
        for size in [
            (451, 300),
            (300, 451),
            (1000, 257),
            (640, 480),
            (64, 48),
            (257, 256),
        ] {
            let pixels = textured(size.0, size.1);
            let expected = resize_then_crop(&spec, pixels.clone(), size);
            let actual = fit(&spec, pixels, size).unwrap();
            assert_eq!(actual.len(), expected.len(), "{size:?}");
            // The same windows and weights; the box's scale is computed from the crop rather than
            // the whole image, so a weight may differ in its last bit and round a channel by one.
            let worst = actual
                .iter()
                .zip(&expected)
                .map(|(a, e)| a.abs_diff(*e))
                .max();
            assert!(worst <= Some(1), "{size:?}: a channel differs by {worst:?}");
        }
    }
}
