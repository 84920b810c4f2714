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
mod feeds;
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
mod sightings;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::{xdp_action, xdp_md, TC_ACT_OK, TC_ACT_SHOT},
        helpers::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
        macros::{classifier, xdp},
        programs::{TcContext, XdpContext},
    };
    use ispf_common::FINGERPRINT_BYTES;
    use ispf_ebpf::parse::{Frame, Malformed, MAX_OFF, OUTER_TAG};

    use crate::pipeline;

    /// The packet as XDP hands it over: `[data, data_end)`.
    struct XdpFrame {
        start: usize,
        end: usize,
        ctx: *mut xdp_md,
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

        #[inline(always)]
        fn copy_out(&self, off: usize, dst: &mut [u8; FINGERPRINT_BYTES]) -> usize {
            let n = copy_len(self.size(), off);
            // SAFETY: the helper writes at most `n` <= dst.len() bytes.
            let rc = unsafe {
                bpf_xdp_load_bytes(self.ctx, off as u32, dst.as_mut_ptr().cast(), n as u32)
            };
            if n == 0 || rc != 0 {
                0
            } else {
                n
            }
        }
    }

    /// How many bytes from `off` a copy takes: what the frame has, at
    /// most [`FINGERPRINT_BYTES`], and at least one (helpers refuse 0).
    #[inline(always)]
    fn copy_len(size: usize, off: usize) -> usize {
        let left = size.saturating_sub(off);
        let n = if left >= FINGERPRINT_BYTES {
            FINGERPRINT_BYTES
        } else {
            left
        };
        // In the form the verifier can bound: 1 ..= FINGERPRINT_BYTES.
        (n.wrapping_sub(1) & (FINGERPRINT_BYTES - 1)) + 1
    }

    #[xdp]
    pub fn ispf(ctx: XdpContext) -> u32 {
        let frame = XdpFrame {
            start: ctx.data(),
            end: ctx.data_end(),
            ctx: ctx.ctx,
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
        skb: *const core::ffi::c_void,
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

        #[inline(always)]
        fn copy_out(&self, off: usize, dst: &mut [u8; FINGERPRINT_BYTES]) -> usize {
            let n = copy_len(self.len, off);
            // SAFETY: the helper writes at most `n` <= dst.len() bytes.
            let rc = unsafe {
                bpf_skb_load_bytes(self.skb, off as u32, dst.as_mut_ptr().cast(), n as u32)
            };
            if self.len <= off || rc != 0 {
                0
            } else {
                n
            }
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
            skb: ctx.skb.skb as *const core::ffi::c_void,
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
