//! The loaded XDP program and its maps: applying compiled policy into the
//! inactive generation slot and flipping it, running frames through the
//! program with BPF_PROG_TEST_RUN, and reading counters.

use std::{collections::BTreeMap, path::Path};

use aya::{
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, MapData, PerCpuArray, RingBuf},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use aya_obj::programs::XdpAttachType;
use ispf_common::*;

use crate::policy::{
    compile::{compile, Compiled},
    Policy,
};

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
    /// Live traffic on the CPU overwrote the verdict record of a test run.
    #[error("live traffic overwrote the verdict record of a test run; replay on a program that is not attached, or retry")]
    Busy,
    /// bpffs refused a pin.
    #[error("cannot pin {}: {message}; ispf pins under a bpffs mount (mount -t bpf bpf /sys/fs/bpf)", path.display())]
    Pin {
        path: std::path::PathBuf,
        message: String,
    },
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
    /// Conntrack entries, for each address family.
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
    /// Policy epoch the frame was judged under.
    pub epoch: u32,
}

/// Where the program came from: loaded by this process, or reopened from a
/// bpffs pin left by an earlier controller.
enum ProgramHandle {
    Owned(Ebpf),
    Pinned(Box<Xdp>),
}

/// What a generation slot holds, so it can be cleared before reuse.
#[derive(Clone)]
enum Slot {
    Empty,
    Holds(Box<Compiled>),
    /// Adopted from pins: contents unknown, cleared by scanning the maps.
    Unknown,
}

pub struct Datapath {
    program: ProgramHandle,
    sizes: MapSizes,
    maps: Maps,
    last_seq: Vec<u64>,
    slots: [Slot; 2],
    epoch: u32,
}

macro_rules! take {
    ($source:expr, $ty:ident, $name:expr) => {{
        let map = $source($name)?;
        $ty::try_from(map).map_err(map_err($name))?
    }};
}

/// The typed maps, opened from a freshly loaded object or from pins.
struct Maps {
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
    conntrack4: HashMap<MapData, CtKey4, CtVal>,
    ct_generation: Array<MapData, u32>,
    fragments: HashMap<MapData, FragKey, FragVal>,
    counters: PerCpuArray<MapData, CounterVal>,
    counter_slots: HashMap<MapData, CounterKey, u32>,
    cpus: Array<MapData, u32>,
    last: PerCpuArray<MapData, LastVerdict>,
    /// Taken by the one consumer of events (the controller).
    events: Option<RingBuf<MapData>>,
    event_stats: PerCpuArray<MapData, EventStats>,
}

impl Maps {
    fn open(source: &mut dyn FnMut(&'static str) -> Result<aya::maps::Map>) -> Result<Self> {
        Ok(Self {
            active: take!(source, Array, MAP_ACTIVE),
            settings: take!(source, Array, MAP_SETTINGS),
            segments: take!(source, Array, MAP_SEGMENTS),
            dev_mac: take!(source, HashMap, MAP_DEV_MAC),
            dev_v4: take!(source, HashMap, MAP_DEV_V4),
            dev_v6: take!(source, HashMap, MAP_DEV_V6),
            subnet_v4: take!(source, LpmTrie, MAP_SUBNET_V4),
            subnet_v6: take!(source, LpmTrie, MAP_SUBNET_V6),
            vlan: take!(source, Array, MAP_VLAN),
            routers: take!(source, HashMap, MAP_ROUTERS),
            port_class: take!(source, Array, MAP_PORT_CLASS),
            policy: take!(source, HashMap, MAP_POLICY),
            conntrack: take!(source, HashMap, MAP_CONNTRACK),
            conntrack4: take!(source, HashMap, MAP_CONNTRACK4),
            ct_generation: take!(source, Array, MAP_CT_GENERATION),
            fragments: take!(source, HashMap, MAP_FRAGMENTS),
            counters: take!(source, PerCpuArray, MAP_COUNTERS),
            counter_slots: take!(source, HashMap, MAP_COUNTER_SLOTS),
            cpus: take!(source, Array, MAP_CPUS),
            last: take!(source, PerCpuArray, MAP_LAST),
            events: Some(take!(source, RingBuf, MAP_EVENTS)),
            event_stats: take!(source, PerCpuArray, MAP_EVENT_STATS),
        })
    }
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

impl Datapath {
    /// Loads and verifies the program (not attached anywhere). Nothing is
    /// pinned: the program and its maps live as long as this value.
    pub fn load(sizes: MapSizes) -> Result<Self> {
        Self::load_inner(sizes, None)
    }

    /// Loads the program and pins it and every map under `dir` (on bpffs,
    /// as `prog` and `maps/NAME`), so enforcement outlives this process and
    /// a later controller can [`adopt`](Self::adopt) it.
    pub fn load_pinned(sizes: MapSizes, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("maps")).map_err(|e| DatapathError::Pin {
            path: dir.to_owned(),
            message: e.to_string(),
        })?;
        Self::load_inner(sizes, Some(dir))
    }

    fn load_inner(sizes: MapSizes, pin_dir: Option<&Path>) -> Result<Self> {
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
            .map_max_entries(MAP_CONNTRACK4, sizes.conntrack)
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
        let mut take_map = |name: &'static str| {
            let map = ebpf
                .take_map(name)
                .ok_or(DatapathError::Missing { kind: "map", name })?;
            if let Some(dir) = pin_dir {
                let path = dir.join("maps").join(name);
                map.pin(&path).map_err(|e| DatapathError::Pin {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
            Ok(map)
        };
        let mut maps = Maps::open(&mut take_map)?;
        // The datapath stripes counter slots by CPU (see MAP_COUNTER_NEXT).
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Map {
            name: MAP_CPUS,
            source: aya::maps::MapError::IoError(e),
        })?;
        maps.cpus
            .set(0, cpus as u32, 0)
            .map_err(map_err(MAP_CPUS))?;
        let mut dp = Self::assemble(
            ProgramHandle::Owned(ebpf),
            maps,
            sizes,
            [Slot::Empty, Slot::Empty],
            0,
        )?;
        if let Some(dir) = pin_dir {
            let path = dir.join("prog");
            dp.program_mut()
                .pin(&path)
                .map_err(|e| DatapathError::Pin {
                    path,
                    message: e.to_string(),
                })?;
        }
        Ok(dp)
    }

    /// Reopens the program and maps an earlier controller pinned under
    /// `dir`, keeping everything they hold: the enforced policy, its epoch,
    /// connection state and counters.
    pub fn adopt(dir: &Path) -> Result<Self> {
        if unsafe { libc::geteuid() } != 0 {
            return Err(DatapathError::NotRoot);
        }
        let prog = Xdp::from_pin(dir.join("prog"), XdpAttachType::Interface)?;
        let mut capacity = std::collections::HashMap::new();
        let mut open = |name: &'static str| {
            let data = MapData::from_pin(dir.join("maps").join(name)).map_err(map_err(name))?;
            capacity.insert(name, data.info().map(|i| i.max_entries()).unwrap_or(0));
            aya::maps::Map::from_map_data(data).map_err(map_err(name))
        };
        let maps = Maps::open(&mut open)?;
        let sizes = MapSizes {
            devices: capacity[MAP_DEV_MAC],
            policy: capacity[MAP_POLICY],
            conntrack: capacity[MAP_CONNTRACK],
            fragments: capacity[MAP_FRAGMENTS],
        };
        let slot = maps.active.get(&0, 0).map_err(map_err(MAP_ACTIVE))? as usize & 1;
        let epoch = maps
            .settings
            .get(&(slot as u32), 0)
            .map_err(map_err(MAP_SETTINGS))?
            .epoch;
        Self::assemble(
            ProgramHandle::Pinned(Box::new(prog)),
            maps,
            sizes,
            [Slot::Unknown, Slot::Unknown],
            epoch,
        )
    }

    fn assemble(
        program: ProgramHandle,
        maps: Maps,
        sizes: MapSizes,
        slots: [Slot; 2],
        epoch: u32,
    ) -> Result<Self> {
        let ncpu = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Map {
            name: MAP_LAST,
            source: aya::maps::MapError::IoError(e),
        })?;
        Ok(Self {
            program,
            sizes,
            maps,
            last_seq: vec![0; ncpu],
            slots,
            epoch,
        })
        .map(|mut dp| {
            // Start from what the CPUs already recorded (an adopted program
            // has judged traffic), so `run` sees only its own frame's record.
            if let Ok(values) = dp.maps.last.get(&0, 0) {
                dp.last_seq = values.iter().map(|v| v.seq).collect();
            }
            dp
        })
    }

    /// Entries in use and capacity of the maps that fill up.
    /// `(map, entries in use, capacity)` for the maps that fill up. Both
    /// generation slots count: during a reload both are full.
    pub fn occupancy(&self) -> Vec<(&'static str, usize, u32)> {
        let z = &self.sizes;
        vec![
            (MAP_DEV_MAC, self.maps.dev_mac.keys().count(), z.devices),
            (MAP_DEV_V4, self.maps.dev_v4.keys().count(), z.devices),
            (MAP_DEV_V6, self.maps.dev_v6.keys().count(), z.devices),
            (MAP_POLICY, self.maps.policy.keys().count(), z.policy),
            (
                MAP_CONNTRACK,
                self.maps.conntrack.keys().count(),
                z.conntrack,
            ),
            (
                MAP_CONNTRACK4,
                self.maps.conntrack4.keys().count(),
                z.conntrack,
            ),
            (
                MAP_FRAGMENTS,
                self.maps.fragments.keys().count(),
                z.fragments,
            ),
            (
                MAP_COUNTERS,
                self.maps.counter_slots.keys().count(),
                DEFAULT_COUNTER_ENTRIES,
            ),
        ]
    }

    pub fn program(&self) -> &Xdp {
        match &self.program {
            // Checked to exist and be XDP in `load`.
            ProgramHandle::Owned(ebpf) => ebpf
                .program(PROGRAM_NAME)
                .and_then(|p| <&Xdp>::try_from(p).ok())
                .expect("program checked at load"),
            ProgramHandle::Pinned(p) => p,
        }
    }

    pub fn program_mut(&mut self) -> &mut Xdp {
        match &mut self.program {
            ProgramHandle::Owned(ebpf) => ebpf
                .program_mut(PROGRAM_NAME)
                .and_then(|p| <&mut Xdp>::try_from(p).ok())
                .expect("program checked at load"),
            ProgramHandle::Pinned(p) => p,
        }
    }

    /// The policy epoch currently enforced (0 before the first apply).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    fn check_capacity(&self, c: &Compiled, slot: usize) -> Result<()> {
        let other = match &self.slots[1 - slot] {
            Slot::Holds(c) => Some(c.as_ref()),
            _ => None,
        };
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
        let active = self.maps.active.get(&0, 0).map_err(map_err(MAP_ACTIVE))? as usize & 1;
        let slot = if self.epoch == 0 { active } else { 1 - active };
        self.check_capacity(c, slot)?;
        match std::mem::replace(&mut self.slots[slot], Slot::Empty) {
            Slot::Holds(old) => self.clear_slot(&old, slot as u8)?,
            Slot::Unknown => self.clear_slot_by_scan(slot as u8)?,
            Slot::Empty => {}
        }
        let epoch = self.epoch + 1;
        self.write_slot(c, slot as u8, epoch)?;
        self.maps
            .active
            .set(0, slot as u32, 0)
            .map_err(map_err(MAP_ACTIVE))?;
        self.slots[slot] = Slot::Holds(Box::new(c.clone()));
        self.epoch = epoch;
        Ok(epoch)
    }

    fn write_slot(&mut self, c: &Compiled, s: u8, epoch: u32) -> Result<()> {
        for (id, info) in &c.segments {
            self.maps
                .segments
                .set(s as u32 * MAX_SEGMENTS + *id as u32, info, 0)
                .map_err(map_err(MAP_SEGMENTS))?;
        }
        for (mac, v) in &c.dev_mac {
            self.maps
                .dev_mac
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
            self.maps
                .dev_v4
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
            self.maps
                .dev_v6
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
            self.maps
                .subnet_v4
                .insert(&v4_lpm(s, addr, *plen), seg, 0)
                .map_err(map_err(MAP_SUBNET_V4))?;
        }
        for (addr, plen, seg) in &c.subnet_v6 {
            self.maps
                .subnet_v6
                .insert(&v6_lpm(s, addr, *plen), seg, 0)
                .map_err(map_err(MAP_SUBNET_V6))?;
        }
        for (vlan, seg) in &c.vlans {
            self.maps
                .vlan
                .set(s as u32 * VLAN_SLOTS + *vlan as u32, seg, 0)
                .map_err(map_err(MAP_VLAN))?;
        }
        for mac in &c.routers {
            self.maps
                .routers
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
            self.maps
                .port_class
                .set(port_index(s, *t, *port), class, 0)
                .map_err(map_err(MAP_PORT_CLASS))?;
        }
        for (k, v) in &c.policy {
            let k = PolicyKey { slot: s, ..*k };
            self.maps
                .policy
                .insert(k, v, 0)
                .map_err(map_err(MAP_POLICY))?;
        }
        let settings = Settings {
            epoch,
            ..c.settings
        };
        self.maps
            .settings
            .set(s as u32, settings, 0)
            .map_err(map_err(MAP_SETTINGS))
    }

    fn clear_slot(&mut self, c: &Compiled, s: u8) -> Result<()> {
        for (id, _) in &c.segments {
            self.maps
                .segments
                .set(
                    s as u32 * MAX_SEGMENTS + *id as u32,
                    SegmentInfo::default(),
                    0,
                )
                .map_err(map_err(MAP_SEGMENTS))?;
        }
        for (mac, _) in &c.dev_mac {
            let _ = self.maps.dev_mac.remove(&MacKey {
                slot: s,
                _pad: 0,
                mac: *mac,
            });
        }
        for (addr, _) in &c.dev_v4 {
            let _ = self.maps.dev_v4.remove(&V4Key {
                slot: s,
                _pad: [0; 3],
                addr: *addr,
            });
        }
        for (addr, _) in &c.dev_v6 {
            let _ = self.maps.dev_v6.remove(&V6Key {
                slot: s,
                _pad: [0; 3],
                addr: *addr,
            });
        }
        for (addr, plen, _) in &c.subnet_v4 {
            let _ = self.maps.subnet_v4.remove(&v4_lpm(s, addr, *plen));
        }
        for (addr, plen, _) in &c.subnet_v6 {
            let _ = self.maps.subnet_v6.remove(&v6_lpm(s, addr, *plen));
        }
        for (vlan, _) in &c.vlans {
            self.maps
                .vlan
                .set(s as u32 * VLAN_SLOTS + *vlan as u32, 0, 0)
                .map_err(map_err(MAP_VLAN))?;
        }
        for mac in &c.routers {
            let _ = self.maps.routers.remove(&MacKey {
                slot: s,
                _pad: 0,
                mac: *mac,
            });
        }
        for (t, port, _) in &c.port_classes {
            self.maps
                .port_class
                .set(port_index(s, *t, *port), 0, 0)
                .map_err(map_err(MAP_PORT_CLASS))?;
        }
        for (k, _) in &c.policy {
            let _ = self.maps.policy.remove(&PolicyKey { slot: s, ..*k });
        }
        Ok(())
    }

    /// Clears a slot whose contents this process did not write (after
    /// adopting pins): every key carrying the slot, every array entry of it.
    fn clear_slot_by_scan(&mut self, s: u8) -> Result<()> {
        fn drop_keys<K: aya::Pod, V: aya::Pod>(
            m: &mut HashMap<MapData, K, V>,
            mine: impl Fn(&K) -> bool,
        ) {
            let keys: Vec<K> = m
                .keys()
                .filter_map(|k| k.ok())
                .filter(|k| mine(k))
                .collect();
            for k in keys {
                let _ = m.remove(&k);
            }
        }
        drop_keys(&mut self.maps.dev_mac, |k| k.slot == s);
        drop_keys(&mut self.maps.dev_v4, |k| k.slot == s);
        drop_keys(&mut self.maps.dev_v6, |k| k.slot == s);
        drop_keys(&mut self.maps.routers, |k| k.slot == s);
        drop_keys(&mut self.maps.policy, |k| k.slot == s);
        let v4: Vec<Key<[u8; 5]>> = self
            .maps
            .subnet_v4
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.data()[0] == s)
            .collect();
        for k in v4 {
            let _ = self.maps.subnet_v4.remove(&k);
        }
        let v6: Vec<Key<[u8; 17]>> = self
            .maps
            .subnet_v6
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| k.data()[0] == s)
            .collect();
        for k in v6 {
            let _ = self.maps.subnet_v6.remove(&k);
        }
        for i in 0..MAX_SEGMENTS {
            self.maps
                .segments
                .set(s as u32 * MAX_SEGMENTS + i, SegmentInfo::default(), 0)
                .map_err(map_err(MAP_SEGMENTS))?;
        }
        for i in 0..VLAN_SLOTS {
            self.maps
                .vlan
                .set(s as u32 * VLAN_SLOTS + i, 0, 0)
                .map_err(map_err(MAP_VLAN))?;
        }
        for t in 0..PORT_TABLES {
            for port in 0..=u16::MAX {
                let idx = port_index(s, t, port);
                if self
                    .maps
                    .port_class
                    .get(&idx, 0)
                    .map_err(map_err(MAP_PORT_CLASS))?
                    != 0
                {
                    self.maps
                        .port_class
                        .set(idx, 0, 0)
                        .map_err(map_err(MAP_PORT_CLASS))?;
                }
            }
        }
        Ok(())
    }

    /// Replaces the enforced policy `previous` with `next`: `next` keeps
    /// the segment ids of `previous` (connection state holds ids), is
    /// applied atomically, and then the flows of segments `next` no longer
    /// has are ended. Returns the new epoch.
    pub fn replace_policy(&mut self, previous: &Policy, next: &mut Policy) -> Result<u32> {
        let gone = next.keep_ids(&previous.segment_ids());
        let epoch = self.apply(&compile(next))?;
        if !gone.is_empty() {
            self.end_segments(&gone)?;
        }
        Ok(epoch)
    }

    /// Ends every tracked flow to or from the segments `ids` (removed from
    /// the policy: their ids may later name other segments), drops every
    /// CPU's cached outcomes and the segments' counters. Returns how many
    /// flows ended.
    pub fn end_segments(&mut self, ids: &[u16]) -> Result<usize> {
        let hit = |v: &CtVal| ids.contains(&v.orig_src) || ids.contains(&v.orig_dst);
        let ended = remove_where(&mut self.maps.conntrack, |_, v| hit(v))
            + remove_where(&mut self.maps.conntrack4, |_, v| hit(v));
        self.flush_flow_cache()?;
        // Their counters go too: a later reload may give the ids to new
        // segments, which must not inherit the counts. (The slots stay
        // allocated; the datapath only ever hands out new ones.)
        remove_where(&mut self.maps.counter_slots, |k, _| {
            ids.contains(&k.src) || ids.contains(&k.dst)
        });
        Ok(ended)
    }

    /// Invalidates every CPU's flow cache: bumps the flush generation.
    fn flush_flow_cache(&mut self) -> Result<()> {
        let flush = self
            .maps
            .ct_generation
            .get(&CT_GENERATIONS, 0)
            .map_err(map_err(MAP_CT_GENERATION))?;
        self.maps
            .ct_generation
            .set(CT_GENERATIONS, flush.wrapping_add(1), 0)
            .map_err(map_err(MAP_CT_GENERATION))
    }

    /// Forgets all connection, fragment and cached-verdict state (a fresh
    /// replay).
    pub fn reset_state(&mut self) -> Result<()> {
        remove_where(&mut self.maps.conntrack, |_, _| true);
        remove_where(&mut self.maps.conntrack4, |_, _| true);
        remove_where(&mut self.maps.fragments, |_, _| true);
        self.flush_flow_cache()
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
                epoch: self.epoch,
            });
        }
        // BPF_PROG_TEST_RUN runs on the calling CPU; hold the thread there
        // so the per-CPU verdict record read afterwards is this frame's.
        let _pin = CpuPin::current();
        let cpu = _pin.as_ref().map_or(0, |p| p.cpu);
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
        let values = self.maps.last.get(&0, 0).map_err(map_err(MAP_LAST))?;
        let v = *values.get(cpu).ok_or(DatapathError::Busy)?;
        let expected = self.last_seq.get(cpu).copied().unwrap_or(0) + 1;
        if let Some(seq) = self.last_seq.get_mut(cpu) {
            *seq = v.seq;
        }
        // Exactly one packet on this CPU since the last look: ours. More
        // means live traffic overwrote the record meanwhile.
        let last = (v.seq == expected).then_some(v);
        let last = last.ok_or(DatapathError::Busy)?;
        Ok(Outcome {
            pass,
            reason: last.reason,
            src: last.src,
            dst: last.dst,
            rule: (last.rule != RULE_NONE).then_some(last.rule),
            epoch: last.epoch,
        })
    }

    /// Counters summed over CPUs.
    pub fn counters(&self) -> BTreeMap<CounterKey, CounterVal> {
        let mut out = BTreeMap::new();
        for (k, slot) in self.maps.counter_slots.iter().filter_map(|e| e.ok()) {
            let Ok(per_cpu) = self.maps.counters.get(&slot, 0) else {
                continue;
            };
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
        self.maps.conntrack.keys().filter(|k| k.is_ok()).count()
            + self.maps.conntrack4.keys().filter(|k| k.is_ok()).count()
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

/// Now on the clock `bpf_ktime_get_ns` reads (CLOCK_MONOTONIC).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Datapath {
    /// Drops fragment entries older than `timeout_s`: the fragment map is a
    /// plain hash (a flood must not evict live datagrams), so the controller
    /// reaps what the datapath only ignores. Returns how many went.
    pub fn gc_fragments(&mut self, timeout_s: u32) -> usize {
        let now = monotonic_ns();
        remove_where(&mut self.maps.fragments, |_, v| {
            now.saturating_sub(v.last_seen_ns) > timeout_s as u64 * 1_000_000_000
        })
    }
}

/// Removes the entries of `map` that `doomed` picks; returns how many.
/// Keys are collected first: deleting while iterating a BPF hash map
/// restarts or skips the walk.
fn remove_where<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    doomed: impl Fn(&K, &V) -> bool,
) -> usize {
    let keys: Vec<K> = map
        .iter()
        .filter_map(|e| e.ok())
        .filter(|(k, v)| doomed(k, v))
        .map(|(k, _)| k)
        .collect();
    for k in &keys {
        let _ = map.remove(k);
    }
    keys.len()
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

/// Event accounting summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTotals {
    pub emitted: u64,
    pub rate_limited: u64,
    pub ringbuf_full: u64,
}

impl Datapath {
    /// The ring buffer of flow events; only one reader may have it.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.maps.events.take()
    }

    pub fn event_totals(&self) -> EventTotals {
        let mut t = EventTotals::default();
        if let Ok(values) = self.maps.event_stats.get(&0, 0) {
            for v in values.iter() {
                t.emitted += v.emitted;
                t.rate_limited += v.rate_limited;
                t.ringbuf_full += v.ringbuf_full;
            }
        }
        t
    }

    /// Conntrack entries by protocol number.
    pub fn conntrack_by_proto(&self) -> BTreeMap<u8, usize> {
        let mut m = BTreeMap::new();
        for k in self.maps.conntrack.keys().filter_map(|k| k.ok()) {
            *m.entry(k.proto).or_default() += 1;
        }
        for k in self.maps.conntrack4.keys().filter_map(|k| k.ok()) {
            *m.entry(k.proto).or_default() += 1;
        }
        m
    }
}
