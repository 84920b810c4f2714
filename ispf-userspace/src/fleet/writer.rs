//! Decisions made on this host go to etcd first: the engine plans them
//! (the same checks as without a fleet) and writes them here; every host,
//! this one included, applies them when its watch delivers them. If etcd
//! cannot be reached the decision is refused: a decision that reached one
//! host only would split the site.

use super::{client, keys, FleetError, Options};
use crate::decisions::{Decision, Kind};

pub struct Writer {
    opts: Options,
    rt: tokio::runtime::Runtime,
}

impl Writer {
    pub fn new(opts: Options) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self { opts, rt })
    }

    pub fn site(&self) -> &str {
        &self.opts.site
    }

    /// Writes `put` and deletes `remove`, each a key of its own.
    pub fn write(&self, put: &[Decision], remove: &[(String, Kind)]) -> Result<(), FleetError> {
        self.rt.block_on(async {
            let mut c = client::connect(&self.opts).await?;
            for d in put {
                let value = serde_json::to_vec(d).map_err(|e| FleetError::Config(e.to_string()))?;
                client::put(
                    &mut c,
                    keys::decision(&self.opts.site, &d.mac, d.kind),
                    value,
                    None,
                )
                .await?;
            }
            for (mac, kind) in remove {
                client::delete(&mut c, keys::decision(&self.opts.site, mac, *kind)).await?;
            }
            Ok(())
        })
    }
}
