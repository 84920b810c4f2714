#!/usr/bin/env python3
"""Where the XDP program's time goes, by source line.

`perf` names a BPF program's samples only `bpf_prog_<tag>_<name>+0xOFF`.
This maps each offset to the program's own source line through the
jited line info the kernel keeps for a loaded program (BTF line info; no
libbfd needed, which Debian's bpftool lacks), and sums the samples per
line: the program's own instructions ("self", mostly stalls on a cold
load) apart from the helpers it calls at that line ("call": hash-map
chain walks, LRU inserts, ...).

    perf record -a -g -o /tmp/perf.data -- ./target/release/ispf-bench --only scan
    perf script -i /tmp/perf.data -F ip,sym,symoff > /tmp/perf.txt
    # with a program of the same build loaded (the samples' tag must match):
    sudo python3 bench/jitprof.py /tmp/perf.txt [--prog ispf] [--top 30]

Needs `perf` (Debian: `linux-perf`) and `bpftool`; `cargo xtask setup`
installs bpftool but not perf, as no test runs this.
Keep the program loaded while this runs: e.g. a second
`ISPF_BENCH_RUNS=50 ispf-bench --per-packet-only`, or a running `ispf`.
Sampling in a VM is by timer (no PMU): a miss shows on the instruction
that waits for it, and two overlapping misses show as the later one.
"""

import argparse
import bisect
import ctypes
import json
import os
import re
import struct
import subprocess
import sys
from collections import Counter

SYS_BPF = 321  # x86_64
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15

libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 256)
    r = libc.syscall(SYS_BPF, cmd, buf, 256)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def prog_info(fd, buf):
    bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("IIQ", fd, len(buf), ctypes.addressof(buf)))


def jited_lines(prog_id):
    """(subprogram start address, offset in it, xlated insn) per line record."""
    fd = bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("I", prog_id))
    first = ctypes.create_string_buffer(256)
    prog_info(fd, first)
    raw = first.raw
    # Offsets in struct bpf_prog_info (include/uapi/linux/bpf.h).
    nks, nfl = struct.unpack_from("II", raw, 104)
    nli, = struct.unpack_from("I", raw, 148)
    njli, lrs, jlrs = struct.unpack_from("III", raw, 168)
    ks = (ctypes.c_uint64 * nks)()
    fl = (ctypes.c_uint32 * nfl)()
    li = ctypes.create_string_buffer(nli * lrs)
    jli = (ctypes.c_uint64 * njli)()
    req = bytearray(256)
    struct.pack_into("II", req, 104, nks, nfl)
    struct.pack_into("QQ", req, 112, ctypes.addressof(ks), ctypes.addressof(fl))
    struct.pack_into("I", req, 148, nli)
    struct.pack_into("QQ", req, 152, ctypes.addressof(li), ctypes.addressof(jli))
    struct.pack_into("III", req, 168, njli, lrs, jlrs)
    second = ctypes.create_string_buffer(bytes(req), 256)
    prog_info(fd, second)
    os.close(fd)
    starts = sorted(ks[i] for i in range(nks))
    out = []
    for k in range(njli):
        insn, = struct.unpack_from("I", li.raw, k * lrs)
        addr = jli[k]
        start = starts[bisect.bisect_right(starts, addr) - 1]
        out.append((start, addr - start, insn))
    return out


def source_lines(prog_id, own):
    """Xlated insn -> the last line of our own source before it."""
    text = subprocess.run(
        ["bpftool", "prog", "dump", "xlated", "id", str(prog_id), "linum"],
        check=True, capture_output=True, text=True,
    ).stdout
    lines, cur = {}, "?"
    for l in text.splitlines():
        if l.startswith(";"):
            m = re.search(r"\[file:(\S+) line_num:(\d+)", l)
            if m and own in m.group(1):
                code = l[1:].split("[file")[0].strip()[:60]
                cur = f"{m.group(1).split('/')[-1]}:{m.group(2)} {code}"
        else:
            m = re.match(r"\s*(\d+):", l)
            if m:
                lines[int(m.group(1))] = cur
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("perf_script", help="output of perf script -F ip,sym,symoff")
    ap.add_argument("--prog", default="ispf", help="program name (default ispf)")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--own", default=repo + "/",
                    help="path prefix of our source files (default: this checkout)")
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()

    blocks = open(a.perf_script).read().split("\n\n")
    tags = Counter()
    for b in blocks:
        # The innermost frame of the program: the subprogram that ran.
        m = re.search(r"bpf_prog_([0-9a-f]{16})_" + re.escape(a.prog) + r"\+", b)
        if m:
            tags[m.group(1)] += 1
    if not tags:
        sys.exit(f"no samples of a program named {a.prog} in {a.perf_script}")
    progs = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], check=True,
                                      capture_output=True, text=True).stdout)
    loaded = [p for p in progs if p.get("name") == a.prog]
    if not loaded:
        sys.exit(f"no program named {a.prog} is loaded: load the same build while this runs")
    # The busiest innermost tag is the subprogram holding the pipeline
    # (the entry's own tag differs): find the loaded program one of whose
    # subprograms kallsyms names with that tag.
    tag = tags.most_common(1)[0][0]
    best = None
    for p in loaded:
        recs = jited_lines(p["id"])
        subs = sorted({s for s, _, _ in recs})
        # kallsyms names each subprogram bpf_prog_<tag>; find this tag's start.
        with open("/proc/kallsyms") as f:
            addr = [int(l.split()[0], 16) for l in f if f"bpf_prog_{tag}_{a.prog}" in l]
        hit = [x for x in addr if x in subs]
        if hit:
            best = (p["id"], hit[0], recs)
            break
    if best is None:
        sys.exit(f"none of the loaded {a.prog} programs has subprogram {tag}: is it the same build?")
    prog_id, start, recs = best
    offs = sorted((off, insn) for s, off, insn in recs if s == start)
    keys = [o for o, _ in offs]
    lines = source_lines(prog_id, a.own)

    per, total = Counter(), 0
    for b in blocks:
        frames = [l.strip().split(None, 1)[1] for l in b.strip().split("\n")
                  if len(l.strip().split(None, 1)) > 1]
        at = [i for i, f in enumerate(frames) if f.startswith(f"bpf_prog_{tag}_")]
        if not at:
            continue
        i = at[0]
        total += 1
        off = int(frames[i].split("+")[1], 16)
        insn = offs[max(bisect.bisect_right(keys, off) - 1, 0)][1]
        kind = "self" if i == 0 else "call"
        per[(lines.get(insn, "?"), kind)] += 1
    print(f"{total} samples in bpf_prog_{tag}_{a.prog} (program id {prog_id})")
    for (line, kind), n in per.most_common(a.top):
        print(f"{n:6d} {100 * n / total:5.1f}%  {kind:4s}  {line}")


if __name__ == "__main__":
    main()
