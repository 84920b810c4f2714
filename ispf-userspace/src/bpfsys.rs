//! The few bpf(2) commands aya 0.14 does not offer: opening a pinned
//! object and reading what the kernel says a link is attached to.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// Raw `bpf(cmd, attr, size)`.
///
/// # Safety
/// `attr` must be the attribute layout `cmd` expects, and every pointer in
/// it valid for what the kernel reads or writes.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: delegated to the caller.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens the object pinned at `path`.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let mut attr = Attr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    // SAFETY: BPF_OBJ_GET's layout; `c` outlives the call.
    let fd = unsafe { bpf(BPF_OBJ_GET, &mut attr)? };
    // SAFETY: the kernel returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// What the kernel says a BPF link is: its program and, for XDP and TCX
/// links, the interface it is attached to (0 once the interface is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFacts {
    pub link_type: u32,
    pub prog_id: u32,
    pub ifindex: u32,
}

pub const BPF_LINK_TYPE_XDP: u32 = 6;
pub const BPF_LINK_TYPE_TCX: u32 = 11;

pub fn link_facts(link: &OwnedFd) -> io::Result<LinkFacts> {
    // struct bpf_link_info: type, id, prog_id, then an 8-aligned union
    // whose xdp and tcx members start with the ifindex.
    let mut info = [0u64; 16];
    #[repr(C)]
    struct Attr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = Attr {
        bpf_fd: link.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD's layout; `info` is writable for
    // `info_len` bytes and outlives the call.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)? };
    let word = |i: usize| info[i / 2].to_ne_bytes()[(i % 2) * 4..(i % 2) * 4 + 4].to_vec();
    let u = |i: usize| u32::from_ne_bytes(word(i).try_into().expect("4 bytes"));
    Ok(LinkFacts {
        link_type: u(0),
        prog_id: u(2),
        ifindex: u(4),
    })
}

/// The facts of the link pinned at `path`.
pub fn pinned_link_facts(path: &Path) -> io::Result<LinkFacts> {
    link_facts(&obj_get(path)?)
}

/// Index of interface `name` in this network namespace (0: none).
pub fn ifindex(name: &str) -> u32 {
    let Ok(c) = CString::new(name) else { return 0 };
    // SAFETY: a NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}
