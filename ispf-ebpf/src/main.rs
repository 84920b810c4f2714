//! The ispf datapath's entry points: XDP (physical NICs) and TC ingress
//! (veth, tap and other virtual ports, where XDP would give up GRO), and
//! the verdict. Everything that decides is in [`pipeline`], one code path
//! for both; this maps its answer to an action, and every outcome the
//! pipeline counted carries exactly one reason from the policy
//! specification.
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
mod pipeline;
#[cfg(target_arch = "bpf")]
mod policy;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::{xdp_action, TC_ACT_OK, TC_ACT_SHOT},
        macros::{classifier, xdp},
        programs::{TcContext, XdpContext},
    };
    use ispf_ebpf::parse::{Frame, Malformed, MAX_OFF, OUTER_TAG};

    use crate::pipeline;

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
        let frame = XdpFrame {
            start: ctx.data(),
            end: ctx.data_end(),
        };
        // SAFETY: the context XDP hands every program.
        let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
        // The one verdict site: anything but an explicit pass drops.
        if pipeline::process(&frame, ifindex) {
            xdp_action::XDP_PASS
        } else {
            xdp_action::XDP_DROP
        }
    }

    /// A socket buffer at TC: `[data, data_end)` is its linear part (the
    /// headers, pulled there), `len` the whole frame, and the outer VLAN
    /// tag may sit in the skb's metadata instead of the frame.
    struct SkbFrame {
        start: usize,
        end: usize,
        len: usize,
        tag: u32,
    }

    impl Frame for SkbFrame {
        #[inline(always)]
        fn size(&self) -> usize {
            self.len
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
            // SAFETY: as in `XdpFrame::bytes`: inside the linear data.
            Ok(unsafe { &*(p as *const [u8; N]) })
        }

        #[inline(always)]
        fn outer_tag(&self) -> u32 {
            self.tag
        }
    }

    /// Headers the pipeline may read: enough for two tags, IPv6 with a
    /// chain of extension headers and a transport header.
    const PULL: u32 = 512;

    #[classifier]
    pub fn ispf_tc(ctx: TcContext) -> i32 {
        let len = ctx.len();
        let want = if len < PULL { len } else { PULL };
        if ((ctx.data_end() - ctx.data()) as u32) < want {
            // Only a frame whose headers are not linear pays for the pull.
            let _ = ctx.pull_data(want);
        }
        // SAFETY: fields of the context TC hands every program.
        let (tag, ifindex) = unsafe {
            let skb = &*ctx.skb.skb;
            let tag = if skb.vlan_present != 0 {
                OUTER_TAG | (skb.vlan_tci & 0x0fff)
            } else {
                0
            };
            (tag, skb.ingress_ifindex)
        };
        let frame = SkbFrame {
            start: ctx.data(),
            end: ctx.data_end(),
            len: len as usize,
            tag,
        };
        // The one verdict site: anything but an explicit pass drops.
        if pipeline::process(&frame, ifindex) {
            TC_ACT_OK
        } else {
            TC_ACT_SHOT
        }
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
