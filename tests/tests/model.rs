//! The reference model on the hand-written care-unit scenario: the model
//! must reach the verdicts a network engineer wrote down, so that agreeing
//! with it means something. Runs without root.

use ispf::policy::Policy;
use ispf_tests::{care_unit::*, model::Model};

#[test]
fn model_matches_the_written_scenario() {
    let p = Policy::from_file(&policy_path()).unwrap();
    let mut m = Model::new(p.doc);
    for c in scenario() {
        let v = m.judge(&c.frame);
        assert_eq!(
            (v.pass, v.reason, v.src.as_str(), v.dst.as_str()),
            (c.pass, c.reason, c.src, c.dst),
            "case `{}`",
            c.name
        );
    }
}
