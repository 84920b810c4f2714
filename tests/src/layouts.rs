//! Controllers of older map layouts, for the upgrade tests: built from
//! their source, kept in `tests/layouts/` (see the README there) because a
//! clone may not hold the history they come from. The build needs only
//! the crate registry, as the workspace's own does.

use std::{fs, path::PathBuf};

use crate::programs::command;

/// The `ispf` of map layout 3 (commit 91c676f, the last before threat
/// feeds changed the layout), built on demand into `target/layout3`.
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
        fs::write(&stamp, &kept).unwrap();
    }
    let st = command("cargo")
        .args(["build", "-q", "-p", "ispf-userspace", "--bin", "ispf"])
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .status()
        .expect("cargo build");
    assert!(
        st.success(),
        "building the layout-3 ispf in {} failed",
        src.display()
    );
    dir.join("target/debug/ispf")
}
