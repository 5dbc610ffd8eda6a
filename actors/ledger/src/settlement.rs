//! Settlement of a period `[from_height, to_height)` (default 8,640 blocks): accounts pay for
//! their receipts, miners, validators and Brain owners are credited with fees and emissions,
//! and a [`SettlementRecord`] commits to the period's receipts with a Merkle root.
//!
//! [`settle`] is pure (it reads the state, changes nothing); [`LedgerState::apply_settlement`]
//! applies a record all-or-nothing. Rules:
//!
//! * **Price**: a receipt costs `PriceList::cost(model, prompt_units, completion_units)`
//!   (rounded up once per receipt). A receipt whose model is unknown, whose task exceeds the
//!   model's context, or whose Brain does not exist is **rejected**: listed in the record, still
//!   in the root, not charged.
//! * **Shortfall**: an account pays its receipts in receipt-id order from its balance at
//!   settlement; when the balance runs out it is debited what it has (down to zero, never below)
//!   and the rest is recorded as its `shortfall`. Only what was collected is credited, so total
//!   debits equal total fee credits exactly.
//! * **Fee split** ([`FeeSplit`]): by default a Brain's collected fees are divided like its
//!   emission (`economics::split_brain_emission`): 25% to the owner, the nodes' 75% by the
//!   Brain's `miner_share` between the serving miners (in proportion to the fees each collected)
//!   and the validators (by dividends, else by stake, else to the owner). Fees are payments, so
//!   none is withheld: the owner's part during a stake-method lock goes to the miners instead.
//!   `FeeSplit::MinerOnly` pays each miner exactly what its receipts collected. `economics::params`
//!   has no separate fee-cut parameter; this choice follows the economics module's note.
//! * **Emission**: `issuance_between(from, to)` shared among Brains by
//!   `brain_reward_shares` and split per Brain by `split_brain_emission` with the period's
//!   consensus output ([`BrainPeriod`]). The unallocated remainder and withheld owner shares are
//!   not minted: `minted + not_minted == issuance` and `minted == Σ emission credits`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::merkle::{self, InclusionProof};
use super::state::{LedgerState, TxError};
use super::weights::Bonds;
use super::{Enc, Hash};
use crate::economics::{
    brain_reward_shares, checked_credit, issuance_between, split_brain_emission, split_by_weights, Amount, BrainId,
    BrainStanding, EconomicsError, EconomicsParams, Height, PriceList, ONE,
};
pub use crate::period::BrainPeriod;

/// Domain tag of a receipt leaf.
pub const RECEIPT_LINE_TAG: &str = "brainmesh/ledger/receipt-line/v1";

/// What settlement needs from a receipt.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReceiptLine {
    /// Receipt id; receipts are settled and rooted in id order and must be unique.
    pub receipt_id: String,
    /// Paying account.
    pub account: String,
    /// Peer id of the miner that served the task (credited with its fees).
    pub miner: String,
    /// Brain the task was served in.
    pub brain: BrainId,
    /// Prompt compute units, priced at the model's prompt price.
    pub prompt_units: u64,
    /// Completion compute units, priced at the model's completion price.
    pub completion_units: u64,
    /// Model name, looked up in the [`PriceList`].
    pub model: String,
    /// Peer id of the gateway that countersigned the receipt (checked against the account's
    /// allowances).
    #[serde(default)]
    pub gateway: String,
}

impl ReceiptLine {
    /// Canonical leaf bytes (every field, so a proof commits to the amounts too).
    pub fn leaf_bytes(&self) -> Vec<u8> {
        let mut e = Enc::new(RECEIPT_LINE_TAG);
        e.str(&self.receipt_id).str(&self.account).str(&self.miner).u16(self.brain);
        e.u64(self.prompt_units).u64(self.completion_units).str(&self.model).str(&self.gateway);
        e.into_bytes()
    }
}

/// How collected fees are divided (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FeeSplit {
    /// Fees divided like the Brain's emission (owner, miners, validators); the default.
    #[default]
    LikeEmission,
    /// Each miner gets exactly what its receipts collected.
    MinerOnly,
}

/// Everything a settlement reads besides the ledger state.
#[derive(Debug, Clone, Copy)]
pub struct SettlementInput<'a> {
    /// First block of the period (inclusive).
    pub from_height: Height,
    /// Exclusive.
    pub to_height: Height,
    /// The period's receipts; ids must be unique.
    pub receipts: &'a [ReceiptLine],
    /// Prices the receipts are charged by.
    pub prices: &'a PriceList,
    /// Consensus output per Brain for the emission split; one entry per Brain at most.
    pub brains: &'a [BrainPeriod],
    /// How collected fees are divided.
    pub fee_split: FeeSplit,
}

/// A receipt listed in the period but not charged (kept in the receipts root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedReceipt {
    /// The receipt's id.
    pub receipt_id: String,
    /// Why it was not charged (unknown Brain or model, task over the model's context).
    pub reason: String,
}

/// The outcome of a period, applied by [`LedgerState::apply_settlement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementRecord {
    /// First block of the period (inclusive).
    pub from_height: Height,
    /// End of the period (exclusive).
    pub to_height: Height,
    /// Root over [`ReceiptLine::leaf_bytes`] of the period's receipts sorted by id.
    #[serde(with = "super::hex_array")]
    pub receipts_root: Hash,
    /// Number of receipts under `receipts_root` (rejected ones included).
    pub receipt_count: u64,
    /// Collected per paying account.
    pub debits: BTreeMap<String, Amount>,
    /// Owed but not collected (balance ran out), per account.
    pub shortfalls: BTreeMap<String, Amount>,
    /// Fees credited per account (miners, validators, Brain owners); sums to the total debits.
    pub fee_credits: BTreeMap<String, Amount>,
    /// Emission credited per account; sums to `minted`.
    pub emission_credits: BTreeMap<String, Amount>,
    /// Scheduled issuance of the period.
    pub issuance: Amount,
    /// Part of `issuance` credited (`issuance - not_minted`).
    pub minted: Amount,
    /// Part of `issuance` not minted: the unallocated remainder plus withheld owner shares.
    pub not_minted: Amount,
    /// Receipts in the root that were not charged, in receipt-id order.
    pub rejected: Vec<RejectedReceipt>,
    /// The consensus the emission was split by, per Brain (empty: no Brain had weights).
    #[serde(default)]
    pub consensus: Vec<BrainPeriod>,
    /// Bonds after this period's epoch, per Brain (replace the state's on apply).
    #[serde(default)]
    pub bonds: BTreeMap<BrainId, Bonds>,
    /// Charged under each allowance this period: account → gateway → base units (added to the
    /// allowance's `spent` on apply).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allowance_spent: BTreeMap<String, BTreeMap<String, Amount>>,
}

/// Why a period could not be settled or a record could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    /// Two receipts in the period share an id.
    #[error("receipt {0} appears twice in the period")]
    DuplicateReceipt(String),
    /// The consensus input lists a Brain twice.
    #[error("Brain {0} appears twice in the period's consensus input")]
    DuplicateBrain(BrainId),
    /// The consensus input names a Brain that does not exist.
    #[error("Brain {0} does not exist")]
    UnknownBrain(BrainId),
    /// A [`BrainPeriod`]'s vectors differ in length; names which.
    #[error("dimension mismatch: {0}")]
    Dimension(&'static str),
    /// The record no longer fits the state it is applied to (e.g. a debit exceeds the balance).
    #[error("the record does not fit this state: {0}")]
    Stale(&'static str),
    /// An economics rule failed (overflow, or credits that do not balance).
    #[error(transparent)]
    Economics(#[from] EconomicsError),
    /// A ledger state error.
    #[error(transparent)]
    Tx(#[from] TxError),
}

fn add(map: &mut BTreeMap<String, Amount>, k: &str, v: Amount) -> Result<(), SettleError> {
    if v == 0 {
        return Ok(());
    }
    let e = map.entry(k.to_string()).or_insert(0);
    *e = checked_credit(*e, v)?;
    Ok(())
}

fn sum(map: &BTreeMap<String, Amount>) -> Amount {
    map.values().fold(0u128, |a, v| a.saturating_add(*v))
}

fn sorted_lines(receipts: &[ReceiptLine]) -> Result<Vec<&ReceiptLine>, SettleError> {
    let mut v: Vec<&ReceiptLine> = receipts.iter().collect();
    v.sort_by(|a, b| a.receipt_id.cmp(&b.receipt_id));
    for w in v.windows(2) {
        if w[0].receipt_id == w[1].receipt_id {
            return Err(SettleError::DuplicateReceipt(w[0].receipt_id.clone()));
        }
    }
    Ok(v)
}

/// Root over the receipts sorted by id (errors on a duplicate id).
pub fn receipts_root(receipts: &[ReceiptLine]) -> Result<Hash, SettleError> {
    let leaves: Vec<Vec<u8>> = sorted_lines(receipts)?.iter().map(|l| l.leaf_bytes()).collect();
    Ok(merkle::root(&leaves))
}

/// Inclusion proof for receipt `id` among the period's receipts (for `ledger verify RECEIPT`).
pub fn receipt_proof(receipts: &[ReceiptLine], id: &str) -> Option<(ReceiptLine, InclusionProof)> {
    let sorted = sorted_lines(receipts).ok()?;
    let i = sorted.binary_search_by(|l| l.receipt_id.as_str().cmp(id)).ok()?;
    let leaves: Vec<Vec<u8>> = sorted.iter().map(|l| l.leaf_bytes()).collect();
    Some((sorted[i].clone(), merkle::proof(&leaves, i)?))
}

impl SettlementRecord {
    /// Sum of the debits (collected fees), in base units.
    pub fn total_debits(&self) -> Amount {
        sum(&self.debits)
    }
    /// Sum of the shortfalls (owed but not collected), in base units.
    pub fn total_shortfall(&self) -> Amount {
        sum(&self.shortfalls)
    }
    /// Sum of the fee credits; equals [`SettlementRecord::total_debits`].
    pub fn total_fee_credits(&self) -> Amount {
        sum(&self.fee_credits)
    }
    /// Sum of the emission credits; equals `minted`.
    pub fn total_emission_credits(&self) -> Amount {
        sum(&self.emission_credits)
    }

    /// True if `line` is one of this period's receipts (proof against `receipts_root`, with the
    /// recorded receipt count).
    pub fn verify_receipt(&self, line: &ReceiptLine, proof: &InclusionProof) -> bool {
        proof.leaf_count == self.receipt_count && merkle::verify(&line.leaf_bytes(), proof, &self.receipts_root)
    }
}

/// Computes the settlement of a period against `state` (which it does not change).
pub fn settle(
    input: &SettlementInput<'_>,
    state: &LedgerState,
    p: &EconomicsParams,
) -> Result<SettlementRecord, SettleError> {
    let lines = sorted_lines(input.receipts)?;
    let leaves: Vec<Vec<u8>> = lines.iter().map(|l| l.leaf_bytes()).collect();
    let mut periods: BTreeMap<BrainId, &BrainPeriod> = BTreeMap::new();
    for bp in input.brains {
        if periods.insert(bp.brain, bp).is_some() {
            return Err(SettleError::DuplicateBrain(bp.brain));
        }
        if bp.miners.len() != bp.incentive.len() {
            return Err(SettleError::Dimension("miners and incentive lengths differ"));
        }
        if bp.validators.len() != bp.dividends.len() || bp.validators.len() != bp.validator_stake.len() {
            return Err(SettleError::Dimension("validators, dividends and validator_stake lengths differ"));
        }
        state.brains.get(bp.brain).map_err(|_| SettleError::UnknownBrain(bp.brain))?;
    }

    let mut rec = SettlementRecord {
        from_height: input.from_height,
        to_height: input.to_height,
        receipts_root: merkle::root(&leaves),
        receipt_count: lines.len() as u64,
        debits: BTreeMap::new(),
        shortfalls: BTreeMap::new(),
        fee_credits: BTreeMap::new(),
        emission_credits: BTreeMap::new(),
        issuance: 0,
        minted: 0,
        not_minted: 0,
        rejected: Vec::new(),
        consensus: input.brains.to_vec(),
        bonds: BTreeMap::new(),
        allowance_spent: BTreeMap::new(),
    };

    // ---- fees: price each receipt, collect per account in receipt-id order ----------------
    let mut by_account: BTreeMap<&str, Vec<(&ReceiptLine, Amount)>> = BTreeMap::new();
    for l in &lines {
        if state.brains.get(l.brain).is_err() {
            rec.rejected.push(RejectedReceipt {
                receipt_id: l.receipt_id.clone(),
                reason: format!("Brain {} does not exist", l.brain),
            });
            continue;
        }
        match input.prices.cost(&l.model, l.prompt_units, l.completion_units) {
            Ok(cost) => by_account.entry(l.account.as_str()).or_default().push((l, cost)),
            Err(e) => rec.rejected.push(RejectedReceipt { receipt_id: l.receipt_id.clone(), reason: e.to_string() }),
        }
    }
    // collected per Brain, per miner
    let mut collected: BTreeMap<BrainId, BTreeMap<&str, Amount>> = BTreeMap::new();
    for (account, items) in &by_account {
        let mut left = state.balance(account);
        // Spending authorised by the account holder (issue 17): an account that signed an
        // allowance (or every account, under `require_authorization`) pays only for receipts
        // countersigned by a gateway it authorised, unexpired at the period's start, within the cap.
        let allowances = state.allowances.get(*account);
        let strict = p.require_authorization || allowances.is_some();
        for (l, cost) in items {
            if strict {
                let a = allowances.and_then(|m| m.get(&l.gateway));
                let already = rec.allowance_spent.get(*account).and_then(|m| m.get(&l.gateway)).copied().unwrap_or(0);
                let refusal = match a {
                    None => Some(format!("account {account} has not authorised gateway {}", l.gateway)),
                    Some(a) if a.expires_at < input.from_height => Some(format!(
                        "account {account}'s allowance for gateway {} expired at block {}",
                        l.gateway, a.expires_at
                    )),
                    Some(a) if a.spent.saturating_add(already).saturating_add(*cost) > a.cap => Some(format!(
                        "over the cap account {account} authorised for gateway {} ({} of {} spent)",
                        l.gateway,
                        a.spent.saturating_add(already),
                        a.cap
                    )),
                    Some(_) => None,
                };
                if let Some(reason) = refusal {
                    rec.rejected.push(RejectedReceipt { receipt_id: l.receipt_id.clone(), reason });
                    continue;
                }
                let e =
                    rec.allowance_spent.entry(account.to_string()).or_default().entry(l.gateway.clone()).or_insert(0);
                *e = checked_credit(*e, *cost)?;
            }
            let pay = (*cost).min(left);
            left -= pay;
            add(&mut rec.debits, account, pay)?;
            add(&mut rec.shortfalls, account, cost - pay)?;
            let e = collected.entry(l.brain).or_default().entry(l.miner.as_str()).or_insert(0);
            *e = checked_credit(*e, pay)?;
        }
    }
    for (brain, per_miner) in &collected {
        let fees = per_miner.values().try_fold(0u128, |a, v| a.checked_add(*v)).ok_or(EconomicsError::Overflow)?;
        if fees == 0 {
            continue;
        }
        let miners: Vec<&str> = per_miner.keys().copied().collect();
        let weights: Vec<Amount> = per_miner.values().copied().collect();
        match input.fee_split {
            FeeSplit::MinerOnly => {
                for (m, v) in per_miner {
                    add(&mut rec.fee_credits, m, *v)?;
                }
            }
            FeeSplit::LikeEmission => {
                let record = state.brains.get(*brain)?;
                let empty = BrainPeriod::default();
                let bp = periods.get(brain).copied().unwrap_or(&empty);
                let split = split_brain_emission(
                    fees,
                    record.miner_share,
                    record.owner_rewards_active(input.to_height),
                    &[ONE],
                    &bp.dividends,
                    &bp.validator_stake,
                    p,
                )?;
                // fees are never withheld: a locked owner's part goes to the miners
                let pool = checked_credit(split.miners.first().copied().unwrap_or(0), split.withheld)?;
                for (m, v) in miners.iter().zip(split_by_weights(pool, &weights)?) {
                    add(&mut rec.fee_credits, m, v)?;
                }
                for (v, amt) in bp.validators.iter().zip(&split.validators) {
                    add(&mut rec.fee_credits, v, *amt)?;
                }
                add(&mut rec.fee_credits, &record.owner, split.owner)?;
            }
        }
    }

    // ---- emission ------------------------------------------------------------------------
    rec.issuance = issuance_between(input.from_height, input.to_height, p);
    let standings: Vec<BrainStanding> = input.brains.iter().map(|b| b.standing).collect();
    let shares = brain_reward_shares(rec.issuance, &standings, p)?;
    let mut not_minted = shares.unallocated;
    for (bp, amount) in input.brains.iter().zip(&shares.per_brain) {
        if *amount == 0 {
            continue;
        }
        let record = state.brains.get(bp.brain)?;
        let split = split_brain_emission(
            *amount,
            record.miner_share,
            record.owner_rewards_active(input.to_height),
            &bp.incentive,
            &bp.dividends,
            &bp.validator_stake,
            p,
        )?;
        add(&mut rec.emission_credits, &record.owner, split.owner)?;
        for (m, v) in bp.miners.iter().zip(&split.miners) {
            add(&mut rec.emission_credits, m, *v)?;
        }
        for (v, amt) in bp.validators.iter().zip(&split.validators) {
            add(&mut rec.emission_credits, v, *amt)?;
        }
        not_minted = checked_credit(not_minted, split.withheld)?;
    }
    rec.not_minted = not_minted;
    rec.minted = rec.issuance.checked_sub(not_minted).ok_or(EconomicsError::Overflow)?;
    if rec.total_emission_credits() != rec.minted || rec.total_fee_credits() != rec.total_debits() {
        // split_brain_emission and split_by_weights are exact; this would be a bug upstream.
        return Err(SettleError::Economics(EconomicsError::InvalidParam("settlement does not balance")));
    }
    Ok(rec)
}

impl LedgerState {
    /// Applies a settlement record: debits (each must still be covered by the balance), then
    /// fee and emission credits, and `minted`. All-or-nothing.
    pub fn apply_settlement(&mut self, rec: &SettlementRecord) -> Result<(), SettleError> {
        let mut touched: BTreeSet<&str> = BTreeSet::new();
        touched.extend(rec.debits.keys().map(String::as_str));
        touched.extend(rec.fee_credits.keys().map(String::as_str));
        touched.extend(rec.emission_credits.keys().map(String::as_str));
        let mut next: Vec<(&str, Amount)> = Vec::with_capacity(touched.len());
        for a in touched {
            let d = rec.debits.get(a).copied().unwrap_or(0);
            let bal = self.balance(a).checked_sub(d).ok_or(SettleError::Stale("a debit exceeds the balance"))?;
            let bal = checked_credit(bal, rec.fee_credits.get(a).copied().unwrap_or(0))?;
            let bal = checked_credit(bal, rec.emission_credits.get(a).copied().unwrap_or(0))?;
            next.push((a, bal));
        }
        let minted = checked_credit(self.minted, rec.minted)?;
        for (a, v) in next {
            self.set_balance(a, v);
        }
        self.minted = minted;
        for (account, per) in &rec.allowance_spent {
            for (g, amount) in per {
                if let Some(a) = self.allowances.get_mut(account).and_then(|m| m.get_mut(g)) {
                    a.spent = a.spent.saturating_add(*amount);
                }
            }
        }
        for (b, bonds) in &rec.bonds {
            self.weights.bonds.insert(*b, bonds.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::economics::{tokens, ModelPrice};
    use proptest::prelude::*;

    fn params() -> EconomicsParams {
        EconomicsParams { brain_reward_stake_cap: None, ..EconomicsParams::default() }
    }

    fn prices() -> PriceList {
        // 1 base unit per prompt unit, 2 per completion unit
        PriceList { models: vec![ModelPrice::new("m", 1000, 2000, 10_000)] }
    }

    fn state(balances: &[(&str, Amount)]) -> LedgerState {
        let p = params();
        let mut s =
            LedgerState::genesis(balances.iter().map(|(a, v)| (a.to_string(), *v)).collect(), "labs", &p).unwrap();
        // Brain 7 owned by "owner", burned
        s.brains.create_by_burn("owner", Some(7), u128::MAX, 0, &p).unwrap();
        s
    }

    fn line(id: &str, account: &str, miner: &str, p: u64, c: u64) -> ReceiptLine {
        ReceiptLine {
            receipt_id: id.into(),
            account: account.into(),
            miner: miner.into(),
            brain: 7,
            prompt_units: p,
            completion_units: c,
            model: "m".into(),
            gateway: "gw".into(),
        }
    }

    fn input<'a>(
        receipts: &'a [ReceiptLine],
        prices: &'a PriceList,
        brains: &'a [BrainPeriod],
        fee_split: FeeSplit,
    ) -> SettlementInput<'a> {
        SettlementInput { from_height: 0, to_height: 10, receipts, prices, brains, fee_split }
    }

    #[test]
    fn miner_only_fees_equal_the_receipts_exactly() {
        let s = state(&[("acct", 10_000)]);
        let r = vec![line("r2", "acct", "m1", 100, 50), line("r1", "acct", "m2", 10, 0)];
        let pl = prices();
        let rec = settle(&input(&r, &pl, &[], FeeSplit::MinerOnly), &s, &params()).unwrap();
        assert_eq!(rec.debits, [("acct".to_string(), 210)].into());
        assert_eq!(rec.fee_credits, [("m1".to_string(), 200), ("m2".to_string(), 10)].into());
        assert!(rec.shortfalls.is_empty());
        // no Brain in the consensus input: nothing minted, all of the issuance is not minted
        assert_eq!(rec.issuance, 10 * tokens(10));
        assert_eq!((rec.minted, rec.not_minted), (0, rec.issuance));
        assert_eq!(rec.receipt_count, 2);
        assert_eq!(rec.receipts_root, receipts_root(&r).unwrap());
    }

    fn gw_line(id: &str, account: &str, gateway: &str, p: u64) -> ReceiptLine {
        ReceiptLine { gateway: gateway.into(), ..line(id, account, "m", p, 0) }
    }

    #[test]
    fn an_account_that_authorised_gateways_pays_only_their_receipts_within_the_cap_and_until_expiry() {
        use crate::state::Allowance;
        let mut s = state(&[("alice", 10_000), ("dev", 10_000)]);
        let allow = |cap, spent, expires_at| Allowance { cap, spent, expires_at };
        s.allowances.insert(
            "alice".into(),
            [("good".to_string(), allow(240, 50, 100)), ("old".to_string(), allow(1_000, 0, 5))].into(),
        );
        let r = vec![
            gw_line("r1", "alice", "good", 100),  // 50 + 100 ≤ 240: paid
            gw_line("r2", "alice", "rogue", 100), // never authorised
            gw_line("r3", "alice", "good", 100),  // 150 + 100 > 240: over the cap
            gw_line("r4", "alice", "good", 50),   // 150 + 50 = 200 ≤ 240: paid
            gw_line("r5", "alice", "old", 10),    // expired at block 5 < the period's start 6
            gw_line("r6", "dev", "rogue", 30),    // "dev" never opted in: any gateway, as before
        ];
        let pl = prices();
        let inp = SettlementInput { from_height: 6, ..input(&r, &pl, &[], FeeSplit::MinerOnly) };
        let rec = settle(&inp, &s, &params()).unwrap();
        let refused: BTreeMap<&str, &str> =
            rec.rejected.iter().map(|x| (x.receipt_id.as_str(), x.reason.as_str())).collect();
        assert_eq!(refused.keys().copied().collect::<Vec<_>>(), ["r2", "r3", "r5"]);
        assert!(refused["r2"].contains("has not authorised gateway rogue"), "{}", refused["r2"]);
        assert!(refused["r3"].contains("over the cap"), "{}", refused["r3"]);
        assert!(refused["r5"].contains("expired"), "{}", refused["r5"]);
        assert_eq!(rec.debits, [("alice".to_string(), 150), ("dev".to_string(), 30)].into());
        assert_eq!(rec.allowance_spent["alice"]["good"], 150);
        s.apply_settlement(&rec).unwrap();
        assert_eq!(s.allowances["alice"]["good"].spent, 200, "spent carries into later periods");
        assert!(s.supply_is_conserved());
        // Under require_authorization every account is strict: dev's rogue receipt is refused too.
        let strict = EconomicsParams { require_authorization: true, ..params() };
        let rec = settle(&input(&r[5..], &pl, &[], FeeSplit::MinerOnly), &s, &strict).unwrap();
        assert_eq!(rec.rejected.len(), 1);
        assert!(rec.debits.is_empty());
    }

    #[test]
    fn account_that_cannot_pay_is_debited_what_it_has_and_the_shortfall_recorded() {
        let s = state(&[("poor", 150)]);
        // r1 costs 100 (paid), r2 costs 100 (50 paid, 50 short), r3 costs 100 (unpaid)
        let r = vec![line("r3", "poor", "m", 100, 0), line("r1", "poor", "m", 100, 0), line("r2", "poor", "m", 100, 0)];
        let pl = prices();
        let rec = settle(&input(&r, &pl, &[], FeeSplit::MinerOnly), &s, &params()).unwrap();
        assert_eq!(rec.debits["poor"], 150);
        assert_eq!(rec.shortfalls["poor"], 150);
        assert_eq!(rec.fee_credits["m"], 150);
        let mut s2 = s.clone();
        s2.apply_settlement(&rec).unwrap();
        assert_eq!(s2.balance("poor"), 0);
        assert_eq!(s2.balance("m"), 150);
        assert!(s2.supply_is_conserved());
        // applying the same record again is refused (the debit is no longer covered)
        assert_eq!(s2.clone().apply_settlement(&rec), Err(SettleError::Stale("a debit exceeds the balance")));
    }

    #[test]
    fn fees_split_like_emission_between_owner_miners_and_validators() {
        let s = state(&[("acct", 1_000_000)]);
        let r = vec![line("r1", "acct", "m1", 300, 0), line("r2", "acct", "m2", 100, 0)]; // 400
        let bp = BrainPeriod {
            brain: 7,
            standing: BrainStanding { stake: 0, performance: 0 },
            miners: vec![],
            incentive: vec![],
            validators: vec!["v1".into(), "v2".into()],
            dividends: vec![ONE / 4, ONE / 4 * 3],
            validator_stake: vec![1, 1],
        };
        let pl = prices();
        let rec = settle(&input(&r, &pl, &[bp], FeeSplit::LikeEmission), &s, &params()).unwrap();
        // 400: owner 100; nodes 300, miner_share 50% → miners 150 (m1 112/113 by 3:1), validators 150 (1:3)
        let fc = &rec.fee_credits;
        assert_eq!(fc["owner"], 100);
        assert_eq!(fc["m1"] + fc["m2"], 150);
        assert_eq!((fc["m1"], fc["m2"]), (113, 37)); // 112.5 / 37.5: the larger remainder at the lower index
        assert_eq!((fc["v1"], fc["v2"]), (38, 112)); // 37.5 / 112.5
        assert_eq!(rec.total_fee_credits(), rec.total_debits());
    }

    #[test]
    fn locked_owner_share_of_fees_goes_to_the_miners() {
        let p = params();
        let mut s = state(&[("acct", 1_000)]);
        s.brains.create_by_stake("staker", Some(8), u128::MAX, 0, &p).unwrap();
        let mut l = line("r1", "acct", "m1", 400, 0);
        l.brain = 8;
        let pl = prices();
        let rec = settle(&input(&[l], &pl, &[], FeeSplit::LikeEmission), &s, &p).unwrap();
        // no validators: the validators' part goes to the owner, which is locked → all to m1
        assert_eq!(rec.fee_credits, [("m1".to_string(), 400)].into());
    }

    #[test]
    fn emission_is_split_and_minted_equals_distributed() {
        let p = params();
        let s = state(&[]);
        let bp = BrainPeriod {
            brain: 7,
            standing: BrainStanding { stake: 100, performance: ONE },
            miners: vec!["m1".into(), "m2".into()],
            incentive: vec![ONE / 2, ONE / 2],
            validators: vec!["v1".into()],
            dividends: vec![ONE],
            validator_stake: vec![100],
        };
        let pl = prices();
        let rec = settle(&input(&[], &pl, &[bp], FeeSplit::LikeEmission), &s, &p).unwrap();
        let total = 10 * tokens(10);
        assert_eq!(rec.issuance, total);
        assert_eq!(rec.minted, total);
        let ec = &rec.emission_credits;
        assert_eq!(ec["owner"], total / 4);
        assert_eq!(ec["m1"], total * 3 / 16);
        assert_eq!(ec["m2"], total * 3 / 16);
        assert_eq!(ec["v1"], total * 3 / 8);
        let mut s2 = s.clone();
        s2.apply_settlement(&rec).unwrap();
        assert_eq!(s2.minted, total);
        assert!(s2.supply_is_conserved());
    }

    #[test]
    fn rejected_and_duplicate_receipts() {
        let s = state(&[("acct", 1_000)]);
        let pl = prices();
        let mut unknown_model = line("r1", "acct", "m", 1, 0);
        unknown_model.model = "nope".into();
        let too_big = line("r2", "acct", "m", 10_001, 0);
        let mut no_brain = line("r3", "acct", "m", 1, 0);
        no_brain.brain = 500;
        let ok = line("r4", "acct", "m", 5, 0);
        let r = vec![unknown_model, too_big, no_brain, ok];
        let rec = settle(&input(&r, &pl, &[], FeeSplit::MinerOnly), &s, &params()).unwrap();
        assert_eq!(rec.rejected.iter().map(|x| x.receipt_id.as_str()).collect::<Vec<_>>(), ["r1", "r2", "r3"]);
        assert_eq!(rec.total_debits(), 5);
        assert_eq!(rec.receipt_count, 4, "rejected receipts stay in the root");
        let dup = vec![line("r1", "acct", "m", 1, 0), line("r1", "acct", "m", 2, 0)];
        assert_eq!(
            settle(&input(&dup, &pl, &[], FeeSplit::MinerOnly), &s, &params()),
            Err(SettleError::DuplicateReceipt("r1".into()))
        );
        let bad = BrainPeriod { brain: 7, miners: vec!["a".into()], ..BrainPeriod::default() };
        assert!(matches!(
            settle(&input(&[], &pl, &[bad], FeeSplit::MinerOnly), &s, &params()),
            Err(SettleError::Dimension(_))
        ));
        let unknown = BrainPeriod { brain: 99, ..BrainPeriod::default() };
        assert_eq!(
            settle(&input(&[], &pl, &[unknown], FeeSplit::MinerOnly), &s, &params()),
            Err(SettleError::UnknownBrain(99))
        );
    }

    #[test]
    fn receipt_inclusion_proof_verifies_against_the_record() {
        let s = state(&[("acct", 1_000)]);
        let r: Vec<ReceiptLine> = (0..7).map(|i| line(&format!("r{i}"), "acct", "m", 1, 1)).collect();
        let pl = prices();
        let rec = settle(&input(&r, &pl, &[], FeeSplit::MinerOnly), &s, &params()).unwrap();
        let (l, proof) = receipt_proof(&r, "r4").unwrap();
        assert!(rec.verify_receipt(&l, &proof));
        let mut forged = l.clone();
        forged.completion_units = 0;
        assert!(!rec.verify_receipt(&forged, &proof), "a receipt edited after the fact fails");
        let (l2, _) = receipt_proof(&r, "r5").unwrap();
        assert!(!rec.verify_receipt(&l2, &proof));
        assert!(receipt_proof(&r, "nope").is_none());
        let back: SettlementRecord = serde_json::from_str(&serde_json::to_string(&rec).unwrap()).unwrap();
        assert_eq!(back, rec);
    }

    const ACCTS: [&str; 3] = ["a0", "a1", "a2"];
    const MINERS: [&str; 3] = ["m0", "m1", "a0"]; // a0 is both payer and miner

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Emitted equals distributed; settlement totals equal the receipts exactly (collected +
        /// shortfall = Σ prices of accepted receipts, debits = fee credits); no balance below
        /// zero; supply conserved after applying.
        #[test]
        fn settlement_invariants(
            balances in prop::collection::vec(0u128..5_000, 3),
            receipts in prop::collection::vec((0usize..3, 0usize..3, 7u16..9, 0u64..3000, 0u64..3000, any::<bool>()), 0..30),
            stake in prop::collection::vec(0u128..1000, 2),
            perf in prop::collection::vec(0u64..=ONE, 2),
            incentive in prop::collection::vec(0u64..1000, 3),
            dividends in prop::collection::vec(0u64..1000, 2),
            from in 0u64..10_000_000, len in 0u64..20_000,
            miner_only in any::<bool>(),
        ) {
            let p = params();
            let mut s = state(&ACCTS.iter().copied().zip(balances.iter().copied()).collect::<Vec<_>>());
            s.brains.create_by_stake("staker", Some(8), u128::MAX, 0, &p).unwrap();
            s.genesis_supply += s.brain_locks(); // created outside apply_tx: count the lock as genesis
            let pl = prices();
            let lines: Vec<ReceiptLine> = receipts.iter().enumerate().map(|(i, (a, m, b, pu, cu, ok))| ReceiptLine {
                receipt_id: format!("r{i:03}"), account: ACCTS[*a].into(), miner: MINERS[*m].into(), brain: *b,
                prompt_units: *pu, completion_units: *cu, model: if *ok { "m".into() } else { "x".into() },
                gateway: "gw".into(),
            }).collect();
            let brains: Vec<BrainPeriod> = (0..2).map(|i| BrainPeriod {
                brain: 7 + i as u16,
                standing: BrainStanding { stake: stake[i], performance: perf[i] },
                miners: MINERS.iter().map(|m| m.to_string()).collect(),
                incentive: incentive.clone(),
                validators: vec!["v0".into(), "v1".into()],
                dividends: dividends.clone(),
                validator_stake: stake.clone(),
            }).collect();
            let inp = SettlementInput { from_height: from, to_height: from + len, receipts: &lines, prices: &pl, brains: &brains,
                fee_split: if miner_only { FeeSplit::MinerOnly } else { FeeSplit::LikeEmission } };
            let rec = settle(&inp, &s, &p).unwrap();
            // emitted equals distributed
            prop_assert_eq!(rec.total_emission_credits(), rec.minted);
            prop_assert_eq!(rec.minted + rec.not_minted, rec.issuance);
            prop_assert_eq!(rec.issuance, issuance_between(from, from + len, &p));
            // settlement totals equal the receipts exactly
            let owed: Amount = lines.iter().filter_map(|l| pl.cost(&l.model, l.prompt_units, l.completion_units).ok()).sum();
            prop_assert_eq!(rec.total_debits() + rec.total_shortfall(), owed);
            prop_assert_eq!(rec.total_fee_credits(), rec.total_debits());
            for a in ACCTS {
                prop_assert!(rec.debits.get(a).copied().unwrap_or(0) <= s.balance(a));
                let short = rec.shortfalls.get(a).copied().unwrap_or(0);
                if short > 0 { prop_assert_eq!(rec.debits.get(a).copied().unwrap_or(0), s.balance(a)); }
            }
            prop_assert_eq!(rec.receipts_root, receipts_root(&lines).unwrap());
            let before: Amount = s.balances.values().sum();
            s.apply_settlement(&rec).unwrap();
            prop_assert!(s.supply_is_conserved());
            prop_assert_eq!(s.balances.values().sum::<Amount>(), before + rec.minted);
            prop_assert!(s.balances.values().all(|v| *v > 0));
        }
    }
}
