//! The engine's watch over its ports: a port whose interface comes back
//! without the program is attached again, and one that goes away or cannot
//! be enforced is said (log and the control socket's notes) once, when it
//! changes, not at every check.

use std::time::SystemTime;

use serde_json::json;

use super::{
    engine::{log, Engine},
    ports::{self, LinkEvent},
};

impl Engine {
    pub(super) fn note(&self, kind: &str, iface: &str, detail: &str) {
        log(format!("{iface}: {detail}"));
        if let Some(s) = &self.shared {
            s.deliver_note(&json!({
                "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                "event": kind,
                "interface": iface,
                "detail": detail,
            }));
        }
    }

    /// Brings port `i` in line with the kernel: re-attaches it when its
    /// interface exists without our program, reports it when it is gone.
    pub(super) fn check_port(&mut self, i: usize) {
        let ids = ports::ProgramIds::of(&self.dp);
        let name = self.ports[i].name.clone();
        let now_attached = ports::attached(&self.pin_dir, &name, ids);
        let ifindex = crate::bpfsys::ifindex(&name);
        let was = self.ports[i].attached;
        if now_attached {
            self.ports[i].attached = true;
            self.ports[i].ifindex = ifindex;
            return;
        }
        if ifindex == 0 {
            if was {
                self.note(
                    "port_gone",
                    &name,
                    "the port disappeared; it is not enforced until it returns, and is re-attached then",
                );
            }
            self.ports[i].attached = false;
            self.ports[i].ifindex = 0;
            return;
        }
        match ports::attach(&mut self.dp, &name, &self.pin_dir, self.attach) {
            Ok(st) => {
                self.ports[i] = st;
                self.note(
                    "port_attached",
                    &name,
                    "the port is back and enforced again",
                );
            }
            Err(e) => {
                if was || self.ports[i].ifindex != ifindex {
                    self.note(
                        "port_unenforced",
                        &name,
                        &format!(
                            "the port exists but cannot be enforced: {}",
                            crate::describe(&e)
                        ),
                    );
                }
                self.ports[i].attached = false;
                self.ports[i].ifindex = ifindex;
            }
        }
    }

    pub(super) fn on_link(&mut self, ev: LinkEvent) {
        let name = match &ev {
            LinkEvent::Present { name, .. } | LinkEvent::Gone { name } => name,
        };
        let Some(i) = self.ports.iter().position(|p| &p.name == name) else {
            return;
        };
        let before = self.ports[i].clone();
        self.check_port(i);
        if self.ports[i] != before {
            let _ = self.save_state(vec![self.enforced.clone()]);
            self.publish();
        }
    }
}
