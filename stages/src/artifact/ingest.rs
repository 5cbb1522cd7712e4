//! An image set from image files, for the file-reading data kinds: decode a list of found
//! files (in parallel, `job.threads` workers, order kept), resize them, stream them into
//! the set and report progress.

use super::{invalid, ImageSetWriter, Manifest, DEFAULT_SHARD_SIZE};
use crate::data::folder::FoundImage;
use crate::data::image_file::load_square;
use histodiff_engine::stage::{StageContext, StageError};

/// Files decoded together; bounds memory while keeping every worker busy.
const CHUNK: usize = 256;

/// Decodes `found` into a new image set at output `output`; `source_prefix` is prepended
/// to each relative path in the manifest (e.g. the root as written in the pipeline).
pub fn ingest_files(
    ctx: &mut StageContext,
    output: &str,
    found: &[(String, FoundImage)],
    classes: Vec<String>,
    size: usize,
) -> Result<Manifest, StageError> {
    let dir = ctx.output_path(output);
    let mut writer =
        ImageSetWriter::create(&dir, classes, size, DEFAULT_SHARD_SIZE).map_err(invalid)?;
    let threads = ctx.job.threads.max(1);
    let total = found.len() as u64;
    let every = (found.len() / 100).max(1);
    for (chunk_index, chunk) in found.chunks(CHUNK).enumerate() {
        if ctx.interrupted() {
            return Err(StageError::msg(
                "interrupted while decoding images; run again to start over",
            ));
        }
        let decoded = decode_chunk(chunk, size as u32, threads)?;
        for (k, ((source, image), hwc)) in chunk.iter().zip(decoded).enumerate() {
            writer
                .push_hwc(&hwc, image.label, source.clone())
                .map_err(invalid)?;
            let done = chunk_index * CHUNK + k + 1;
            if done.is_multiple_of(every) || done == found.len() {
                ctx.progress(done as u64, total, None);
            }
        }
    }
    let manifest = writer.finish().map_err(invalid)?;
    ctx.log(format!(
        "{} images of {size}×{size} px written",
        manifest.count
    ));
    Ok(manifest)
}

/// Decodes a chunk with up to `threads` scoped workers; the first error (in file order) wins.
fn decode_chunk(
    chunk: &[(String, FoundImage)],
    size: u32,
    threads: usize,
) -> Result<Vec<Vec<u8>>, StageError> {
    let per_worker = chunk.len().div_ceil(threads);
    let results: Vec<Result<Vec<Vec<u8>>, StageError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunk
            .chunks(per_worker.max(1))
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(_, f)| load_square(&f.path, size).map_err(invalid))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(StageError::msg("image decoder thread panicked")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(chunk.len());
    for part in results {
        all.extend(part?);
    }
    Ok(all)
}
