//! Streaming an image set instead of loading it: random-access reads give the bytes that
//! `load_all` gives, the batch loader gives the batches of `DataOrder` whatever the start
//! step and the prefetch depth, broken shards are errors that name the file, and a
//! dropped loader stops at once.

use histodiff_stages::artifact::{ImageBatch, ImageSet, ImageSetWriter, RandomAccess};
use histodiff_stages::train::data_order::DataOrder;
use histodiff_stages::train::loader::{BatchLoader, LoadedBatch, LoaderError};
use std::path::Path;
use std::time::Duration;

const SIZE: usize = 4;
/// Small shards so that batches cross shard boundaries.
const SHARD: usize = 7;
/// 30 images: shards of 7, 7, 7, 7 and 2.
const COUNT: usize = 30;
const SEED: u64 = 11;

fn image(k: usize) -> Vec<u8> {
    (0..3 * SIZE * SIZE)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add((k * 7) as u8))
        .collect()
}

fn write_set(dir: &Path, labeled: bool) -> ImageSet {
    let classes = if labeled {
        vec!["a".into(), "b".into(), "c".into()]
    } else {
        vec![]
    };
    let mut w = ImageSetWriter::create(dir, classes, SIZE, SHARD).unwrap();
    for k in 0..COUNT {
        let label = labeled.then_some((k % 3) as i64);
        w.push_chw(&image(k), label, format!("img{k}.png")).unwrap();
    }
    w.finish().unwrap();
    ImageSet::open(dir).unwrap()
}

/// A set in a fresh temporary directory (kept alive by the returned guard).
fn temp_set(labeled: bool) -> (tempfile::TempDir, ImageSet) {
    let dir = tempfile::Builder::new()
        .prefix("histodiff-streaming-")
        .tempdir()
        .unwrap();
    let set = write_set(dir.path(), labeled);
    (dir, set)
}

/// What `indices` select from the whole set in memory.
fn gather(all: &ImageBatch, indices: &[usize]) -> ImageBatch {
    ImageBatch {
        image_size: all.image_size,
        images: indices
            .iter()
            .flat_map(|&i| all.image(i).to_vec())
            .collect(),
        labels: all
            .labels
            .as_ref()
            .map(|l| indices.iter().map(|&i| l[i]).collect()),
    }
}

/// A loaded batch back as bytes, checking its tensor shapes and kinds on the way.
fn to_batch(loaded: &LoadedBatch) -> ImageBatch {
    let n = loaded.images.size()[0];
    assert_eq!(loaded.images.size(), vec![n, 3, SIZE as i64, SIZE as i64]);
    assert_eq!(loaded.images.kind(), tch::Kind::Uint8);
    let labels = loaded.labels.as_ref().map(|l| {
        assert_eq!((l.size(), l.kind()), (vec![n], tch::Kind::Int64));
        Vec::<i64>::try_from(l).unwrap()
    });
    ImageBatch {
        image_size: SIZE,
        images: Vec::<u8>::try_from(loaded.images.flatten(0, -1)).unwrap(),
        labels,
    }
}

fn loader(
    set: &ImageSet,
    order: DataOrder,
    steps: std::ops::Range<u64>,
    depth: usize,
) -> BatchLoader {
    BatchLoader::start(RandomAccess::open(set).unwrap(), order, steps, depth).unwrap()
}

/// The batches of `steps` as the loader gives them.
fn stream(
    set: &ImageSet,
    order: DataOrder,
    steps: std::ops::Range<u64>,
    depth: usize,
) -> Vec<ImageBatch> {
    let mut l = loader(set, order, steps.clone(), depth);
    steps.map(|s| to_batch(&l.next(s).unwrap())).collect()
}

/// The batches of `steps` gathered from the set in memory.
fn expected(set: &ImageSet, mut order: DataOrder, steps: std::ops::Range<u64>) -> Vec<ImageBatch> {
    let all = set.load_all().unwrap();
    steps.map(|s| gather(&all, &order.batch(s))).collect()
}

#[test]
fn random_access_reads_equal_load_all_for_any_index_list() {
    for labeled in [true, false] {
        let (_dir, set) = temp_set(labeled);
        let all = set.load_all().unwrap();
        let reader = RandomAccess::open(&set).unwrap();
        assert_eq!(reader.len(), COUNT);
        assert_eq!(reader.labels().is_some(), labeled);
        let scrambled: Vec<usize> = (0..50).map(|k| (k * 17 + 3) % COUNT).collect();
        let lists: [Vec<usize>; 6] = [
            vec![],
            vec![0],
            vec![COUNT - 1],
            (0..COUNT).rev().collect(),
            vec![5, 5, 5, 20, 0, 20],
            scrambled,
        ];
        for indices in &lists {
            let got = reader.read(indices).unwrap();
            assert_eq!(
                got,
                gather(&all, indices),
                "labeled {labeled}, indices {indices:?}"
            );
        }
    }
}

#[test]
fn indices_map_to_shard_and_offset() {
    let (_dir, set) = temp_set(false);
    let reader = RandomAccess::open(&set).unwrap();
    let at = |i| reader.locate(i).map(|l| (l.shard, l.offset));
    assert_eq!(at(0), Some((0, 0)));
    assert_eq!(at(6), Some((0, 6)));
    assert_eq!(at(7), Some((1, 0)));
    assert_eq!(at(29), Some((4, 1)));
    assert_eq!(at(30), None);
    let err = reader.read(&[3, 30]).unwrap_err().to_string();
    assert!(
        err.contains("index 30") && err.contains("holds 30"),
        "{err}"
    );
}

#[test]
fn loader_gives_the_batches_of_data_order() {
    for labeled in [true, false] {
        let (_dir, set) = temp_set(labeled);
        // 3 steps per epoch: 10 steps cross epochs and reshuffles.
        let order = DataOrder::new(COUNT, 8, SEED);
        let want = expected(&set, order.clone(), 0..10);
        assert_eq!(stream(&set, order, 0..10, 2), want, "labeled {labeled}");
    }
}

#[test]
fn resumed_loader_gives_the_batches_of_an_uninterrupted_run() {
    let (_dir, set) = temp_set(true);
    let order = DataOrder::new(COUNT, 8, SEED);
    let uninterrupted = stream(&set, order.clone(), 0..10, 3);
    let resumed = stream(&set, order, 5..10, 3);
    assert_eq!(resumed, uninterrupted[5..]);
}

#[test]
fn prefetch_depth_does_not_change_the_batches() {
    let (_dir, set) = temp_set(true);
    let order = DataOrder::new(COUNT, 8, SEED);
    let shallow = stream(&set, order.clone(), 0..9, 1);
    let deep = stream(&set, order.clone(), 0..9, 4);
    assert_eq!(shallow, deep);
    assert_eq!(deep, expected(&set, order, 0..9));
}

#[test]
fn loader_keeps_the_partial_last_batch_when_asked() {
    let (_dir, set) = temp_set(true);
    let order = DataOrder::with_partial_last(COUNT, 8, SEED);
    let got = stream(&set, order.clone(), 0..8, 2);
    let sizes: Vec<usize> = got.iter().map(ImageBatch::len).collect();
    assert_eq!(sizes, vec![8, 8, 8, 6, 8, 8, 8, 6]);
    assert_eq!(got, expected(&set, order, 0..8));
}

#[test]
fn loader_counts_prepared_images() {
    let (_dir, set) = temp_set(false);
    let mut l = loader(&set, DataOrder::new(COUNT, 8, SEED), 0..4, 2);
    for s in 0..4 {
        l.next(s).unwrap();
    }
    let stats = l.stats();
    assert_eq!((stats.batches, stats.images), (4, 32));
    assert!(l.prepared_images_per_second().unwrap() > 0.0);
}

#[test]
fn steps_out_of_order_or_past_the_end_are_errors() {
    let (_dir, set) = temp_set(false);
    let mut l = loader(&set, DataOrder::new(COUNT, 8, SEED), 2..4, 2);
    assert!(matches!(
        l.next(3),
        Err(LoaderError::OutOfOrder { asked: 3, next: 2 })
    ));
    l.next(2).unwrap();
    l.next(3).unwrap();
    assert!(matches!(
        l.next(4),
        Err(LoaderError::PastEnd { asked: 4, end: 4 })
    ));
}

#[test]
fn a_data_order_of_another_size_is_refused() {
    let (_dir, set) = temp_set(false);
    let reader = RandomAccess::open(&set).unwrap();
    let err = BatchLoader::start(reader, DataOrder::new(10, 8, SEED), 0..1, 2).err();
    assert!(matches!(
        err,
        Some(LoaderError::SizeMismatch { order: 10, set: 30 })
    ));
}

/// Cuts the last `bytes` bytes off shard `index`.
fn truncate_shard(set: &ImageSet, index: usize, bytes: u64) -> String {
    let name = set.manifest().shards[index].file.clone();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(set.dir().join(&name))
        .unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - bytes).unwrap();
    name
}

#[test]
fn a_shard_truncated_before_opening_is_an_error_naming_it() {
    let (_dir, set) = temp_set(true);
    let name = truncate_shard(&set, 2, 10);
    let err = RandomAccess::open(&set).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains("truncated"), "{err}");
}

#[test]
fn a_shard_truncated_while_streaming_is_an_error_naming_it() {
    let (_dir, set) = temp_set(false);
    let reader = RandomAccess::open(&set).unwrap();
    // The images are a shard's last tensor: the cut hits image 6.
    let name = truncate_shard(&set, 0, 10);
    // One batch of the whole set touches every shard.
    let mut l = BatchLoader::start(reader, DataOrder::new(COUNT, COUNT, SEED), 0..3, 2).unwrap();
    let err = l.next(0).unwrap_err();
    assert!(matches!(err, LoaderError::Read { step: 0, .. }), "{err}");
    assert!(err.to_string().contains(&name), "{err}");
    assert!(matches!(l.next(1), Err(LoaderError::Died { step: 1 })));
}

#[test]
fn a_header_that_disagrees_with_the_manifest_is_an_error_naming_the_shard() {
    let (dir, set) = temp_set(false);
    let path = dir.path().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("\"image_size\": 4", "\"image_size\": 2");
    std::fs::write(&path, text).unwrap();
    let reopened = ImageSet::open(set.dir()).unwrap();
    let err = RandomAccess::open(&reopened).unwrap_err().to_string();
    assert!(err.contains("images-00000.safetensors"), "{err}");
    assert!(err.contains("[7, 3, 2, 2]"), "{err}");
}

#[test]
fn dropping_the_loader_mid_run_stops_its_thread() {
    let (_dir, set) = temp_set(true);
    let mut l = loader(&set, DataOrder::new(COUNT, 8, SEED), 0..1_000_000, 4);
    l.next(0).unwrap();
    l.next(1).unwrap();
    // Let the thread fill the channel and block on it.
    std::thread::sleep(Duration::from_millis(50));
    // Drop joins the thread; a loader that could not stop it would hang here. The wait is
    // a hang detector, not a speed claim.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(l);
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(60)).is_ok(),
        "dropping the loader did not stop its thread"
    );
}
