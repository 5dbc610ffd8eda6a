//! The gateway's check that it may spend for an account (issue 17) before it serves a request:
//! an account that signed allowances pays only through gateways it authorised (settlement
//! refuses the rest), so a gateway that serves it without an allowance would have its miners
//! work for nothing. The answer comes from a validator ([`LedgerRequest::Allowance`], a different
//! one each time) and is cached for [`CACHE_BLOCKS`] blocks per account.
//!
//! Fails open: when no validator answers, the request is served and settlement still enforces
//! the allowance. `spent` moves only at settlement, so the cap is checked here against what was
//! settled; the exact cap is settlement's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use brainmesh_ledger::clock::ChainClock;
use brainmesh_ledger::economics::Height;

use crate::ledger_client::LedgerClient;
use crate::protocols::sync::{LedgerRequest, LedgerResponse};

/// How long an answer is reused, in blocks.
pub const CACHE_BLOCKS: Height = 2;

/// What a validator said about (account, this gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The account trusts any gateway (it signed no allowance, and the Brain does not require one).
    Open,
    /// Authorised, with this much left (base units).
    Allowed(u128),
    /// Not authorised, spent or expired: the message for the client.
    Refused(String),
}

/// The decision from an [`LedgerResponse::Allowance`] answer.
pub fn verdict(account: &str, gateway: &str, strict: bool, remaining: Option<&str>) -> Verdict {
    if !strict {
        return Verdict::Open;
    }
    match remaining.and_then(|r| r.parse::<u128>().ok()) {
        Some(0) => Verdict::Refused(format!(
            "account {account} has spent the allowance it gave this gateway ({gateway}); it can raise it with \
             `brainmesh account authorize --gateway {gateway} --cap … --expires-at …`"
        )),
        Some(r) => Verdict::Allowed(r),
        None => Verdict::Refused(format!(
            "account {account} pays only through gateways it authorised, and has not authorised this gateway \
             ({gateway}) or the allowance expired: `brainmesh account authorize --gateway {gateway} --cap … \
             --expires-at …`"
        )),
    }
}

#[derive(Clone)]
pub struct SpendCheck {
    client: LedgerClient,
    clock: ChainClock,
    cache: Arc<Mutex<HashMap<String, (Height, Verdict)>>>,
}

impl SpendCheck {
    pub fn new(client: LedgerClient, clock: ChainClock) -> Self {
        Self { client, clock, cache: Default::default() }
    }

    /// Ok when this gateway may serve `account`; the client's message otherwise.
    pub async fn check(&self, account: &str) -> Result<(), String> {
        let now = self.clock.height();
        let cached = self.cache.lock().ok().and_then(|c| c.get(account).cloned());
        let v = match cached {
            Some((at, v)) if now < at + CACHE_BLOCKS => v,
            _ => {
                let me = self.client.me();
                let req = LedgerRequest::Allowance { account: account.to_string(), gateway: me.to_string() };
                let v = match self.client.ask_next(req).await {
                    Some(LedgerResponse::Allowance { strict, remaining, .. }) => {
                        verdict(account, me, strict, remaining.as_deref())
                    }
                    // No validator answered: serve; settlement still enforces the allowance.
                    _ => return Ok(()),
                };
                if let Ok(mut c) = self.cache.lock() {
                    if c.len() > 100_000 {
                        c.clear();
                    }
                    c.insert(account.to_string(), (now, v.clone()));
                }
                v
            }
        };
        match v {
            Verdict::Refused(why) => Err(why),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_accounts_pass_authorised_ones_pass_until_spent_and_others_are_told_what_to_do() {
        assert_eq!(verdict("a", "g", false, None), Verdict::Open);
        assert_eq!(verdict("a", "g", true, Some("500")), Verdict::Allowed(500));
        let Verdict::Refused(why) = verdict("a", "g", true, None) else { panic!() };
        assert!(why.contains("has not authorised this gateway (g)") && why.contains("brainmesh account authorize"));
        assert!(matches!(verdict("a", "g", true, Some("0")), Verdict::Refused(w) if w.contains("spent")));
    }
}
