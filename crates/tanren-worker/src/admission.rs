//! Whether one more trial fits beside the ones running: each running trial holds a reservation of its
//! estimated peak memory (`tanren_core::memory`), and a new one is admitted only if its estimate fits
//! in what is free ([`tanren_core::memory::admit`]). What "free" is, by device:
//!
//! - CPU: `MemAvailable` and `MemTotal` from `/proc/meminfo`, lowered to the cgroup (v2) limit when
//!   the worker runs in a container with one (`memory.max`, less what the cgroup uses beyond its
//!   reclaimable page cache).
//! - CUDA: `cudaMemGetInfo` (free and total, all processes); when it does not answer, the total from
//!   the device's properties with nothing known about what is free (then the total less the
//!   reservations decides); when neither answers, nothing is checked. libtorch's caching allocator
//!   keeps what a finished trial used (the driver counts it as used) and hands it to the next trial,
//!   so after this worker's first trial the driver's "free" undercounts what a trial can get: from
//!   then on the free memory seen before the first trial, less the reservations, decides alone (memory
//!   another process takes on the GPU later is not seen: one worker per GPU).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tanren_core::memory::{admit, Admission, MemoryState};
use tch::Device;

/// Memory of the device right now: (total, free now).
type Reading = Option<(u64, Option<u64>)>;

/// Says whether a running trial's stream is closed (cancelled; it is finishing its step).
pub type Closed = Box<dyn Fn() -> bool + Send>;

pub struct Ledger {
    device: Device,
    state: Mutex<State>,
    /// Told whenever a reservation is released.
    released: tokio::sync::Notify,
    /// Reads the device's memory; a field so tests can give a small device.
    read: Box<dyn Fn(Device) -> Reading + Send + Sync>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// A trial was admitted in this process (on CUDA the allocator's cache is warm from then on).
    ran: bool,
    /// key -> (bytes, is the trial's stream closed: cancelled and finishing its step).
    reserved: HashMap<u64, (u64, Closed)>,
    /// Free memory the last time nothing was reserved.
    free_idle: Option<u64>,
}

/// Memory held for one running trial; released when dropped.
pub struct Reservation {
    ledger: Arc<Ledger>,
    key: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.ledger.lock().reserved.remove(&self.key);
        self.ledger.released.notify_waiters();
    }
}

impl Ledger {
    pub fn new(device: Device) -> Arc<Ledger> {
        Ledger::with_reader(device, Box::new(read_memory))
    }

    fn with_reader(device: Device, read: Box<dyn Fn(Device) -> Reading + Send + Sync>) -> Arc<Ledger> {
        Arc::new(Ledger {
            device,
            state: Mutex::default(),
            released: tokio::sync::Notify::new(),
            read,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The device's total memory, when it can be read.
    pub fn total(&self) -> Option<u64> {
        (self.read)(self.device).map(|(total, _)| total)
    }

    /// Reserve `need` bytes for a trial whose stream reports closed through `closed`, or say why not.
    /// Unknown memory admits everything.
    pub fn try_reserve(
        self: &Arc<Self>,
        need: u64,
        closed: Closed,
    ) -> Result<Reservation, (Admission, usize)> {
        let reading = (self.read)(self.device);
        let mut st = self.lock();
        let cached = matches!(self.device, Device::Cuda(_)) && st.ran;
        if let Some((total, free_now)) = reading {
            let free_now = if cached { None } else { free_now };
            if st.reserved.is_empty() && !cached {
                st.free_idle = Some(free_now.unwrap_or(total));
            }
            let m = MemoryState {
                total,
                free_now,
                free_idle: st.free_idle.unwrap_or(total),
                reserved: st.reserved.values().map(|(b, _)| b).sum(),
            };
            match admit(need, &m) {
                Admission::Fits => {}
                refused => return Err((refused, st.reserved.len())),
            }
        }
        st.next += 1;
        st.ran = true;
        let key = st.next;
        st.reserved.insert(key, (need, closed));
        Ok(Reservation {
            ledger: self.clone(),
            key,
        })
    }

    /// Is a running trial already cancelled (its memory is about to come free)?
    pub fn any_closing(&self) -> bool {
        self.lock().reserved.values().any(|(_, closed)| closed())
    }

    /// Wait until a reservation is released (or a second passes: a release just before this call is
    /// not missed for long).
    pub async fn released(&self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), self.released.notified()).await;
    }
}

fn read_memory(device: Device) -> Reading {
    match device {
        Device::Cuda(_) => tanren_trainer::memory::device_memory(device).map(|(free, total)| (total, free)),
        _ => {
            let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
            let (total, available) = parse_meminfo(&meminfo)?;
            let cgroup = cgroup_limit();
            Some(match cgroup {
                Some((limit, used)) => (total.min(limit), Some(available.min(limit.saturating_sub(used)))),
                None => (total, Some(available)),
            })
        }
    }
}

/// `MemTotal` and `MemAvailable` in bytes.
fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    Some((field("MemTotal")?, field("MemAvailable")?))
}

/// The cgroup v2 memory limit and what the cgroup uses beyond reclaimable page cache, when limited.
fn cgroup_limit() -> Option<(u64, u64)> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let max = std::fs::read_to_string(root.join("memory.max")).ok()?;
    let limit: u64 = max.trim().parse().ok()?; // "max": no limit
    let current: u64 = std::fs::read_to_string(root.join("memory.current"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(root.join("memory.stat")).unwrap_or_default();
    let inactive_file = stat
        .lines()
        .find_map(|l| l.strip_prefix("inactive_file "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Some((limit, current.saturating_sub(inactive_file)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn meminfo_parses() {
        let text = "MemTotal:       16315060 kB\nMemFree:         1010100 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(parse_meminfo(text), Some((16315060 * 1024, 8000000 * 1024)));
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn this_machine_reports_its_memory() {
        let (total, free) = read_memory(Device::Cpu).expect("/proc/meminfo");
        let free = free.expect("MemAvailable");
        assert!(total > 64 * MIB && free <= total, "{total} {free:?}");
    }

    #[test]
    fn reservations_add_up_and_come_free_on_drop() {
        // A 1000 MiB device, all free: two 400 MiB trials fit, a third does not until one ends; a
        // 1200 MiB one never does.
        let ledger = Ledger::with_reader(Device::Cpu, Box::new(|_| Some((1000 * MIB, Some(1000 * MIB)))));
        let open = || Box::new(|| false) as Closed;
        let a = ledger.try_reserve(400 * MIB, open()).expect("first");
        let _b = ledger.try_reserve(400 * MIB, open()).expect("second");
        match ledger.try_reserve(400 * MIB, open()) {
            Err((Admission::Busy { need, free }, running)) => {
                assert_eq!((need, free, running), (400 * MIB, 200 * MIB, 2));
            }
            _ => panic!("a third fitted"),
        }
        assert!(!ledger.any_closing());
        drop(a);
        assert!(
            ledger.try_reserve(400 * MIB, open()).is_ok(),
            "the first one's memory came free"
        );
        assert!(matches!(
            ledger.try_reserve(1200 * MIB, open()),
            Err((Admission::Never { .. }, _))
        ));
        // On CUDA a finished trial's memory stays in libtorch's cache (used, to the driver) and is
        // reused by the next trial: after the first trial the driver's low "free" does not refuse.
        let cuda = Ledger::with_reader(Device::Cuda(0), Box::new(|_| Some((1000 * MIB, Some(100 * MIB)))));
        assert!(matches!(
            cuda.try_reserve(400 * MIB, open()),
            Err((Admission::Busy { .. }, 0))
        ));
        let cuda = Ledger::with_reader(Device::Cuda(0), Box::new(|_| Some((1000 * MIB, Some(900 * MIB)))));
        drop(
            cuda.try_reserve(800 * MIB, open())
                .expect("first on an empty GPU"),
        );
        let cuda = Ledger {
            read: Box::new(|_| Some((1000 * MIB, Some(100 * MIB)))),
            ..Arc::into_inner(cuda).expect("one owner")
        };
        let cuda = Arc::new(cuda);
        let _next = cuda
            .try_reserve(800 * MIB, open())
            .expect("the cache is ours to reuse");
        assert!(matches!(
            cuda.try_reserve(200 * MIB, open()),
            Err((Admission::Busy { .. }, 1))
        ));
        let unknown = Ledger::with_reader(Device::Cpu, Box::new(|_| None));
        assert!(
            unknown.try_reserve(u64::MAX / 2, open()).is_ok(),
            "unknown memory admits"
        );
    }
}
