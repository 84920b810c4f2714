//! Generated feed contents compiled with a policy, as the controller
//! compiles a policy file with its feeds' contents.

use ispf::{
    feeds::{self, FeedSet},
    policy::{
        compile::{compile, Compiled},
        FeedAction, FeedDoc, Policy,
    },
};

/// The policy compiled with feeds given as (plain-format text, deny?),
/// named `f0`, `f1`, … in order.
pub fn with_feeds(policy: &Policy, generated: &[(String, bool)]) -> Compiled {
    with_feeds_over(policy, policy, generated)
}

/// [`with_feeds`] for `policy`, the file `file` with runtime decisions
/// applied: the feeds meet the file's segments, as in the controller.
pub fn with_feeds_over(file: &Policy, policy: &Policy, generated: &[(String, bool)]) -> Compiled {
    let mut set = FeedSet::default();
    let docs: Vec<FeedDoc> = generated
        .iter()
        .enumerate()
        .map(|(i, (text, deny))| {
            set.feeds.insert(
                format!("f{i}"),
                std::sync::Arc::new(feeds::plain::parse(text)),
            );
            FeedDoc {
                name: format!("f{i}"),
                source: "/generated".into(),
                format: Default::default(),
                refresh_s: 300,
                action: if *deny {
                    FeedAction::Deny
                } else {
                    FeedAction::Alert
                },
            }
        })
        .collect();
    let own = feeds::own::OwnSubnets::of(file);
    compile(policy).with_feeds(feeds::compile::compile(&set, &docs, &own))
}
