//! Following a job's stdout file (the worker's event lines) as Slurm appends to it on the
//! shared filesystem: each call returns the lines completed since the last one.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

pub struct LineTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LineTail {
    pub fn new(path: PathBuf) -> Self {
        LineTail {
            path,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// Complete lines written since the last call (none while the file does not exist).
    pub fn read_lines(&mut self) -> Vec<String> {
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let mut fresh = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut fresh).is_err()
        {
            return Vec::new();
        }
        self.offset += fresh.len() as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last_newline + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        String::from_utf8_lossy(&done)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Everything left, including an unterminated last line (once the job has ended).
    pub fn finish(&mut self) -> Vec<String> {
        let mut lines = self.read_lines();
        if !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn returns_each_completed_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut tail = LineTail::new(path.clone());
        assert!(tail.read_lines().is_empty(), "no file yet");
        let mut f = File::create(&path).unwrap();
        write!(f, "one\ntw").unwrap();
        assert_eq!(tail.read_lines(), vec!["one"]);
        write!(f, "o\nthree").unwrap();
        assert_eq!(tail.read_lines(), vec!["two"]);
        assert_eq!(tail.finish(), vec!["three"]);
        assert!(tail.finish().is_empty());
    }
}
