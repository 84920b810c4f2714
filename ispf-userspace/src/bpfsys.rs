//! The few bpf(2) commands aya 0.14 does not offer: opening a pinned
//! object, reading what the kernel says a link is attached to, replacing
//! a link's program, and batched map operations.

use std::{
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
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

/// BPF_OBJ_GET_INFO_BY_FD into `info` (the start of the kernel's info
/// struct for `fd`'s kind of object; the kernel fills what fits).
fn obj_info<const N: usize>(
    fd: std::os::fd::BorrowedFd<'_>,
    info: &mut [u64; N],
) -> io::Result<()> {
    #[repr(C)]
    struct Attr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = Attr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD's layout; `info` is writable for
    // `info_len` bytes and outlives the call.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)? };
    Ok(())
}

/// The `i`-th u32 of an info struct read as u64 words.
fn info_u32(info: &[u64], i: usize) -> u32 {
    let b = info[i / 2].to_ne_bytes();
    u32::from_ne_bytes(b[(i % 2) * 4..(i % 2) * 4 + 4].try_into().expect("4 bytes"))
}

pub fn link_facts(link: &OwnedFd) -> io::Result<LinkFacts> {
    // struct bpf_link_info: type, id, prog_id, then an 8-aligned union
    // whose xdp and tcx members start with the ifindex.
    let mut info = [0u64; 16];
    obj_info(link.as_fd(), &mut info)?;
    Ok(LinkFacts {
        link_type: info_u32(&info, 0),
        prog_id: info_u32(&info, 2),
        ifindex: info_u32(&info, 4),
    })
}

const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_F_REPLACE: u32 = 1 << 2;

/// Makes `link` run `new_prog` instead of `old_prog`, atomically: packets
/// meet one program or the other, never none (BPF_LINK_UPDATE). Fails
/// (EPERM) when the link does not run `old_prog`, so a program someone
/// else attached is never replaced by mistake.
pub fn link_update(
    link: std::os::fd::BorrowedFd<'_>,
    new_prog: std::os::fd::BorrowedFd<'_>,
    old_prog: std::os::fd::BorrowedFd<'_>,
) -> io::Result<()> {
    #[repr(C)]
    struct Attr {
        link_fd: u32,
        new_prog_fd: u32,
        flags: u32,
        old_prog_fd: u32,
    }
    let mut attr = Attr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: new_prog.as_raw_fd() as u32,
        flags: BPF_F_REPLACE,
        old_prog_fd: old_prog.as_raw_fd() as u32,
    };
    // SAFETY: BPF_LINK_UPDATE's layout (link_update in union bpf_attr);
    // no pointers.
    unsafe { bpf(BPF_LINK_UPDATE, &mut attr)? };
    Ok(())
}

/// The kernel id of the program `prog` refers to.
pub fn prog_id(prog: std::os::fd::BorrowedFd<'_>) -> io::Result<u32> {
    // struct bpf_prog_info starts with `__u32 type; __u32 id;`.
    let mut info = [0u64; 1];
    obj_info(prog, &mut info)?;
    Ok(info_u32(&info, 1))
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

const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_NOEXIST: u64 = 1;

/// Adds `key -> value` unless the map has `key` (BPF_NOEXIST): whether it
/// was added.
pub fn insert_new<K, V>(fd: std::os::fd::BorrowedFd<'_>, key: &K, value: &V) -> io::Result<bool> {
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let mut attr = Attr {
        map_fd: fd.as_raw_fd() as u32,
        _pad: 0,
        key: key as *const K as u64,
        value: value as *const V as u64,
        flags: BPF_NOEXIST,
    };
    // SAFETY: BPF_MAP_UPDATE_ELEM's layout; the caller's K and V are the
    // map's key and value sizes and are read during the call only.
    match unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries per batch call: large enough that the syscall's cost vanishes,
/// small enough to keep the buffers modest.
const CHUNK: usize = 8192;

/// Every entry of a hash or array map, read a few thousand at a time
/// (BPF_MAP_LOOKUP_BATCH) instead of two syscalls per key. Not for per-CPU
/// maps (their values are per CPU) nor LPM tries (no batch support).
pub fn lookup_all<K: Copy + Default, V: Copy + Default>(
    fd: std::os::fd::BorrowedFd<'_>,
) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    scan(fd, |k: &K, v: &V| out.push((*k, *v)))?;
    Ok(out)
}

/// Calls `f` for every entry of a hash or array map, read in batches,
/// without collecting them (conntrack holds hundreds of thousands).
pub fn scan<K: Copy + Default, V: Copy + Default>(
    fd: std::os::fd::BorrowedFd<'_>,
    mut f: impl FnMut(&K, &V),
) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let mut keys = vec![K::default(); CHUNK];
    let mut values = vec![V::default(); CHUNK];
    // The kernel's cursor: a bucket index (hash) or a key (array); 8 bytes
    // hold either.
    let mut cursor = [0u64; 2];
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { cursor.as_ptr() as u64 },
            out_batch: cursor.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: BPF_MAP_LOOKUP_BATCH's layout; `keys` and `values` hold
        // `count` elements of the map's key and value sizes (the caller's
        // K and V), the cursor 16 bytes; all outlive the call.
        let rc = unsafe { bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) };
        let n = attr.count as usize;
        for (k, v) in keys[..n].iter().zip(&values[..n]) {
            f(k, v);
        }
        match rc {
            Ok(_) => first = false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// Writes `keys[i] -> values[i]` (BPF_MAP_UPDATE_BATCH). On failure,
/// returns how many entries were written before it, with the error.
pub fn update_all<K, V>(
    fd: std::os::fd::BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> Result<(), (usize, io::Error)> {
    use std::os::fd::AsRawFd as _;
    assert_eq!(keys.len(), values.len());
    let mut done = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(CHUNK);
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: n as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: BPF_MAP_UPDATE_BATCH's layout; `n` keys and values of the
        // map's sizes are readable from the pointers during the call.
        if let Err(e) = unsafe { bpf(BPF_MAP_UPDATE_BATCH, &mut attr) } {
            return Err((done + attr.count as usize, e));
        }
        done += n;
    }
    Ok(())
}

/// Deletes `keys` (BPF_MAP_DELETE_BATCH); keys that are not there are
/// skipped. Returns how many were deleted.
pub fn delete_all<K>(fd: std::os::fd::BorrowedFd<'_>, keys: &[K]) -> io::Result<usize> {
    use std::os::fd::AsRawFd as _;
    let mut done = 0;
    let mut deleted = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(CHUNK);
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            count: n as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: BPF_MAP_DELETE_BATCH's layout; `n` keys of the map's key
        // size are readable during the call.
        match unsafe { bpf(BPF_MAP_DELETE_BATCH, &mut attr) } {
            Ok(_) => {
                deleted += n;
                done += n;
            }
            // The batch stops at a missing key: skip it and go on.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                deleted += attr.count as usize;
                done += attr.count as usize + 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}
