//! Running frames through the program with BPF_PROG_TEST_RUN (`ispf
//! replay`, the kernel and differential tests) and reading what each got
//! from the per-CPU verdict record.

use aya::programs::{ProgramError, TestRun, TestRunOptions};
use ispf_common::*;

use super::{access::map_err, maps::Maps, Datapath, DatapathError, Result};

/// Which entry point of the program runs a test frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Xdp,
    Tc,
}

/// What one frame got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub pass: bool,
    pub reason: u8,
    pub src: u16,
    pub dst: u16,
    pub rule: Option<u32>,
    /// Policy epoch the frame was judged under.
    pub epoch: u32,
}

/// The sequence number of each CPU's verdict record when last read.
pub(super) struct State {
    last_seq: Vec<u64>,
}

impl State {
    /// Starts from what the CPUs already recorded (an adopted program has
    /// judged traffic), so `run` sees only its own frame's record.
    pub fn new(maps: &Maps) -> Result<Self> {
        let ncpu = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Map {
            name: MAP_LAST,
            source: aya::maps::MapError::IoError(e),
        })?;
        let last_seq = match maps.last.get(&0, 0) {
            Ok(values) => values.iter().map(|v| v.seq).collect(),
            Err(_) => vec![0; ncpu],
        };
        Ok(Self { last_seq })
    }
}

impl Datapath {
    /// Runs one frame through the program with BPF_PROG_TEST_RUN; state the
    /// program keeps (conntrack, fragments, counters) persists across calls.
    ///
    /// Frames shorter than an Ethernet header never reach XDP on a real link
    /// and BPF_PROG_TEST_RUN refuses them, so they are judged `malformed`
    /// here without running the program.
    pub fn run(&mut self, frame: &[u8]) -> Result<Outcome> {
        self.run_on(Entry::Xdp, frame)
    }

    /// [`Self::run`] through entry point `entry` (XDP or TC).
    pub fn run_on(&mut self, entry: Entry, frame: &[u8]) -> Result<Outcome> {
        // The kernel refuses to test-run a TC program on a frame without
        // payload, or one whose (untagged) IPv4 or IPv6 header is cut short;
        // the XDP entry runs the same pipeline on those.
        let cut = match frame.get(12..14) {
            Some([0x08, 0x00]) => frame.len() < 14 + 20,
            Some([0x86, 0xdd]) => frame.len() < 14 + 40,
            _ => frame.len() <= 14,
        };
        let entry = if cut { Entry::Xdp } else { entry };
        if frame.len() < 14 {
            return Ok(Outcome {
                pass: false,
                reason: REASON_MALFORMED,
                src: NO_SEGMENT,
                dst: NO_SEGMENT,
                rule: None,
                epoch: self.epoch,
            });
        }
        // BPF_PROG_TEST_RUN runs on the calling CPU; hold the thread there
        // so the per-CPU verdict record read afterwards is this frame's.
        let pin = CpuPin::current();
        let cpu = pin.as_ref().map_or(0, |p| p.cpu);
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        let res = match entry {
            Entry::Xdp => self.program().test_run(opts)?,
            Entry::Tc => self.tc_program().test_run(opts)?,
        };
        let pass = match (entry, res.return_value) {
            (Entry::Xdp, 2) => true,  // XDP_PASS
            (Entry::Xdp, 1) => false, // XDP_DROP
            (Entry::Tc, 0) => true,   // TC_ACT_OK
            (Entry::Tc, 2) => false,  // TC_ACT_SHOT
            (_, other) => {
                return Err(DatapathError::Program(ProgramError::IOError(
                    std::io::Error::other(format!(
                        "the {entry:?} program returned unexpected action {other}"
                    )),
                )))
            }
        };
        let values = self.maps.last.get(&0, 0).map_err(map_err(MAP_LAST))?;
        let v = *values.get(cpu).ok_or(DatapathError::Busy)?;
        let seen = &mut self.test.last_seq;
        let expected = seen.get(cpu).copied().unwrap_or(0) + 1;
        if let Some(seq) = seen.get_mut(cpu) {
            *seq = v.seq;
        }
        // Exactly one packet on this CPU since the last look: ours. More
        // means live traffic overwrote the record meanwhile.
        if v.seq != expected {
            return Err(DatapathError::Busy);
        }
        Ok(Outcome {
            pass,
            reason: v.reason,
            src: v.src,
            dst: v.dst,
            rule: (v.rule != RULE_NONE).then_some(v.rule),
            epoch: v.epoch,
        })
    }
}

/// Holds the calling thread on the CPU it runs on until dropped, then
/// restores its affinity.
struct CpuPin {
    cpu: usize,
    saved: libc::cpu_set_t,
}

impl CpuPin {
    fn current() -> Option<Self> {
        // SAFETY: plain libc calls on this thread with sets we own.
        unsafe {
            let mut saved: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved) != 0 {
                return None;
            }
            let cpu = libc::sched_getcpu();
            if cpu < 0 {
                return None;
            }
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut one);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
                return None;
            }
            Some(Self {
                cpu: cpu as usize,
                saved,
            })
        }
    }
}

impl Drop for CpuPin {
    fn drop(&mut self) {
        // SAFETY: restores the set saved in `current`.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.saved) };
    }
}
