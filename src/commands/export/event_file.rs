//! TensorBoard event files, encoded by hand: a TFRecord stream of `Event` protocol
//! buffers. Only five fields are ever written, so a protobuf library would add more than
//! it saves:
//!
//! ```text
//! Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//! Summary { repeated Value value = 1; }
//! Value   { string tag = 1; float simple_value = 2; }
//! ```
//!
//! Each record is framed as TFRecord: the data length (u64, little-endian), the masked
//! CRC-32C of those 8 bytes (u32 LE), the data, the masked CRC-32C of the data (u32 LE).

/// The `file_version` TensorBoard expects in a file's first event.
pub const FILE_VERSION: &str = "brain.Event:2";

/// One TFRecord holding `data`.
pub fn record(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&length);
    out.extend_from_slice(&masked_crc(&length).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// TFRecord's mask over CRC-32C (Castagnoli): rotate right by 15, add a constant.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// The first event of a file: its version.
pub fn file_version_event(wall_time: f64) -> Vec<u8> {
    let mut event = Vec::new();
    put_double(&mut event, 1, wall_time);
    put_bytes(&mut event, 3, FILE_VERSION.as_bytes());
    event
}

/// An event with one scalar summary value per `(tag, value)`, all at `step`.
pub fn scalars_event(wall_time: f64, step: u64, values: &[(String, f32)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, value) in values {
        let mut v = Vec::new();
        put_bytes(&mut v, 1, tag.as_bytes());
        put_key(&mut v, 2, WIRE_FIXED32);
        v.extend_from_slice(&value.to_le_bytes());
        put_bytes(&mut summary, 1, &v);
    }
    let mut event = Vec::new();
    put_double(&mut event, 1, wall_time);
    put_key(&mut event, 2, WIRE_VARINT);
    put_varint(&mut event, step);
    put_bytes(&mut event, 5, &summary);
    event
}

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_BYTES: u64 = 2;
const WIRE_FIXED32: u64 = 5;

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, (field << 3) | wire);
}

fn put_double(out: &mut Vec<u8>, field: u64, value: f64) {
    put_key(out, field, WIRE_FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

/// A length-delimited field: a string, bytes or an embedded message.
fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, WIRE_BYTES);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_event_is_encoded_field_by_field() {
        let mut expected = vec![0x09];
        expected.extend_from_slice(&1.5f64.to_le_bytes());
        expected.extend_from_slice(&[0x1a, 13]);
        expected.extend_from_slice(b"brain.Event:2");
        assert_eq!(file_version_event(1.5), expected);
    }

    #[test]
    fn a_scalar_event_nests_summary_and_value() {
        let event = scalars_event(0.0, 300, &[("loss".to_string(), 0.25)]);
        let value: Vec<u8> = [&[0x0a, 4][..], b"loss", &[0x15], &0.25f32.to_le_bytes()].concat();
        let summary: Vec<u8> = [&[0x0a, value.len() as u8][..], &value].concat();
        let mut expected = vec![0x09];
        expected.extend_from_slice(&0.0f64.to_le_bytes());
        expected.extend_from_slice(&[0x10, 0xac, 0x02]); // step 300 as a varint
        expected.extend_from_slice(&[0x2a, summary.len() as u8]);
        expected.extend_from_slice(&summary);
        assert_eq!(event, expected);
    }

    #[test]
    fn records_are_framed_with_masked_crc32c() {
        // CRC-32C of "123456789" is 0xE3069283 (the standard check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let masked = 0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8);
        let framed = record(b"123456789");
        assert_eq!(&framed[..8], &9u64.to_le_bytes());
        assert_eq!(
            &framed[8..12],
            &masked_crc(&9u64.to_le_bytes()).to_le_bytes()
        );
        assert_eq!(&framed[12..21], b"123456789");
        assert_eq!(&framed[21..], &masked.to_le_bytes());
    }
}
