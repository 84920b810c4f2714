//! The desired state as the engine enforces it: the policy file with the
//! decisions that hold applied, by the fastest way that gives the same
//! policy. The integration tests' differential suite calls this too, so
//! that it checks the engine's path rather than a copy of it.

use std::sync::Arc;

use super::{effective, enforced_sha256, holding, overlay, Decision, DecisionError};
use crate::policy::{DeviceIndex, Policy};

/// The file with the decisions that hold at `now` applied, with the
/// file's segment ids and the hash the datapath will hold for it. Given
/// `index` of `file`, only what the decisions change is checked
/// ([`overlay`]), unless that finds something full validation must word;
/// otherwise the effective document is validated whole.
pub fn applied(
    file: &Arc<Policy>,
    index: Option<&DeviceIndex>,
    decisions: &[Decision],
    now: i64,
) -> Result<Arc<Policy>, DecisionError> {
    if holding(decisions, now).is_empty() {
        return Ok(file.clone());
    }
    if let Some(p) = index.and_then(|x| overlay(file, x, decisions, now)) {
        return Ok(Arc::new(p));
    }
    let doc = effective(&file.doc, decisions, now);
    let mut p = Policy::from_doc_unhashed(doc).map_err(|problems| {
        DecisionError::Unappliable(
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    p.keep_ids(&file.segment_ids());
    p.sha256 = enforced_sha256(&file.sha256, decisions, now);
    // `effective` appends the entries it adds after the file's.
    p.file_devices = file.devices.len();
    Ok(Arc::new(p))
}
