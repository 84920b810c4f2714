//! The loaded XDP program and its maps: applying compiled policy into the
//! inactive generation slot and flipping it, running frames through the
//! program with BPF_PROG_TEST_RUN, and reading counters.

use std::collections::BTreeMap;

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, PerCpuArray, PerCpuHashMap},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use ispf_common::*;

use crate::policy::compile::Compiled;

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// Loading needs CAP_BPF/CAP_SYS_ADMIN.
    #[error("loading the XDP program needs root (CAP_BPF and CAP_NET_ADMIN); run ispf as root, e.g. with sudo")]
    NotRoot,
    /// The kernel refused the object.
    #[error("the kernel refused the ispf XDP program: {0}\nispf needs Linux >= 5.15 with BPF, BTF and the BPF JIT enabled")]
    Load(#[source] aya::EbpfError),
    #[error("the ispf object has no {kind} named {name}; the build is inconsistent, rebuild ispf")]
    Missing {
        kind: &'static str,
        name: &'static str,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("program: {0}")]
    Program(#[from] ProgramError),
    /// The compiled policy needs more entries than a map holds.
    #[error("policy does not fit: map {name} would need {needed} entries but holds {capacity}; reduce the policy or raise the map size")]
    Capacity {
        name: &'static str,
        needed: usize,
        capacity: u32,
    },
}

type Result<T, E = DatapathError> = std::result::Result<T, E>;

/// Map sizes, for callers that need other than the defaults (tests that
/// provoke a full map, large deployments).
#[derive(Debug, Clone, Copy)]
pub struct MapSizes {
    pub devices: u32,
    pub policy: u32,
    pub conntrack: u32,
    pub fragments: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        Self {
            devices: DEFAULT_DEVICE_ENTRIES,
            policy: DEFAULT_POLICY_ENTRIES,
            conntrack: DEFAULT_CONNTRACK_ENTRIES,
            fragments: DEFAULT_FRAGMENT_ENTRIES,
        }
    }
}

/// What one frame got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub pass: bool,
    pub reason: u8,
    pub src: u16,
    pub dst: u16,
    pub rule: Option<u32>,
}

pub struct Datapath {
    ebpf: Ebpf,
    sizes: MapSizes,
    active: Array<MapData, u32>,
    settings: Array<MapData, Settings>,
    segments: Array<MapData, SegmentInfo>,
    dev_mac: HashMap<MapData, MacKey, DeviceVal>,
    dev_v4: HashMap<MapData, V4Key, DeviceVal>,
    dev_v6: HashMap<MapData, V6Key, DeviceVal>,
    subnet_v4: LpmTrie<MapData, [u8; 5], u32>,
    subnet_v6: LpmTrie<MapData, [u8; 17], u32>,
    vlan: Array<MapData, u32>,
    routers: HashMap<MapData, MacKey, u32>,
    port_class: Array<MapData, u32>,
    policy: HashMap<MapData, PolicyKey, PolicyVal>,
    conntrack: HashMap<MapData, CtKey, CtVal>,
    fragments: HashMap<MapData, FragKey, FragVal>,
    counters: PerCpuHashMap<MapData, CounterKey, CounterVal>,
    last: PerCpuArray<MapData, LastVerdict>,
    last_seq: Vec<u64>,
    /// What each generation slot holds, so it can be cleared before reuse.
    slots: [Option<Compiled>; 2],
    epoch: u32,
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

macro_rules! take {
    ($ebpf:expr, $ty:ident, $name:expr) => {{
        let map = $ebpf.take_map($name).ok_or(DatapathError::Missing {
            kind: "map",
            name: $name,
        })?;
        $ty::try_from(map).map_err(map_err($name))?
    }};
}

impl Datapath {
    /// Loads and verifies the program (not attached anywhere).
    pub fn load(sizes: MapSizes) -> Result<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(DatapathError::NotRoot);
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_DEV_MAC, sizes.devices)
            .map_max_entries(MAP_DEV_V4, sizes.devices)
            .map_max_entries(MAP_DEV_V6, sizes.devices)
            .map_max_entries(MAP_POLICY, sizes.policy)
            .map_max_entries(MAP_CONNTRACK, sizes.conntrack)
            .map_max_entries(MAP_FRAGMENTS, sizes.fragments)
            .load(crate::ISPF_OBJECT)
            .map_err(DatapathError::Load)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(DatapathError::Missing {
                kind: "program",
                name: PROGRAM_NAME,
            })?
            .try_into()?;
        prog.load()?;
        let ncpu = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Map {
            name: MAP_LAST,
            source: aya::maps::MapError::IoError(e),
        })?;
        Ok(Self {
            active: take!(ebpf, Array, MAP_ACTIVE),
            settings: take!(ebpf, Array, MAP_SETTINGS),
            segments: take!(ebpf, Array, MAP_SEGMENTS),
            dev_mac: take!(ebpf, HashMap, MAP_DEV_MAC),
            dev_v4: take!(ebpf, HashMap, MAP_DEV_V4),
            dev_v6: take!(ebpf, HashMap, MAP_DEV_V6),
            subnet_v4: take!(ebpf, LpmTrie, MAP_SUBNET_V4),
            subnet_v6: take!(ebpf, LpmTrie, MAP_SUBNET_V6),
            vlan: take!(ebpf, Array, MAP_VLAN),
            routers: take!(ebpf, HashMap, MAP_ROUTERS),
            port_class: take!(ebpf, Array, MAP_PORT_CLASS),
            policy: take!(ebpf, HashMap, MAP_POLICY),
            conntrack: take!(ebpf, HashMap, MAP_CONNTRACK),
            fragments: take!(ebpf, HashMap, MAP_FRAGMENTS),
            counters: take!(ebpf, PerCpuHashMap, MAP_COUNTERS),
            last: take!(ebpf, PerCpuArray, MAP_LAST),
            last_seq: vec![0; ncpu],
            ebpf,
            sizes,
            slots: [None, None],
            epoch: 0,
        })
    }

    pub fn program(&self) -> &Xdp {
        // Checked to exist and be XDP in `load`.
        self.ebpf
            .program(PROGRAM_NAME)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("program checked at load")
    }

    pub fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .and_then(|p| <&mut Xdp>::try_from(p).ok())
            .expect("program checked at load")
    }

    /// The policy epoch currently enforced (0 before the first apply).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    fn check_capacity(&self, c: &Compiled, slot: usize) -> Result<()> {
        let other = self.slots[1 - slot].as_ref();
        let count = |f: &dyn Fn(&Compiled) -> usize| f(c) + other.map_or(0, f);
        let checks: [(&'static str, usize, u32); 6] = [
            (MAP_DEV_MAC, count(&|x| x.dev_mac.len()), self.sizes.devices),
            (MAP_DEV_V4, count(&|x| x.dev_v4.len()), self.sizes.devices),
            (MAP_DEV_V6, count(&|x| x.dev_v6.len()), self.sizes.devices),
            (MAP_POLICY, count(&|x| x.policy.len()), self.sizes.policy),
            (
                MAP_SUBNET_V4,
                count(&|x| x.subnet_v4.len()),
                DEFAULT_SUBNET_ENTRIES,
            ),
            (
                MAP_SUBNET_V6,
                count(&|x| x.subnet_v6.len()),
                DEFAULT_SUBNET_ENTRIES,
            ),
        ];
        for (name, needed, capacity) in checks {
            if needed > capacity as usize {
                return Err(DatapathError::Capacity {
                    name,
                    needed,
                    capacity,
                });
            }
        }
        let routers = count(&|x| x.routers.len());
        if routers > DEFAULT_ROUTER_ENTRIES as usize {
            return Err(DatapathError::Capacity {
                name: MAP_ROUTERS,
                needed: routers,
                capacity: DEFAULT_ROUTER_ENTRIES,
            });
        }
        Ok(())
    }

    /// Writes `c` into the inactive generation slot, then makes it active in
    /// one array write. Packets see the old policy or the new one, never a
    /// mix. Returns the new epoch.
    pub fn apply(&mut self, c: &Compiled) -> Result<u32> {
        let active = self.active.get(&0, 0).map_err(map_err(MAP_ACTIVE))? as usize & 1;
        let slot = if self.epoch == 0 { active } else { 1 - active };
        self.check_capacity(c, slot)?;
        if let Some(old) = self.slots[slot].take() {
            self.clear_slot(&old, slot as u8)?;
        }
        let epoch = self.epoch + 1;
        self.write_slot(c, slot as u8, epoch)?;
        self.active
            .set(0, slot as u32, 0)
            .map_err(map_err(MAP_ACTIVE))?;
        self.slots[slot] = Some(c.clone());
        self.epoch = epoch;
        Ok(epoch)
    }

    fn write_slot(&mut self, c: &Compiled, s: u8, epoch: u32) -> Result<()> {
        for (id, info) in &c.segments {
            self.segments
                .set(s as u32 * MAX_SEGMENTS + *id as u32, info, 0)
                .map_err(map_err(MAP_SEGMENTS))?;
        }
        for (mac, v) in &c.dev_mac {
            self.dev_mac
                .insert(
                    MacKey {
                        slot: s,
                        _pad: 0,
                        mac: *mac,
                    },
                    v,
                    0,
                )
                .map_err(map_err(MAP_DEV_MAC))?;
        }
        for (addr, v) in &c.dev_v4 {
            self.dev_v4
                .insert(
                    V4Key {
                        slot: s,
                        _pad: [0; 3],
                        addr: *addr,
                    },
                    v,
                    0,
                )
                .map_err(map_err(MAP_DEV_V4))?;
        }
        for (addr, v) in &c.dev_v6 {
            self.dev_v6
                .insert(
                    V6Key {
                        slot: s,
                        _pad: [0; 3],
                        addr: *addr,
                    },
                    v,
                    0,
                )
                .map_err(map_err(MAP_DEV_V6))?;
        }
        for (addr, plen, seg) in &c.subnet_v4 {
            self.subnet_v4
                .insert(&v4_lpm(s, addr, *plen), seg, 0)
                .map_err(map_err(MAP_SUBNET_V4))?;
        }
        for (addr, plen, seg) in &c.subnet_v6 {
            self.subnet_v6
                .insert(&v6_lpm(s, addr, *plen), seg, 0)
                .map_err(map_err(MAP_SUBNET_V6))?;
        }
        for (vlan, seg) in &c.vlans {
            self.vlan
                .set(s as u32 * VLAN_SLOTS + *vlan as u32, seg, 0)
                .map_err(map_err(MAP_VLAN))?;
        }
        for mac in &c.routers {
            self.routers
                .insert(
                    MacKey {
                        slot: s,
                        _pad: 0,
                        mac: *mac,
                    },
                    1,
                    0,
                )
                .map_err(map_err(MAP_ROUTERS))?;
        }
        for (t, port, class) in &c.port_classes {
            self.port_class
                .set(port_index(s, *t, *port), class, 0)
                .map_err(map_err(MAP_PORT_CLASS))?;
        }
        for (k, v) in &c.policy {
            let k = PolicyKey { slot: s, ..*k };
            self.policy.insert(k, v, 0).map_err(map_err(MAP_POLICY))?;
        }
        let settings = Settings {
            epoch,
            ..c.settings
        };
        self.settings
            .set(s as u32, settings, 0)
            .map_err(map_err(MAP_SETTINGS))
    }

    fn clear_slot(&mut self, c: &Compiled, s: u8) -> Result<()> {
        for (id, _) in &c.segments {
            self.segments
                .set(
                    s as u32 * MAX_SEGMENTS + *id as u32,
                    SegmentInfo::default(),
                    0,
                )
                .map_err(map_err(MAP_SEGMENTS))?;
        }
        for (mac, _) in &c.dev_mac {
            let _ = self.dev_mac.remove(&MacKey {
                slot: s,
                _pad: 0,
                mac: *mac,
            });
        }
        for (addr, _) in &c.dev_v4 {
            let _ = self.dev_v4.remove(&V4Key {
                slot: s,
                _pad: [0; 3],
                addr: *addr,
            });
        }
        for (addr, _) in &c.dev_v6 {
            let _ = self.dev_v6.remove(&V6Key {
                slot: s,
                _pad: [0; 3],
                addr: *addr,
            });
        }
        for (addr, plen, _) in &c.subnet_v4 {
            let _ = self.subnet_v4.remove(&v4_lpm(s, addr, *plen));
        }
        for (addr, plen, _) in &c.subnet_v6 {
            let _ = self.subnet_v6.remove(&v6_lpm(s, addr, *plen));
        }
        for (vlan, _) in &c.vlans {
            self.vlan
                .set(s as u32 * VLAN_SLOTS + *vlan as u32, 0, 0)
                .map_err(map_err(MAP_VLAN))?;
        }
        for mac in &c.routers {
            let _ = self.routers.remove(&MacKey {
                slot: s,
                _pad: 0,
                mac: *mac,
            });
        }
        for (t, port, _) in &c.port_classes {
            self.port_class
                .set(port_index(s, *t, *port), 0, 0)
                .map_err(map_err(MAP_PORT_CLASS))?;
        }
        for (k, _) in &c.policy {
            let _ = self.policy.remove(&PolicyKey { slot: s, ..*k });
        }
        Ok(())
    }

    /// Forgets all connection and fragment state (a fresh replay).
    pub fn reset_state(&mut self) -> Result<()> {
        let keys: Vec<CtKey> = self.conntrack.keys().filter_map(|k| k.ok()).collect();
        for k in keys {
            let _ = self.conntrack.remove(&k);
        }
        let keys: Vec<FragKey> = self.fragments.keys().filter_map(|k| k.ok()).collect();
        for k in keys {
            let _ = self.fragments.remove(&k);
        }
        Ok(())
    }

    /// Runs one frame through the program with BPF_PROG_TEST_RUN; state the
    /// program keeps (conntrack, fragments, counters) persists across calls.
    ///
    /// Frames shorter than an Ethernet header never reach XDP on a real link
    /// and BPF_PROG_TEST_RUN refuses them, so they are judged `malformed`
    /// here without running the program.
    pub fn run(&mut self, frame: &[u8]) -> Result<Outcome> {
        if frame.len() < 14 {
            return Ok(Outcome {
                pass: false,
                reason: REASON_MALFORMED,
                src: NO_SEGMENT,
                dst: NO_SEGMENT,
                rule: None,
            });
        }
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        let res = self.program().test_run(opts)?;
        let pass = match res.return_value {
            2 => true,  // XDP_PASS
            1 => false, // XDP_DROP
            other => {
                return Err(DatapathError::Program(ProgramError::IOError(
                    std::io::Error::other(format!(
                        "program returned unexpected XDP action {other}"
                    )),
                )))
            }
        };
        // The CPU the run happened on is the one whose sequence moved.
        let values = self.last.get(&0, 0).map_err(map_err(MAP_LAST))?;
        let mut last = None;
        for (cpu, v) in values.iter().enumerate() {
            if cpu < self.last_seq.len() && v.seq != self.last_seq[cpu] {
                self.last_seq[cpu] = v.seq;
                last = Some(*v);
            }
        }
        let last = last.ok_or(DatapathError::Missing {
            kind: "verdict record for the run in",
            name: MAP_LAST,
        })?;
        Ok(Outcome {
            pass,
            reason: last.reason,
            src: last.src,
            dst: last.dst,
            rule: (last.rule != RULE_NONE).then_some(last.rule),
        })
    }

    /// Counters summed over CPUs.
    pub fn counters(&self) -> BTreeMap<CounterKey, CounterVal> {
        let mut out = BTreeMap::new();
        for (k, per_cpu) in self.counters.iter().filter_map(|e| e.ok()) {
            let mut sum = CounterVal::default();
            for v in per_cpu.iter() {
                sum.packets += v.packets;
                sum.bytes += v.bytes;
            }
            out.insert(k, sum);
        }
        out
    }

    /// Number of live conntrack entries.
    pub fn conntrack_len(&self) -> usize {
        self.conntrack.keys().filter(|k| k.is_ok()).count()
    }
}

fn port_index(slot: u8, table: u32, port: u16) -> u32 {
    (slot as u32 * PORT_TABLES + table) * 65536 + port as u32
}

fn v4_lpm(slot: u8, a: &[u8; 4], plen: u8) -> Key<[u8; 5]> {
    Key::new(8 + plen as u32, [slot, a[0], a[1], a[2], a[3]])
}

fn v6_lpm(slot: u8, a: &[u8; 16], plen: u8) -> Key<[u8; 17]> {
    let mut d = [0u8; 17];
    d[0] = slot;
    d[1..].copy_from_slice(a);
    Key::new(8 + plen as u32, d)
}
