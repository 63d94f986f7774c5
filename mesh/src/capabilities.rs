//! What a channel guarantees (DESIGN §9). `ChannelService` promises all five; a third party's
//! API may offer fewer, and the connector's strategy follows from what it declares:
//! - no `query`: no check-back on a redelivery;
//! - deducts not idempotent: a deduct whose answer may have been lost is never sent again
//!   blindly — without `query` it is dead-lettered as "outcome unknown" for an operator;
//! - no `refund`: compensating a deducted line becomes an operator's task ("manual refund");
//! - no `null_compensation` / `anti_hanging`: the mall's corrective refund keeps a cancelled
//!   order empty (nothing changes in the connector).

use serde::{Deserialize, Serialize};

/// The guarantees of one channel, as its configuration declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// A deduct repeated with the same key is applied once.
    pub idempotent_deduct: bool,
    /// The channel has a refund call.
    pub refund: bool,
    /// The recorded outcome of a key can be asked for.
    pub query: bool,
    /// A refund of a key never deducted is recorded, so that a late deduct is refused.
    pub null_compensation: bool,
    /// A deduct that arrives after its key's refund is refused.
    pub anti_hanging: bool,
    /// The channel holds points (freeze, then confirm or cancel): its lines are taken by TCC
    /// (DESIGN §12). Declared on its own, not part of [`Self::FULL`]: it changes the calls the
    /// channel is sent, and the same five guarantees apply to its holds.
    #[serde(default)]
    pub freeze: bool,
}

impl Capabilities {
    /// What `ChannelService` promises.
    pub const FULL: Self = Self {
        idempotent_deduct: true,
        refund: true,
        query: true,
        null_compensation: true,
        anti_hanging: true,
        freeze: false,
    };

    pub const NAMES: [&'static str; 5] = [
        "idempotent_deduct",
        "refund",
        "query",
        "null_compensation",
        "anti_hanging",
    ];

    fn flag(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "idempotent_deduct" => &mut self.idempotent_deduct,
            "refund" => &mut self.refund,
            "query" => &mut self.query,
            "null_compensation" => &mut self.null_compensation,
            "anti_hanging" => &mut self.anti_hanging,
            _ => return None,
        })
    }

    /// All of [`Self::FULL`] but the named ones (a connector's `--without`).
    pub fn without<S: AsRef<str>>(names: &[S]) -> Result<Self, UnknownCapability> {
        let mut capabilities = Self::FULL;
        for name in names {
            let name = name.as_ref().trim();
            *capabilities
                .flag(name)
                .ok_or_else(|| UnknownCapability(name.to_owned()))? = false;
        }
        Ok(capabilities)
    }

    /// The names of the guarantees this channel lacks.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut probe = *self;
        Self::NAMES
            .into_iter()
            .filter(|name| probe.flag(name).is_some_and(|held| !*held))
            .collect()
    }

    /// The block to paste into an adapter config (`[capabilities]`).
    pub fn toml_block(&self) -> String {
        let mut probe = *self;
        let mut block = String::from("[capabilities]\n");
        for name in Self::NAMES {
            let held = probe.flag(name).is_some_and(|held| *held);
            block.push_str(&format!("{name} = {held}\n"));
        }
        if self.freeze {
            block.push_str("freeze = true\n");
        }
        block
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown capability {0:?}; the capabilities are idempotent_deduct, refund, query, null_compensation, anti_hanging"
)]
pub struct UnknownCapability(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_names_what_is_missing_and_refuses_unknown_names() {
        let weak = Capabilities::without(&["refund", " query"]).unwrap();
        assert_eq!(weak.missing(), vec!["refund", "query"]);
        assert!(Capabilities::FULL.missing().is_empty());
        assert_eq!(
            Capabilities::without(&["refunds"]),
            Err(UnknownCapability("refunds".into()))
        );
        assert!(weak.toml_block().contains("refund = false\n"));
        assert!(weak.toml_block().contains("anti_hanging = true\n"));
    }
}
