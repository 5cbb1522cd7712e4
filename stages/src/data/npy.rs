//! A reader for NumPy `.npy` image arrays laid out as PanNuke's `images.npy`:
//! shape (N, H, W, 3), C order, any integer or float dtype, read one image at a time so
//! a multi-gigabyte float64 fold never sits in memory. Values are cast to uint8 the way
//! `array.astype(np.uint8)` does for in-range values (truncation toward zero); values
//! outside [0, 255] are clamped instead of wrapped. No crate is needed for this: the
//! format is a 10-byte preamble, a Python-literal header and raw data.

use super::DataError;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Element types accepted in `descr`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Elem {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F16,
    F32,
    F64,
}

impl Elem {
    fn parse(code: &str) -> Option<Elem> {
        Some(match code {
            "u1" => Elem::U8,
            "i1" => Elem::I8,
            "u2" => Elem::U16,
            "i2" => Elem::I16,
            "u4" => Elem::U32,
            "i4" => Elem::I32,
            "u8" => Elem::U64,
            "i8" => Elem::I64,
            "f2" => Elem::F16,
            "f4" => Elem::F32,
            "f8" => Elem::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Elem::U8 | Elem::I8 => 1,
            Elem::U16 | Elem::I16 | Elem::F16 => 2,
            Elem::U32 | Elem::I32 | Elem::F32 => 4,
            Elem::U64 | Elem::I64 | Elem::F64 => 8,
        }
    }
}

/// An opened `.npy` file of RGB images.
#[derive(Debug)]
pub struct NpyImages {
    path: PathBuf,
    file: File,
    elem: Elem,
    big_endian: bool,
    data_offset: u64,
    /// (N, H, W); the channel axis is always 3.
    pub count: usize,
    pub height: usize,
    pub width: usize,
}

fn npy_err(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Npy {
        file: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The value of `'key':` in a header dict literal, up to the next top-level comma.
fn header_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

fn parse_shape(text: &str) -> Option<Vec<usize>> {
    let inner = text.strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

impl NpyImages {
    /// Opens `path` and checks magic, version, dtype, order and shape (N, H, W, 3).
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let mut preamble = [0u8; 8];
        file.read_exact(&mut preamble)
            .map_err(|_| npy_err(path, "too short for a .npy file"))?;
        if &preamble[..6] != b"\x93NUMPY" {
            return Err(npy_err(
                path,
                "missing the \\x93NUMPY magic: not a .npy file",
            ));
        }
        let header_len = match preamble[6] {
            1 => {
                let mut b = [0u8; 2];
                file.read_exact(&mut b)
                    .map_err(|e| DataError::io(path, e))?;
                u16::from_le_bytes(b) as usize
            }
            2 | 3 => {
                let mut b = [0u8; 4];
                file.read_exact(&mut b)
                    .map_err(|e| DataError::io(path, e))?;
                u32::from_le_bytes(b) as usize
            }
            v => {
                return Err(npy_err(
                    path,
                    format!("unsupported .npy format version {v}"),
                ))
            }
        };
        let mut header = vec![0u8; header_len];
        file.read_exact(&mut header)
            .map_err(|_| npy_err(path, "header is truncated"))?;
        let data_offset = file.stream_position().map_err(|e| DataError::io(path, e))?;
        let header = String::from_utf8_lossy(&header).into_owned();
        Self::from_header(path, file, &header, data_offset)
    }

    fn from_header(
        path: &Path,
        file: File,
        header: &str,
        data_offset: u64,
    ) -> Result<Self, DataError> {
        let descr =
            header_value(header, "descr").ok_or_else(|| npy_err(path, "header has no 'descr'"))?;
        let descr = descr.trim_matches(|c| c == '\'' || c == '"');
        let (order, code) = descr.split_at(1.min(descr.len()));
        let elem = Elem::parse(code).filter(|_| matches!(order, "<" | ">" | "|" | "="));
        let elem = elem.ok_or_else(|| {
            npy_err(
                path,
                format!("dtype '{descr}' is not a numeric image dtype"),
            )
        })?;
        if header_value(header, "fortran_order") != Some("False") {
            return Err(npy_err(
                path,
                "Fortran-ordered arrays are not supported (save with C order)",
            ));
        }
        let shape_text =
            header_value(header, "shape").ok_or_else(|| npy_err(path, "header has no 'shape'"))?;
        let shape = parse_shape(shape_text)
            .ok_or_else(|| npy_err(path, format!("cannot parse shape {shape_text}")))?;
        if shape.len() != 4 || shape[3] != 3 {
            return Err(npy_err(
                path,
                format!("shape {shape:?}, expected (N, H, W, 3) RGB images"),
            ));
        }
        let images = NpyImages {
            path: path.to_path_buf(),
            file,
            elem,
            big_endian: order == ">",
            data_offset,
            count: shape[0],
            height: shape[1],
            width: shape[2],
        };
        let needed = data_offset + (images.count * images.image_bytes()) as u64;
        let actual = images
            .file
            .metadata()
            .map_err(|e| DataError::io(path, e))?
            .len();
        if actual < needed {
            return Err(npy_err(
                path,
                format!("file has {actual} bytes, shape {shape:?} needs {needed}: truncated"),
            ));
        }
        Ok(images)
    }

    fn image_bytes(&self) -> usize {
        self.height * self.width * 3 * self.elem.size()
    }

    /// Image `index` as HWC uint8 bytes.
    pub fn read_image(&mut self, index: usize) -> Result<Vec<u8>, DataError> {
        if index >= self.count {
            return Err(npy_err(
                &self.path,
                format!("image {index} is out of range (N = {})", self.count),
            ));
        }
        let n = self.image_bytes();
        let mut raw = vec![0u8; n];
        let offset = self.data_offset + (index * n) as u64;
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| DataError::io(&self.path, e))?;
        self.file
            .read_exact(&mut raw)
            .map_err(|e| DataError::io(&self.path, e))?;
        Ok(raw
            .chunks_exact(self.elem.size())
            .map(|b| to_u8(self.elem, self.big_endian, b))
            .collect())
    }
}

/// Truncates toward zero and clamps to [0, 255]; NaN becomes 0.
fn cast(v: f64) -> u8 {
    if v.is_nan() {
        0
    } else {
        v.clamp(0.0, 255.0) as u8
    }
}

fn to_u8(elem: Elem, big_endian: bool, b: &[u8]) -> u8 {
    let mut buf = [0u8; 8];
    buf[..b.len()].copy_from_slice(b);
    if big_endian {
        buf[..b.len()].reverse();
    }
    let v = match elem {
        Elem::U8 => return b[0],
        Elem::I8 => b[0] as i8 as f64,
        Elem::U16 => u16::from_le_bytes([buf[0], buf[1]]) as f64,
        Elem::I16 => i16::from_le_bytes([buf[0], buf[1]]) as f64,
        Elem::U32 => u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as f64,
        Elem::I32 => i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as f64,
        Elem::U64 => u64::from_le_bytes(buf) as f64,
        Elem::I64 => i64::from_le_bytes(buf) as f64,
        Elem::F16 => f16_to_f64(u16::from_le_bytes([buf[0], buf[1]])),
        Elem::F32 => f32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as f64,
        Elem::F64 => f64::from_le_bytes(buf),
    };
    cast(v)
}

/// IEEE half to double (no crate for one conversion).
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    match exp {
        0 => sign * frac * 2f64.powi(-24),
        31 => {
            if frac == 0.0 {
                sign * f64::INFINITY
            } else {
                f64::NAN
            }
        }
        _ => sign * (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}
