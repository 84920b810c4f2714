//! The second half of an upgrade from an older layout ([`super::migrate`]
//! prepares the new datapath): switching every pinned link from the old
//! program to the new one with BPF_LINK_UPDATE, so a port runs one program
//! or the other and never none; then carrying what the old program did
//! until then, and moving the new pins into the old ones' place.
//!
//! Every step is recorded or can be read back from the kernel, so an
//! upgrade killed anywhere is finished or undone by [`resume`] at the next
//! start: before the `switched` mark (made once every port runs the new
//! program) it is undone — ports already switched are switched back, the
//! staged datapath removed — and after it, it is finished.

use std::{
    fs,
    os::fd::{AsFd, BorrowedFd, OwnedFd},
    path::Path,
};

use super::{
    migrate::{pin_err, staging_dir, Carried, OldPins, Pass},
    Datapath, Result,
};
use crate::bpfsys;

/// Marks in the staging directory (directories: bpffs holds no files).
const SWITCHED: &str = "switched";
const COUNTED: &str = "counted";

fn mark(pin_dir: &Path, name: &str) -> Result<()> {
    let path = staging_dir(pin_dir).join(name);
    fs::create_dir_all(&path).map_err(|e| pin_err(&path, "cannot make it", e))
}

fn marked(pin_dir: &Path, name: &str) -> bool {
    staging_dir(pin_dir).join(name).exists()
}

fn remove_pin(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The links pinned under `pin_dir`, opened, with what the kernel says
/// they are. A link that cannot be read is an error: whether it runs a
/// program being replaced must never be guessed.
fn links(pin_dir: &Path) -> Result<Vec<(String, OwnedFd, bpfsys::LinkFacts)>> {
    let dir = pin_dir.join("links");
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(d) => d
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(pin_err(&dir, "cannot list it", e)),
    };
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let link = bpfsys::obj_get(&path).map_err(|e| pin_err(&path, "cannot open it", e))?;
            let facts = bpfsys::link_facts(&link).map_err(|e| pin_err(&path, "not a link", e))?;
            Ok((name, link, facts))
        })
        .collect()
}

/// Switches every link that runs one of `from`'s programs (by kernel id)
/// to the matching one of `to`. A link of a port that is gone is left: the
/// port is enforced anew when it returns. If a switch fails, those made
/// are switched back. `switched` hears how many ports run `to` so far.
fn switch(
    pin_dir: &Path,
    from: [(u32, BorrowedFd); 2],
    to: [BorrowedFd; 2],
    switched: &dyn Fn(usize),
) -> Result<Vec<String>> {
    let mut done: Vec<(String, OwnedFd, usize)> = Vec::new();
    for (name, link, facts) in links(pin_dir)? {
        if facts.ifindex == 0 {
            continue;
        }
        let Some(i) = from.iter().position(|(id, _)| *id == facts.prog_id) else {
            continue;
        };
        match bpfsys::link_update(link.as_fd(), to[i], from[i].1) {
            Ok(()) => {
                done.push((name, link, i));
                switched(done.len());
            }
            // The port went away meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => {}
            Err(e) => {
                let mut stuck = Vec::new();
                for (n, link, i) in done.iter().rev() {
                    if bpfsys::link_update(link.as_fd(), from[*i].1, to[*i]).is_err() {
                        stuck.push(n.as_str());
                    }
                }
                let path = pin_dir.join("links").join(&name);
                let mut what = "cannot switch its program".to_owned();
                if !stuck.is_empty() {
                    what += &format!(
                        " (and {} could not be switched back; the next start does it)",
                        stuck.join(", ")
                    );
                }
                return Err(pin_err(&path, &what, e));
            }
        }
    }
    Ok(done.into_iter().map(|d| d.0).collect())
}

impl Datapath {
    /// Switches every port that runs `old`'s programs to this datapath's
    /// (the XDP entry for XDP links, the TC entry for TCX links), then
    /// records that it did. Returns the ports switched.
    pub fn take_over_links(
        &self,
        old: &OldPins,
        pin_dir: &Path,
        switched: &dyn Fn(usize),
    ) -> Result<Vec<String>> {
        let to = [
            self.program().fd()?.as_fd(),
            self.tc_program().fd()?.as_fd(),
        ];
        let from = [(old.xdp_id, old.xdp.as_fd()), (old.tc_id, old.tc.as_fd())];
        let ports = switch(pin_dir, from, to, switched)?;
        mark(pin_dir, SWITCHED)?;
        Ok(ports)
    }
}

/// Once every port runs `dp`: the flows `old`'s program opened since they
/// were copied and everything it counted are carried into `dp` (once),
/// then the new pins take the old ones' place. A failure to carry is
/// returned as a warning, never an error: the ports already run the new
/// program, and the upgrade must end.
pub fn complete(
    pin_dir: &Path,
    dp: &mut Datapath,
    old: &OldPins,
    moved: &dyn Fn(&str),
) -> Result<(Carried, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut late = Carried::default();
    if !marked(pin_dir, COUNTED) {
        match dp.carry_state(old, Pass::CatchUp) {
            Ok(c) => late = c,
            Err(e) => warnings.push(format!("flows opened during the upgrade: {e}")),
        }
        match dp.carry_counters(old) {
            Ok(n) => late.counter_keys = n,
            Err(e) => warnings.push(format!("the older datapath's counters: {e}")),
        }
        mark(pin_dir, COUNTED)?;
    }
    finish(pin_dir, moved)?;
    Ok((late, warnings))
}

/// Moves the staged pins into `pin_dir` in place of the old ones (whose
/// program and maps the kernel frees once no link runs them). Each step
/// can be repeated. `moved` hears of each pin moved (`moved-maps`, ...).
fn finish(pin_dir: &Path, moved: &dyn Fn(&str)) -> Result<()> {
    let staging = staging_dir(pin_dir);
    // The program last: pins with a `prog` are what a start adopts.
    for name in ["maps", "prog_tc", "prog"] {
        let new = staging.join(name);
        if !new.exists() {
            continue;
        }
        let old = pin_dir.join(name);
        remove_pin(&old).map_err(|e| pin_err(&old, "cannot remove it", e))?;
        fs::rename(&new, &old).map_err(|e| pin_err(&new, "cannot move it", e))?;
        moved(&format!("moved-{name}"));
    }
    remove_pin(&staging).map_err(|e| pin_err(&staging, "cannot remove it", e))
}

/// Records that nothing of the old datapath is to be carried (its segment
/// ids are unknown): an upgrade resumed later only moves the pins.
pub fn nothing_to_carry(pin_dir: &Path) -> Result<()> {
    mark(pin_dir, COUNTED)
}

/// Removes a staged datapath that no port runs.
pub fn abandon(pin_dir: &Path) -> Result<()> {
    let staging = staging_dir(pin_dir);
    remove_pin(&staging).map_err(|e| pin_err(&staging, "cannot remove it", e))
}

/// What [`resume`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// No upgrade was under way.
    Nothing,
    /// Every port ran the new program: what was left was done.
    Finished,
    /// Not every port ran the new program: those that did were switched
    /// back and the staged datapath removed; the old one, which never
    /// stopped enforcing, is upgraded again.
    Undone,
}

/// Finishes or undoes an upgrade a controller did not live to finish.
pub fn resume(pin_dir: &Path, moved: &dyn Fn(&str)) -> Result<Resumed> {
    let staging = staging_dir(pin_dir);
    if !staging.exists() {
        return Ok(Resumed::Nothing);
    }
    if !marked(pin_dir, SWITCHED) {
        switch_back(pin_dir)?;
        abandon(pin_dir)?;
        return Ok(Resumed::Undone);
    }
    // Killed before carrying what the old program did last: carry it now,
    // while its maps are still pinned.
    if !marked(pin_dir, COUNTED) && staging.join("maps").exists() {
        if let (Ok(old), Ok(mut dp)) = (OldPins::open(pin_dir), Datapath::adopt(&staging)) {
            complete(pin_dir, &mut dp, &old, moved)?;
            return Ok(Resumed::Finished);
        }
    }
    finish(pin_dir, moved)?;
    Ok(Resumed::Finished)
}

/// Switches every port that runs the staged programs back to the old
/// ones (still pinned: pins move only after the `switched` mark).
fn switch_back(pin_dir: &Path) -> Result<()> {
    let staging = staging_dir(pin_dir);
    let open = |dir: &Path, rel: &str| -> Option<(u32, OwnedFd)> {
        let fd = bpfsys::obj_get(&dir.join(rel)).ok()?;
        Some((bpfsys::prog_id(fd.as_fd()).ok()?, fd))
    };
    // A staged program that was never pinned was never attached either:
    // the switch comes after the pins.
    let (Some(new_xdp), Some(new_tc)) = (open(&staging, "prog"), open(&staging, "prog_tc")) else {
        return Ok(());
    };
    let old = |rel: &str| {
        let path = pin_dir.join(rel);
        bpfsys::obj_get(&path).map_err(|e| pin_err(&path, "cannot open it", e))
    };
    let (old_xdp, old_tc) = (old("prog")?, old("prog_tc")?);
    switch(
        pin_dir,
        [(new_xdp.0, new_xdp.1.as_fd()), (new_tc.0, new_tc.1.as_fd())],
        [old_xdp.as_fd(), old_tc.as_fd()],
        &|_| {},
    )?;
    Ok(())
}
