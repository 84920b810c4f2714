//! Controllers of older map layouts, for the upgrade tests: built from
//! their source, kept in `tests/layouts/` (see the README there) because a
//! clone may not hold the history they come from. The build needs only
//! the crate registry, as the workspace's own does.

use std::{fs, path::PathBuf};

use crate::programs::command;

/// The `ispf` of map layout 3 (commit 91c676f, the last before threat
/// feeds changed the layout), built on demand into `target/layout3`; the
/// binary is removed whenever the kept source changes.
pub fn layout3_bin() -> PathBuf {
    let ws = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned();
    let tarball = ws.join("tests/layouts/ispf-layout3.tar.gz");
    let dir = ws.join("target/layout3");
    let src = dir.join("ispf-layout3");
    // Extracted again whenever the kept source changes.
    let kept = fs::read(&tarball).expect("tests/layouts/ispf-layout3.tar.gz");
    let stamp = dir.join("source.tar.gz");
    if fs::read(&stamp).ok().as_deref() != Some(&kept[..]) {
        let _ = fs::remove_dir_all(&src);
        fs::create_dir_all(&dir).unwrap();
        let st = command("tar")
            .arg("-xzf")
            .arg(&tarball)
            .arg("-C")
            .arg(&dir)
            .status()
            .expect("tar");
        assert!(st.success(), "extracting {} failed", tarball.display());
        // Nothing built from another source may survive: not its binary,
        // nor a build tree a failed build left (cargo would compare its
        // outputs with the archive's older file times and keep them).
        for old in [dir.join("ispf"), dir.join("target")] {
            remove(&old);
        }
        fs::write(&stamp, &kept).unwrap();
    }
    // The old binary is kept and its build tree removed: the tree is a
    // second full debug build (a gigabyte and more), which a CI machine's
    // disk may not hold beside the workspace's own.
    let bin = dir.join("ispf");
    if bin.exists() {
        return bin;
    }
    let build = dir.join("target");
    let st = command("cargo")
        .args(["build", "-q", "-p", "ispf-userspace", "--bin", "ispf"])
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", &build)
        .env("CARGO_INCREMENTAL", "0")
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .status()
        .expect("cargo build");
    assert!(
        st.success(),
        "building the layout-3 ispf in {} failed",
        src.display()
    );
    // Renamed into place: a copy cut short (a full disk) is never taken
    // for the binary.
    let part = dir.join("ispf.part");
    fs::copy(build.join("debug/ispf"), &part).expect("keeping the layout-3 ispf");
    fs::rename(&part, &bin).expect("keeping the layout-3 ispf");
    // Only disk: a tree left behind is removed with the next source.
    let _ = fs::remove_dir_all(&build);
    bin
}

/// Removes a file or directory that may not exist.
fn remove(p: &std::path::Path) {
    let r = if p.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            panic!("removing {}: {e}", p.display())
        }
        _ => {}
    }
}
