//! From lookups to a verdict: rule matrix results, intra-segment and default
//! fallbacks, monitor mode and the fail-open rule for life-critical segments.

use ispf_common::{
    PolicyVal, ACTION_ALLOW, FEED_DENY, REASON_ALLOWED, REASON_DENIED_DEFAULT, REASON_DENIED_RULE,
    REASON_INTERNAL_FAULT, REASON_INTRA_ALLOWED, REASON_INTRA_DENIED, REASON_THREAT_FEED,
    REASON_WOULD_DROP, RULE_NONE, SEG_INTRA_DENY, SEG_LIFE_CRITICAL, SEG_MONITOR, VERDICT_DROP,
    VERDICT_PASS,
};

/// A verdict with its reason and the deciding rule (or [`RULE_NONE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: u8,
    pub reason: u8,
    pub rule: u32,
}

impl Judgement {
    pub const fn pass(reason: u8) -> Self {
        Self {
            verdict: VERDICT_PASS,
            reason,
            rule: RULE_NONE,
        }
    }
    pub const fn drop(reason: u8) -> Self {
        Self {
            verdict: VERDICT_DROP,
            reason,
            rule: RULE_NONE,
        }
    }
    pub const fn is_pass(&self) -> bool {
        self.verdict == VERDICT_PASS
    }
}

/// Judges an IP packet from `src` to `dst` given the matrix entry found for
/// it (`None` when no rule covers the pair and protocol).
///
/// `src_flags`/`dst_flags` are the segments' `SEG_*` flags. Monitor mode is
/// applied here, because it only ever softens drops that policy made.
pub fn judge_policy(
    src: u16,
    dst: u16,
    entry: Option<PolicyVal>,
    src_flags: u8,
    dst_flags: u8,
    default_action: u8,
) -> Judgement {
    let base = match entry {
        Some(v) if v.rule != RULE_NONE => {
            let reason = if v.action == ACTION_ALLOW {
                REASON_ALLOWED
            } else {
                REASON_DENIED_RULE
            };
            Judgement {
                verdict: verdict_of(v.action),
                reason,
                rule: v.rule,
            }
        }
        _ if src == dst => {
            if src_flags & SEG_INTRA_DENY != 0 {
                Judgement::drop(REASON_INTRA_DENIED)
            } else {
                Judgement::pass(REASON_INTRA_ALLOWED)
            }
        }
        _ => default_judgement(default_action),
    };
    monitor(base, src_flags, dst_flags)
}

/// `defaults.default_action` as a judgement (also used for non-IP frames).
pub fn default_judgement(default_action: u8) -> Judgement {
    if default_action == ACTION_ALLOW {
        Judgement::pass(REASON_ALLOWED)
    } else {
        Judgement::drop(REASON_DENIED_DEFAULT)
    }
}

/// A drop by a rule, the default action or `intra` becomes `would_drop` when
/// either segment is in monitor mode.
pub fn monitor(j: Judgement, src_flags: u8, dst_flags: u8) -> Judgement {
    if !j.is_pass() && (src_flags | dst_flags) & SEG_MONITOR != 0 {
        Judgement {
            verdict: VERDICT_PASS,
            reason: REASON_WOULD_DROP,
            rule: j.rule,
        }
    } else {
        j
    }
}

/// What a `deny` or `alert` feed hit does to a packet: `None` lets it go on
/// to connection state and rules (an `alert` feed; or a `deny` feed on
/// traffic of a life-critical segment, which a feed never isolates); else
/// it is dropped with `threat_feed`, or passed as `would_drop` in monitor
/// mode.
pub fn feed_verdict(action: u8, src_flags: u8, dst_flags: u8) -> Option<Judgement> {
    if action != FEED_DENY || (src_flags | dst_flags) & SEG_LIFE_CRITICAL != 0 {
        return None;
    }
    Some(monitor(
        Judgement::drop(REASON_THREAT_FEED),
        src_flags,
        dst_flags,
    ))
}

/// What happens to a packet that was passed by policy when recording its
/// state failed: life-critical traffic keeps flowing, the rest fails closed.
pub fn on_fault(j: Judgement, src_flags: u8, dst_flags: u8) -> Judgement {
    if (src_flags | dst_flags) & SEG_LIFE_CRITICAL != 0 {
        j
    } else {
        Judgement {
            verdict: VERDICT_DROP,
            reason: REASON_INTERNAL_FAULT,
            rule: j.rule,
        }
    }
}

const fn verdict_of(action: u8) -> u8 {
    if action == ACTION_ALLOW {
        VERDICT_PASS
    } else {
        VERDICT_DROP
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_drop_except_life_critical_and_monitor() {
        use ispf_common::FEED_ALERT;
        assert_eq!(
            feed_verdict(FEED_ALERT, 0, 0),
            None,
            "alert feeds only report"
        );
        let j = feed_verdict(FEED_DENY, 0, 0).unwrap();
        assert_eq!((j.is_pass(), j.reason), (false, REASON_THREAT_FEED));
        assert_eq!(
            feed_verdict(FEED_DENY, 0, SEG_LIFE_CRITICAL),
            None,
            "never isolates a life-critical segment"
        );
        assert_eq!(
            feed_verdict(FEED_DENY, SEG_LIFE_CRITICAL, SEG_MONITOR),
            None
        );
        let j = feed_verdict(FEED_DENY, SEG_MONITOR, 0).unwrap();
        assert_eq!((j.is_pass(), j.reason), (true, REASON_WOULD_DROP));
    }
    use ispf_common::{ACTION_DENY, REASON_WOULD_DROP};

    fn rule(action: u8, rule: u32) -> Option<PolicyVal> {
        Some(PolicyVal {
            rule,
            action,
            _pad: [0; 3],
        })
    }

    #[test]
    fn rule_decides_over_intra_and_default() {
        let j = judge_policy(3, 3, rule(ACTION_DENY, 7), 0, 0, ACTION_ALLOW);
        assert_eq!(
            j,
            Judgement {
                verdict: VERDICT_DROP,
                reason: REASON_DENIED_RULE,
                rule: 7
            }
        );
        let j = judge_policy(3, 4, rule(ACTION_ALLOW, 0), 0, 0, ACTION_DENY);
        assert_eq!(
            j,
            Judgement {
                verdict: VERDICT_PASS,
                reason: REASON_ALLOWED,
                rule: 0
            }
        );
    }

    #[test]
    fn no_rule_falls_back_to_intra_then_default() {
        assert_eq!(
            judge_policy(2, 2, None, 0, 0, ACTION_DENY).reason,
            REASON_INTRA_ALLOWED
        );
        assert_eq!(
            judge_policy(2, 2, None, SEG_INTRA_DENY, SEG_INTRA_DENY, ACTION_ALLOW).reason,
            REASON_INTRA_DENIED
        );
        assert_eq!(
            judge_policy(2, 5, None, 0, 0, ACTION_DENY).reason,
            REASON_DENIED_DEFAULT
        );
        assert_eq!(
            judge_policy(2, 5, None, 0, 0, ACTION_ALLOW).reason,
            REASON_ALLOWED
        );
        // An entry that records "no rule" behaves like a miss.
        let none = rule(ACTION_DENY, RULE_NONE);
        assert_eq!(
            judge_policy(2, 5, none, 0, 0, ACTION_ALLOW).reason,
            REASON_ALLOWED
        );
    }

    #[test]
    fn monitor_softens_only_policy_drops() {
        let j = judge_policy(2, 5, None, 0, SEG_MONITOR, ACTION_DENY);
        assert_eq!((j.verdict, j.reason), (VERDICT_PASS, REASON_WOULD_DROP));
        let j = judge_policy(2, 2, None, SEG_MONITOR | SEG_INTRA_DENY, 0, ACTION_DENY);
        assert_eq!(j.reason, REASON_WOULD_DROP);
        let j = judge_policy(2, 5, rule(ACTION_DENY, 4), SEG_MONITOR, 0, ACTION_DENY);
        assert_eq!((j.reason, j.rule), (REASON_WOULD_DROP, 4));
        let j = judge_policy(2, 5, rule(ACTION_ALLOW, 4), SEG_MONITOR, 0, ACTION_DENY);
        assert_eq!(j.reason, REASON_ALLOWED);
    }

    #[test]
    fn faults_fail_open_only_for_life_critical() {
        let j = Judgement::pass(REASON_ALLOWED);
        assert_eq!(on_fault(j, SEG_LIFE_CRITICAL, 0), j);
        assert_eq!(on_fault(j, 0, SEG_LIFE_CRITICAL), j);
        assert_eq!(on_fault(j, 0, 0).reason, REASON_INTERNAL_FAULT);
        assert_eq!(on_fault(j, 0, 0).verdict, VERDICT_DROP);
    }
}
