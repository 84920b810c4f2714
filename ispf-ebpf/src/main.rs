//! The ispf XDP program: the entry point and the verdict. Everything that
//! decides is in [`pipeline`]; this maps its answer to an XDP action, and
//! every outcome the pipeline counted carries exactly one reason from the
//! policy specification.
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
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
    use ispf_ebpf::parse::{Frame, Malformed, MAX_OFF};

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
