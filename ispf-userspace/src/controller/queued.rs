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
    /// Together with the same actor's hand decisions already queued behind
    /// it (a script quarantining a dozen
    /// devices at once): planned in the order they came, applied as one
    /// generation, each answered with its own outcome. Returns the first
    /// other command taken from the queue, to run next.
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
                }) if a == actor => {
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
        let mut outcomes = self.decide_many(&ops, &actor).into_iter();
        for reply in replies {
            let _ = reply.send(answer(outcomes.next()));
        }
        next
    }
}
