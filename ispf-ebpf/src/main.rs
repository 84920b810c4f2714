//! The ispf XDP program: parse, identify, decide, track, count. The entry
//! point only maps the pipeline's outcome to an XDP action; every outcome
//! carries exactly one reason from the policy specification.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod clock;
#[cfg(target_arch = "bpf")]
mod conntrack;
#[cfg(target_arch = "bpf")]
mod counters;
#[cfg(target_arch = "bpf")]
mod events;
#[cfg(target_arch = "bpf")]
mod flowcache;
#[cfg(target_arch = "bpf")]
mod fragments;
#[cfg(target_arch = "bpf")]
mod identity;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod policy;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
    use ispf_common::{
        FlowCacheEntry, Settings, ACTION_ALLOW, CACHED_ESTABLISHED, CACHED_JUDGED,
        DENIED_RECHECK_JIFFIES, EVENT_DENIED, EVENT_NEW_FLOW, FRAGMENTS_DENY, IPPROTO_TCP,
        NO_SEGMENT, REASON_FRAGMENT_UNTRACKED, REASON_INFRASTRUCTURE, REASON_INTERNAL_FAULT,
        REASON_MALFORMED, REASON_SPOOFED, REASON_WOULD_DROP,
    };
    use ispf_ebpf::{
        decide::{default_judgement, monitor, on_fault, Judgement},
        flow::{cacheable, tracking, Tracking, TCP_FIN, TCP_RST},
    };

    use crate::{
        clock,
        conntrack::{self, Fast, Flow},
        counters::{self, SLOT_UNKNOWN},
        events, flowcache, fragments, identity,
        maps::{Scratch, ISPF_ACTIVE, ISPF_SCRATCH, ISPF_SETTINGS},
        policy::segment_flags,
    };
    use ispf_ebpf::parse::{
        self, Frame, Malformed, FRAG_FIRST, FRAG_LATER, FRAG_NONE, KIND_INFRA, KIND_IP, KIND_OTHER,
        MAX_OFF,
    };

    /// The packet as XDP hands it over: `[data, data_end)`.
    struct XdpFrame {
        start: usize,
        end: usize,
    }

    impl Frame for XdpFrame {
        #[inline(always)]
        fn size(&self) -> usize {
            self.end - self.start
        }

        #[inline(always)]
        fn bytes<const N: usize>(&self, off: usize) -> Result<&[u8; N], Malformed> {
            if off > MAX_OFF {
                return Err(Malformed);
            }
            let p = self.start + off;
            if p + N > self.end {
                return Err(Malformed);
            }
            // SAFETY: [p, p+N) lies inside the packet (checked above, in the
            // form the verifier tracks), and a byte array has alignment 1.
            // Reading in place keeps headers off the 512-byte BPF stack.
            Ok(unsafe { &*(p as *const [u8; N]) })
        }
    }

    /// What the flow cache has to do with a packet's outcome.
    #[derive(Clone, Copy)]
    enum Cache {
        /// Nothing: not a packet the cache is for.
        No,
        /// The outcome came from this entry.
        Hit(*mut FlowCacheEntry),
        /// Judged in full while conntrack held nothing for the flow: cache
        /// the outcome if it is of a cacheable kind.
        Judged(Tracking),
        /// Conntrack continued the flow: cache it as established until then.
        Established(u64),
    }

    /// Everything the pipeline decided about one packet.
    struct Outcome {
        src: u16,
        /// Destination segment to count under (for a reply: the segment
        /// its flow came from).
        dst: u16,
        j: Judgement,
        /// The packet opened a new flow.
        opened: bool,
        cache: Cache,
        /// Counter slot, when the pipeline already knows it, else
        /// `SLOT_UNKNOWN`. (Not an `Option`: a `None`'s undefined payload
        /// can reach a register spill, which the verifier rejects.)
        slot: u32,
        /// Conntrack continued the flow: until which jiffy the flow cache may
        /// stand for it (0: no).
        until: u64,
    }

    impl Outcome {
        fn new(src: u16, dst: u16, j: Judgement) -> Self {
            Self {
                src,
                dst,
                j,
                opened: false,
                cache: Cache::No,
                slot: SLOT_UNKNOWN,
                until: 0,
            }
        }
    }

    #[xdp]
    pub fn ispf(ctx: XdpContext) -> u32 {
        let bytes = (ctx.data_end() - ctx.data()) as u64;
        let slot = (ISPF_ACTIVE.get(0).copied().unwrap_or(0) & 1) as u8;
        let (settings, scratch) =
            match (ISPF_SETTINGS.get(slot as u32), ISPF_SCRATCH.get_ptr_mut(0)) {
                (Some(s), Some(scratch)) => (s, scratch),
                // Unreachable (arrays are preallocated); fail closed all the same.
                _ => {
                    let j = Judgement::drop(REASON_INTERNAL_FAULT);
                    let slot = counters::slot(0, NO_SEGMENT, NO_SEGMENT, &j);
                    counters::record(slot, NO_SEGMENT, NO_SEGMENT, &j, bytes, 0);
                    return xdp_action::XDP_DROP;
                }
            };
        // SAFETY: this CPU's own slot; XDP does not nest on a CPU.
        let scratch = unsafe { &mut *scratch };
        let o = judge(slot, settings, scratch, &ctx);
        let counter = if o.slot == SLOT_UNKNOWN {
            counters::slot(slot, o.src, o.dst, &o.j)
        } else {
            o.slot
        };
        counters::record(counter, o.src, o.dst, &o.j, bytes, settings.epoch);
        report(&ctx, settings, scratch, &o, counter);
        if o.j.is_pass() {
            xdp_action::XDP_PASS
        } else {
            xdp_action::XDP_DROP
        }
    }

    /// Events for the controller (denied flows, their first packet and
    /// again after a minute; new east-west flows) and the flow cache entry
    /// of a packet the cache did not answer.
    #[inline(always)]
    fn report(ctx: &XdpContext, s: &Settings, scratch: &mut Scratch, o: &Outcome, counter: u32) {
        let j = &o.j;
        let denied = !j.is_pass() || j.reason == REASON_WOULD_DROP;
        let mut checked = 0;
        if denied && j.reason != REASON_MALFORMED {
            let tick = clock::jiffies();
            let due = match o.cache {
                // SAFETY: this CPU's own cache entry.
                Cache::Hit(e) => {
                    tick.wrapping_sub(unsafe { (*e).checked_jiffies }) >= DENIED_RECHECK_JIFFIES
                }
                _ => true,
            };
            if due {
                // The denied-flow map is the authority: it is shared by all
                // CPUs, outlives cache entries and keeps real time.
                let now = clock::now();
                if events::first_of_denied_flow(&scratch.pkt, &mut scratch.denied, now) {
                    events::emit(ctx, EVENT_DENIED, &scratch.pkt, o.src, o.dst, j, now);
                }
                if let Cache::Hit(e) = o.cache {
                    // SAFETY: as above.
                    unsafe { (*e).checked_jiffies = tick };
                }
                checked = tick;
            }
        } else if o.opened && o.src != s.world_segment && o.dst != s.world_segment {
            events::emit(
                ctx,
                EVENT_NEW_FLOW,
                &scratch.pkt,
                o.src,
                o.dst,
                j,
                clock::now(),
            );
        }
        let (kind, until_jiffies) = match o.cache {
            Cache::Judged(track) if !o.opened && cacheable(j, track) => (CACHED_JUDGED, 0),
            Cache::Established(until) => (CACHED_ESTABLISHED, until),
            _ => return,
        };
        let entry = flowcache::Entry {
            kind,
            src: o.src,
            dst: o.dst,
            j: *j,
            slot: counter,
            until_jiffies,
            checked_jiffies: checked,
        };
        flowcache::remember(s, &scratch.pkt, &scratch.probe, &entry);
    }

    /// The whole pipeline under one policy generation.
    #[inline(always)]
    fn judge(slot: u8, s: &Settings, scratch: &mut Scratch, ctx: &XdpContext) -> Outcome {
        let frame = XdpFrame {
            start: ctx.data(),
            end: ctx.data_end(),
        };
        if parse::parse(&frame, &mut scratch.pkt).is_err() {
            return Outcome::new(NO_SEGMENT, NO_SEGMENT, Judgement::drop(REASON_MALFORMED));
        }
        let pkt = &scratch.pkt;
        let track = tracking(pkt.family, pkt.proto, pkt.icmp_type);
        // Fast paths: unfragmented IP packets that are not infrastructure
        // (parse has classified that already), of flows seen before. TCP
        // FIN and RST change conntrack and always reach it.
        let mut cache = Cache::No;
        if pkt.kind == KIND_IP && pkt.frag == FRAG_NONE {
            let conntrack_unchanged =
                pkt.proto != IPPROTO_TCP || pkt.tcp_flags & (TCP_FIN | TCP_RST) == 0;
            flowcache::probe(pkt, &mut scratch.probe);
            if conntrack_unchanged {
                if let Some((src, dst, j, counter, e)) = flowcache::lookup(s, pkt, &scratch.probe) {
                    let mut o = Outcome::new(src, dst, j);
                    o.cache = Cache::Hit(e);
                    o.slot = counter;
                    return o;
                }
            }
            match conntrack::established(s, pkt, &mut scratch.ct, track) {
                Fast::Hit(src, dst, j, counter, until) => {
                    let mut o = Outcome::new(src, dst, j);
                    o.slot = counter;
                    if conntrack_unchanged && until != 0 {
                        o.cache = Cache::Established(until);
                    }
                    return o;
                }
                Fast::Present => {}
                Fast::Absent if conntrack_unchanged => cache = Cache::Judged(track),
                Fast::Absent => {}
            }
            let mut o = judge_in_full(slot, s, scratch, track);
            o.cache = if o.until != 0 && conntrack_unchanged {
                // Conntrack continued the flow after identifying the sender.
                Cache::Established(o.until)
            } else {
                cache
            };
            return o;
        }
        // Not probed: nothing of this packet may enter the cache.
        judge_in_full(slot, s, scratch, track)
    }

    /// Identity, spoofing, fragments, conntrack and policy, in the order
    /// the specification gives them.
    #[inline(always)]
    fn judge_in_full(slot: u8, s: &Settings, scratch: &mut Scratch, track: Tracking) -> Outcome {
        let pkt = &scratch.pkt;
        let dst = identity::destination(slot, s, pkt);

        if pkt.kind == KIND_INFRA {
            let src = identity::source(slot, s, pkt, false).unwrap_or_else(|e| e.0);
            let j = if s.infrastructure == ACTION_ALLOW {
                Judgement::pass(REASON_INFRASTRUCTURE)
            } else {
                Judgement::drop(REASON_INFRASTRUCTURE)
            };
            return Outcome::new(src, dst, j);
        }
        let src = match identity::source(slot, s, pkt, true) {
            Ok(seg) => seg,
            Err(identity::Spoofed(seg)) => {
                return Outcome::new(seg, dst, Judgement::drop(REASON_SPOOFED))
            }
        };
        let f = Flow {
            src,
            dst,
            src_flags: segment_flags(slot, src),
            dst_flags: segment_flags(slot, dst),
        };

        if pkt.kind == KIND_OTHER {
            let j = monitor(
                default_judgement(s.default_action),
                f.src_flags,
                f.dst_flags,
            );
            return Outcome::new(src, dst, j);
        }
        if pkt.frag != FRAG_NONE && s.fragments == FRAGMENTS_DENY {
            return Outcome::new(src, dst, Judgement::drop(REASON_FRAGMENT_UNTRACKED));
        }
        if pkt.frag == FRAG_LATER {
            let j = fragments::follow(pkt, &mut scratch.frag, s);
            return Outcome::new(src, dst, j);
        }
        let t = conntrack::judge(slot, s, pkt, &mut scratch.ct, &f, track);
        let mut o = Outcome::new(src, t.dst, t.j);
        o.opened = t.opened;
        o.slot = t.slot;
        o.until = t.until;
        if pkt.frag == FRAG_FIRST
            && fragments::remember(pkt, &mut scratch.frag, &o.j).is_err()
            && o.j.is_pass()
        {
            o.j = on_fault(o.j, f.src_flags, f.dst_flags);
            o.slot = SLOT_UNKNOWN;
        }
        o
    }

    #[no_mangle]
    #[link_section = "license"]
    pub static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    // The datapath only exists for the BPF target; see ispf-userspace/build.rs.
}
