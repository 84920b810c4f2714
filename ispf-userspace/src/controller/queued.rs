//! Hand decisions (`ispf admit|quarantine|release`) as the engine takes
//! them from its queue: one request, with the same actor's requests that
//! queued up behind it, applied as one generation.

use std::sync::mpsc::Receiver;

use tokio::sync::oneshot;

use super::engine::{Command, Engine, Outcome};
use crate::{control::Response, decisions::DecisionRequest};

/// Most queued hand decisions applied as one generation.
const QUEUED_BATCH: usize = 64;

/// A decision's outcome as the control socket answers it.
fn answer(o: Option<Outcome>) -> Response {
    match o {
        Some(Ok((message, generation, decision))) => Response::Decided {
            message,
            generation,
            decision,
        },
        Some(Err(message)) => Response::Error { message },
        None => Response::Error {
            message: "nothing decided".into(),
        },
    }
}

impl Engine {
    /// Admit, quarantine or release `op`: recorded, then applied as one
    /// generation; refused with the reason and nothing changed otherwise.
    /// Together with the same actor's hand decisions about other devices
    /// already queued behind it (a script quarantining a dozen devices at
    /// once): planned in the order they came, applied as one generation,
    /// each answered with its own outcome. A second request about a device
    /// of the batch waits for the batch: each request's checks (a
    /// life-critical device needs `--force`) see what the ones before it
    /// about the same device did. Returns the first other command taken
    /// from the queue, to run next.
    pub(super) fn decide_queued(
        &mut self,
        op: DecisionRequest,
        actor: String,
        reply: oneshot::Sender<Response>,
        rx: &Receiver<Command>,
    ) -> Option<Command> {
        let (mut ops, mut replies, mut next) = (vec![op], vec![reply], None);
        while ops.len() < QUEUED_BATCH {
            match rx.try_recv() {
                Ok(Command::Decide {
                    op,
                    actor: a,
                    reply,
                }) if a == actor && !ops.iter().any(|o| same_device(o, &op)) => {
                    ops.push(op);
                    replies.push(reply);
                }
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let outcomes = match self.decide_together(&ops, &actor) {
            Ok(outcomes) => outcomes,
            // What failed together may not fail alone (one request whose
            // decision cannot be applied over the file): each is tried
            // by itself, as if none had been queued with it.
            Err(_) if ops.len() > 1 => ops
                .iter()
                .flat_map(|op| self.decide_many(std::slice::from_ref(op), &actor))
                .collect(),
            Err(e) => vec![Err(crate::describe(&e))],
        };
        let mut outcomes = outcomes.into_iter();
        for reply in replies {
            let _ = reply.send(answer(outcomes.next()));
        }
        next
    }
}

/// Whether two requests are about the same device (MACs as typed: the
/// canonical spelling is worked out when planned, so two spellings of one
/// MAC are compared canonically when they parse).
fn same_device(a: &DecisionRequest, b: &DecisionRequest) -> bool {
    let canon = |m: &str| crate::decisions::canonical_mac(m).unwrap_or_else(|_| m.to_owned());
    canon(a.mac()) == canon(b.mac())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(mac: &str) -> DecisionRequest {
        DecisionRequest::Release { mac: mac.into() }
    }

    #[test]
    fn one_device_in_two_spellings_is_the_same_device() {
        let a = release("02:00:00:00:10:01");
        assert!(same_device(&a, &release("02-00-00-00-10-01")));
        assert!(same_device(
            &a,
            &release("02:00:00:00:10:01".to_uppercase().as_str())
        ));
        assert!(!same_device(&a, &release("02:00:00:00:10:02")));
        // A MAC that does not parse is refused when planned; here it is
        // only compared as typed.
        assert!(same_device(&release("nonsense"), &release("nonsense")));
    }
}
