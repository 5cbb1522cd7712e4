//! The machine's capacity and what running executions hold of it: `jobs` slots, CPU
//! threads, GPUs by device id and memory. A stage's `resources:` ask is capped to what the
//! machine has, so an oversized ask runs alone instead of never.

use crate::device::DeviceName;
use crate::executor::Allocation;
use crate::plan::Resources;

/// What this orchestrator may hand out.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub jobs: usize,
    pub cpus: usize,
    /// Physical GPU ids usable by workers.
    pub gpus: Vec<u32>,
    /// Bytes; `None` when unknown (then memory is not limited).
    pub memory: Option<u64>,
}

impl Capacity {
    /// This machine, with `jobs` concurrent stages and the GPUs a `device` setting allows
    /// (`auto | cpu | cuda | cuda:N`).
    pub fn detect(jobs: usize, device: &str) -> Capacity {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Capacity {
            jobs: jobs.max(1),
            cpus,
            gpus: gpus_for(device, &visible_gpus()),
            memory: total_memory(),
        }
    }
}

/// GPU ids the device setting selects among the visible ones (none for a name outside
/// the grammar: settings are validated before this runs).
pub fn gpus_for(device: &str, visible: &[u32]) -> Vec<u32> {
    device
        .parse::<DeviceName>()
        .map(|d| d.gpus(visible))
        .unwrap_or_default()
}

/// GPU ids of this machine: CUDA_VISIBLE_DEVICES when set, else the NVIDIA device files.
fn visible_gpus() -> Vec<u32> {
    if let Ok(list) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return list
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
    }
    let mut ids: Vec<u32> = std::fs::read_dir("/dev")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("nvidia")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The part of the capacity not held by running executions.
#[derive(Debug)]
pub struct ResourcePool {
    capacity: Capacity,
    running: usize,
    free_cpus: usize,
    free_gpus: Vec<u32>,
    free_memory: Option<u64>,
}

impl ResourcePool {
    pub fn new(capacity: Capacity) -> Self {
        ResourcePool {
            running: 0,
            free_cpus: capacity.cpus,
            free_gpus: capacity.gpus.clone(),
            free_memory: capacity.memory,
            capacity,
        }
    }

    /// The ask, capped to the machine (at least one CPU thread).
    fn capped(&self, ask: &Resources) -> (usize, usize, Option<u64>) {
        let cpus = (ask.cpus as usize).clamp(1, self.capacity.cpus.max(1));
        let gpus = (ask.gpus as usize).min(self.capacity.gpus.len());
        let memory = match (ask.memory, self.capacity.memory) {
            (Some(m), Some(total)) => Some(m.min(total)),
            _ => None,
        };
        (cpus, gpus, memory)
    }

    /// Whether no execution can start now, whatever it asks (every ask takes a job slot
    /// and at least one CPU thread).
    pub fn is_full(&self) -> bool {
        self.running >= self.capacity.jobs || self.free_cpus == 0
    }

    /// Takes what `ask` needs if it is free now.
    pub fn try_acquire(&mut self, ask: &Resources) -> Option<Allocation> {
        let (cpus, gpus, memory) = self.capped(ask);
        let memory_ok = match (memory, self.free_memory) {
            (Some(m), Some(free)) => m <= free,
            _ => true,
        };
        if self.running >= self.capacity.jobs
            || cpus > self.free_cpus
            || gpus > self.free_gpus.len()
            || !memory_ok
        {
            return None;
        }
        self.running += 1;
        self.free_cpus -= cpus;
        let taken: Vec<u32> = self.free_gpus.drain(..gpus).collect();
        if let (Some(m), Some(free)) = (memory, self.free_memory.as_mut()) {
            *free -= m;
        }
        Some(Allocation {
            gpus: taken,
            threads: cpus,
            memory,
            time: ask.time,
        })
    }

    pub fn release(&mut self, a: &Allocation) {
        self.running -= 1;
        self.free_cpus += a.threads;
        self.free_gpus.extend_from_slice(&a.gpus);
        self.free_gpus.sort_unstable();
        if let (Some(m), Some(free)) = (a.memory, self.free_memory.as_mut()) {
            *free += m;
        }
    }

    pub fn idle(&self) -> bool {
        self.running == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(jobs: usize, cpus: usize, gpus: Vec<u32>) -> ResourcePool {
        ResourcePool::new(Capacity {
            jobs,
            cpus,
            gpus,
            memory: Some(1000),
        })
    }

    #[test]
    fn jobs_limit_concurrency() {
        let mut p = pool(2, 8, vec![]);
        let a = p.try_acquire(&Resources::default()).unwrap();
        let _b = p.try_acquire(&Resources::default()).unwrap();
        assert!(p.try_acquire(&Resources::default()).is_none());
        p.release(&a);
        assert!(p.try_acquire(&Resources::default()).is_some());
    }

    #[test]
    fn gpus_are_handed_out_by_id_and_returned() {
        let mut p = pool(4, 8, vec![0, 1]);
        let ask = Resources {
            gpus: 1,
            ..Default::default()
        };
        let a = p.try_acquire(&ask).unwrap();
        let b = p.try_acquire(&ask).unwrap();
        assert_eq!((a.gpus.clone(), b.gpus.clone()), (vec![0], vec![1]));
        assert!(p.try_acquire(&ask).is_none());
        p.release(&b);
        assert_eq!(p.try_acquire(&ask).unwrap().gpus, vec![1]);
    }

    #[test]
    fn oversized_asks_are_capped_not_starved() {
        let mut p = pool(4, 2, vec![]);
        let ask = Resources {
            cpus: 64,
            gpus: 1,
            memory: Some(10_000),
            ..Default::default()
        };
        let a = p.try_acquire(&ask).unwrap();
        assert_eq!((a.threads, a.gpus.len(), a.memory), (2, 0, Some(1000)));
        assert!(p.try_acquire(&Resources::default()).is_none());
    }

    #[test]
    fn device_setting_selects_gpus() {
        assert_eq!(gpus_for("cpu", &[0, 1]), Vec::<u32>::new());
        assert_eq!(gpus_for("auto", &[0, 1]), vec![0, 1]);
        assert_eq!(gpus_for("cuda:1", &[0, 1]), vec![1]);
    }
}
