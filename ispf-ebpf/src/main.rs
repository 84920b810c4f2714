//! The ispf XDP program: parse, identify, decide, track, count. The entry
//! point only maps the pipeline's outcome to an XDP action; every outcome
//! carries exactly one reason from the policy specification.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod conntrack;
#[cfg(target_arch = "bpf")]
mod counters;
#[cfg(target_arch = "bpf")]
mod events;
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
        Settings, ACTION_ALLOW, EVENT_DENIED, EVENT_NEW_FLOW, FRAGMENTS_DENY, NO_SEGMENT,
        REASON_FRAGMENT_UNTRACKED, REASON_INFRASTRUCTURE, REASON_INTERNAL_FAULT, REASON_MALFORMED,
        REASON_SPOOFED, REASON_WOULD_DROP,
    };
    use ispf_ebpf::decide::{default_judgement, monitor, on_fault, Judgement};

    use crate::{
        conntrack::{self, Flow},
        counters, events, fragments, identity,
        maps::{Scratch, ISPF_ACTIVE, ISPF_SCRATCH, ISPF_SETTINGS},
        policy::segment_flags,
    };
    use ispf_ebpf::parse::{
        self, Frame, Malformed, FRAG_FIRST, FRAG_LATER, FRAG_NONE, KIND_INFRA, KIND_OTHER, MAX_OFF,
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
                    counters::record(NO_SEGMENT, NO_SEGMENT, &j, bytes, 0);
                    return xdp_action::XDP_DROP;
                }
            };
        // SAFETY: this CPU's own slot; XDP does not nest on a CPU.
        let scratch = unsafe { &mut *scratch };
        let (src, dst, j, opened) = judge(&ctx, slot, settings, scratch);
        counters::record(src, dst, &j, bytes, settings.epoch);
        report(&ctx, scratch, src, dst, &j, opened, settings.world_segment);
        if j.is_pass() {
            xdp_action::XDP_PASS
        } else {
            xdp_action::XDP_DROP
        }
    }

    /// Events for the controller: denied flows (their first packet) and new
    /// east-west flows. Packets of established flows never get here.
    #[inline(always)]
    fn report(
        ctx: &XdpContext,
        scratch: &mut Scratch,
        src: u16,
        dst: u16,
        j: &Judgement,
        opened: bool,
        world: u16,
    ) {
        let denied = !j.is_pass() || j.reason == REASON_WOULD_DROP;
        if denied && j.reason != REASON_MALFORMED {
            let now = events::now();
            if events::first_of_denied_flow(&scratch.pkt, &mut scratch.denied, now) {
                events::emit(ctx, EVENT_DENIED, &scratch.pkt, src, dst, j, now);
            }
        } else if opened && src != world && dst != world {
            events::emit(
                ctx,
                EVENT_NEW_FLOW,
                &scratch.pkt,
                src,
                dst,
                j,
                events::now(),
            );
        }
    }

    /// The whole pipeline under one policy generation: `(source segment,
    /// destination segment, judgement, opened a new flow)`.
    #[inline(always)]
    fn judge(
        ctx: &XdpContext,
        slot: u8,
        s: &Settings,
        scratch: &mut Scratch,
    ) -> (u16, u16, Judgement, bool) {
        let frame = XdpFrame {
            start: ctx.data(),
            end: ctx.data_end(),
        };
        if parse::parse(&frame, &mut scratch.pkt).is_err() {
            return (
                NO_SEGMENT,
                NO_SEGMENT,
                Judgement::drop(REASON_MALFORMED),
                false,
            );
        }
        let pkt = &scratch.pkt;
        let dst = identity::destination(slot, s, pkt);

        if pkt.kind == KIND_INFRA {
            let src = identity::source(slot, s, pkt, false).unwrap_or_else(|e| e.0);
            let j = if s.infrastructure == ACTION_ALLOW {
                Judgement::pass(REASON_INFRASTRUCTURE)
            } else {
                Judgement::drop(REASON_INFRASTRUCTURE)
            };
            return (src, dst, j, false);
        }
        let src = match identity::source(slot, s, pkt, true) {
            Ok(seg) => seg,
            Err(identity::Spoofed(seg)) => {
                return (seg, dst, Judgement::drop(REASON_SPOOFED), false)
            }
        };
        let f = Flow {
            src,
            dst,
            src_flags: segment_flags(slot, src),
            dst_flags: segment_flags(slot, dst),
        };

        if pkt.kind == KIND_OTHER {
            return (
                src,
                dst,
                monitor(
                    default_judgement(s.default_action),
                    f.src_flags,
                    f.dst_flags,
                ),
                false,
            );
        }
        if pkt.frag != FRAG_NONE && s.fragments == FRAGMENTS_DENY {
            return (src, dst, Judgement::drop(REASON_FRAGMENT_UNTRACKED), false);
        }
        if pkt.frag == FRAG_LATER {
            return (
                src,
                dst,
                fragments::follow(pkt, &mut scratch.frag, s),
                false,
            );
        }
        let (mut j, dst, opened) = conntrack::judge(slot, s, pkt, &mut scratch.ct, &f);
        if pkt.frag == FRAG_FIRST
            && fragments::remember(pkt, &mut scratch.frag, &j).is_err()
            && j.is_pass()
        {
            j = on_fault(j, f.src_flags, f.dst_flags);
        }
        (src, dst, j, opened)
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
