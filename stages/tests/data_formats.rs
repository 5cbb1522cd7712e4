//! Decoding real files written here: TIFF, PNG and JPEG through the image crate, `.npy`
//! from hand-made bytes and from numpy; resize/crop geometry; corrupt files named.

mod common;

use histodiff_stages::data::image_file::{fit_square, load_rgb, load_square};
use histodiff_stages::data::npy::NpyImages;
use image::{Rgb, RgbImage};
use std::path::Path;
use std::process::Command;

/// A 6×4 image whose pixel (x, y) is (40x, 60y, 200).
fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(40 * x) as u8, (60 * y) as u8, 200]))
}

#[test]
fn tiff_and_png_decode_losslessly() {
    let dir = common::temp_dir("formats");
    let img = gradient(6, 4);
    for name in ["a.tif", "b.png"] {
        let path = dir.path().join(name);
        img.save(&path).unwrap();
        assert_eq!(load_rgb(&path).unwrap(), img, "{name}");
    }
}

#[test]
fn jpeg_decodes_close_to_the_original() {
    let dir = common::temp_dir("formats");
    let img = RgbImage::from_pixel(16, 16, Rgb([180, 90, 140]));
    let path = dir.path().join("c.jpg");
    img.save(&path).unwrap();
    let back = load_rgb(&path).unwrap();
    let max_err = back
        .as_raw()
        .iter()
        .zip(img.as_raw())
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .max()
        .unwrap();
    eprintln!("jpeg max abs error on a flat image: {max_err} (tolerance 4)");
    assert!(max_err <= 4);
}

#[test]
fn format_is_detected_by_content_not_extension() {
    let dir = common::temp_dir("formats");
    let path = dir.path().join("really-a-png.tif");
    gradient(3, 3)
        .save_with_format(&path, image::ImageFormat::Png)
        .unwrap();
    assert_eq!(load_rgb(&path).unwrap(), gradient(3, 3));
}

#[test]
fn corrupt_and_truncated_files_are_named() {
    let dir = common::temp_dir("formats");
    let garbage = dir.path().join("ADI-0001.tif");
    std::fs::write(&garbage, b"this is not an image").unwrap();
    let err = load_rgb(&garbage).unwrap_err().to_string();
    assert!(err.contains("ADI-0001.tif"), "{err}");

    let png = dir.path().join("cut.png");
    gradient(32, 32).save(&png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    std::fs::write(&png, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_rgb(&png).unwrap_err().to_string();
    assert!(err.contains("cut.png"), "{err}");

    let err = load_rgb(&dir.path().join("absent.png"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.png"), "{err}");
}

#[test]
fn shortest_side_is_resized_then_centre_cropped() {
    // 8×4 → shortest side 2 ⇒ 4×2, centre crop 2×2 starts at x = 1.
    let img = RgbImage::from_fn(8, 4, |x, _| Rgb([(x * 30) as u8, 0, 0]));
    let out = fit_square(&img, 2);
    assert_eq!(out.dimensions(), (2, 2));
    // Same size: crop only, no resampling (224² CRC patches at 224 stay exact).
    let img = gradient(6, 4);
    let out = fit_square(&img, 4);
    assert_eq!(out, image::imageops::crop_imm(&img, 1, 0, 4, 4).to_image());
    // Upsampling a flat image stays flat.
    let flat = RgbImage::from_pixel(5, 7, Rgb([10, 20, 30]));
    assert!(fit_square(&flat, 9)
        .pixels()
        .all(|p| *p == Rgb([10, 20, 30])));
}

/// Writes a version-1 `.npy` header for `descr` and `shape` followed by `data`.
fn write_npy(path: &Path, descr: &str, shape: &str, data: &[u8]) {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn hand_made_npy_in_uint8_and_float64() {
    let dir = common::temp_dir("npy");
    let values: Vec<u8> = (0..2 * 2 * 3 * 3).map(|i| (i * 7) as u8).collect();
    let u8_path = dir.path().join("u8.npy");
    write_npy(&u8_path, "|u1", "(2, 2, 3, 3)", &values);
    let f64_path = dir.path().join("f64.npy");
    let floats: Vec<u8> = values
        .iter()
        .flat_map(|&v| (v as f64 + 0.7).to_le_bytes())
        .collect();
    write_npy(&f64_path, "<f8", "(2, 2, 3, 3)", &floats);
    for path in [&u8_path, &f64_path] {
        let mut a = NpyImages::open(path).unwrap();
        assert_eq!((a.count, a.height, a.width), (2, 2, 3));
        // float 0.7 above each value truncates back to the value, as astype(uint8).
        assert_eq!(
            a.read_image(1).unwrap(),
            values[18..].to_vec(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn bad_npy_files_are_named() {
    let dir = common::temp_dir("npy");
    let cases: [(&str, &str, &str, usize); 4] = [
        ("gray.npy", "|u1", "(1, 2, 2)", 4),
        ("short.npy", "|u1", "(4, 2, 2, 3)", 12),
        ("complex.npy", "<c8", "(1, 1, 1, 3)", 24),
        ("rgba.npy", "|u1", "(1, 1, 1, 4)", 4),
    ];
    for (name, descr, shape, len) in cases {
        let path = dir.path().join(name);
        write_npy(&path, descr, shape, &vec![0u8; len]);
        let err = NpyImages::open(&path).unwrap_err().to_string();
        assert!(err.contains(name), "{err}");
    }
    let path = dir.path().join("text.npy");
    std::fs::write(&path, "not numpy at all").unwrap();
    let err = NpyImages::open(&path).unwrap_err().to_string();
    assert!(err.contains("text.npy") && err.contains("magic"), "{err}");
}

/// numpy itself writes the file; the venv is part of the test environment (scripts/env.sh).
#[test]
fn npy_written_by_numpy_matches() {
    let python = std::env::var("HISTODIFF_VENV")
        .map(|v| format!("{v}/bin/python"))
        .unwrap_or_else(|_| "/work/main/.venv/bin/python".into());
    let dir = common::temp_dir("npy");
    let script = "import numpy as np, sys\n\
        a = (np.arange(3*5*4*3) % 256).reshape(3, 5, 4, 3)\n\
        np.save(sys.argv[1] + '/f32.npy', a.astype(np.float32))\n\
        np.save(sys.argv[1] + '/f16.npy', a.astype(np.float16))\n\
        np.save(sys.argv[1] + '/i64.npy', a.astype(np.int64))\n\
        np.save(sys.argv[1] + '/be.npy', a.astype('>u2'))\n";
    let status = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .status()
        .unwrap_or_else(|e| panic!("{python}: {e}"));
    assert!(status.success(), "numpy failed to write fixtures");
    let expected: Vec<u8> = (5 * 4 * 3..2 * 5 * 4 * 3)
        .map(|i| (i % 256) as u8)
        .collect();
    for name in ["f32.npy", "f16.npy", "i64.npy", "be.npy"] {
        let mut a = NpyImages::open(&dir.path().join(name)).unwrap();
        assert_eq!((a.count, a.height, a.width), (3, 5, 4), "{name}");
        assert_eq!(a.read_image(1).unwrap(), expected, "{name}");
    }
}

#[test]
fn load_square_resizes_a_224_tiff_to_32() {
    let dir = common::temp_dir("formats");
    let path = dir.path().join("p.tif");
    RgbImage::from_pixel(224, 224, Rgb([200, 100, 150]))
        .save(&path)
        .unwrap();
    let hwc = load_square(&path, 32).unwrap();
    assert_eq!(hwc.len(), 32 * 32 * 3);
    assert!(hwc.chunks(3).all(|p| p == [200, 100, 150]));
}
