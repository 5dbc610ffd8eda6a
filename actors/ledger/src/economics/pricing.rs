//! Compute-unit pricing (whitepaper §3.5.1). A task costs
//! `ceil((prompt_units · prompt_price + completion_units · completion_price) / 1000)` base units,
//! prices being per 1,000 compute units. Rounding is up, once per task, so no task is free and
//! the overcharge is below one base unit (10⁻⁹ $BASED). A task larger than the model's context
//! is refused.
//!
//! Example price list: whitepaper Table 3 ("Estimated Requirements for Popular Large Language
//! Models", prices in $BASED per 1k compute units at 1 $BASED = $10), quoted:
//!
//! ```text
//! Model Name                        Prompt    Completion  Context
//! OpenAI: GPT-4                     0.03      0.06          8191
//! OpenAI: GPT-3.5 Turbo             0.01      0.02          4095
//! Google: PaLM 2 Chat               0.00025   0.0005       36864
//! Anthropic: Claude v2              0.008     0.024       200000
//! Mistral: Medium                   0.002778  0.008333     32000
//! Nous: Hermes 2 Mistral 8x7B DPO   0.00018   0.00054       8192
//! Meta: Llama v2 70B Chat           0.0007    0.0009        4096
//! Perplexity: PPLX 70B Chat         0.0007    0.0028        4096
//! Goliath 120B                      0.0125    0.0125        6144
//! Synthia 70B                       0.005     0.005         8192
//! ```

use serde::{Deserialize, Serialize};

use super::distribution::checked_debit;
use super::{mul_div_ceil, Amount, EconomicsError, Result};

/// Compute units per price unit ("per 1k compute units").
pub const UNITS_PER_PRICE: u128 = 1_000;

/// One model's prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPrice {
    /// Model name, the key [`PriceList::get`] looks it up by.
    pub model: String,
    /// Base units per 1,000 prompt compute units.
    #[serde(with = "super::amount_serde")]
    pub prompt_per_1k: Amount,
    /// Base units per 1,000 completion compute units.
    #[serde(with = "super::amount_serde")]
    pub completion_per_1k: Amount,
    /// Largest task (prompt + completion units).
    pub context: u64,
}

impl ModelPrice {
    /// A price entry for `model`; prices in base units per 1,000 compute units.
    pub fn new(model: &str, prompt_per_1k: Amount, completion_per_1k: Amount, context: u64) -> Self {
        Self { model: model.to_string(), prompt_per_1k, completion_per_1k, context }
    }

    /// Cost of a task of `prompt` + `completion` compute units.
    pub fn cost(&self, prompt: u64, completion: u64) -> Result<Amount> {
        let units = prompt.checked_add(completion).ok_or(EconomicsError::Overflow)?;
        if units > self.context {
            return Err(EconomicsError::ContextExceeded { units, context: self.context });
        }
        let a = (prompt as u128).checked_mul(self.prompt_per_1k).ok_or(EconomicsError::Overflow)?;
        let b = (completion as u128).checked_mul(self.completion_per_1k).ok_or(EconomicsError::Overflow)?;
        let sum = a.checked_add(b).ok_or(EconomicsError::Overflow)?;
        mul_div_ceil(sum, 1, UNITS_PER_PRICE)
    }
}

/// A Brain's (or a gateway's) price list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PriceList {
    /// The priced models; names are expected to be unique (lookup takes the first match).
    pub models: Vec<ModelPrice>,
}

impl PriceList {
    /// Whitepaper Table 3, exact in base units.
    pub fn whitepaper_table3() -> Self {
        // $BASED per 1k units × 10⁹ base units
        let rows: [(&str, Amount, Amount, u64); 10] = [
            ("OpenAI: GPT-4", 30_000_000, 60_000_000, 8191),
            ("OpenAI: GPT-3.5 Turbo", 10_000_000, 20_000_000, 4095),
            ("Google: PaLM 2 Chat", 250_000, 500_000, 36864),
            ("Anthropic: Claude v2", 8_000_000, 24_000_000, 200_000),
            ("Mistral: Medium", 2_778_000, 8_333_000, 32_000),
            ("Nous: Hermes 2 Mistral 8x7B DPO", 180_000, 540_000, 8192),
            ("Meta: Llama v2 70B Chat", 700_000, 900_000, 4096),
            ("Perplexity: PPLX 70B Chat", 700_000, 2_800_000, 4096),
            ("Goliath 120B", 12_500_000, 12_500_000, 6144),
            ("Synthia 70B", 5_000_000, 5_000_000, 8192),
        ];
        Self { models: rows.iter().map(|(m, p, c, x)| ModelPrice::new(m, *p, *c, *x)).collect() }
    }

    /// The prices of `model`, or [`EconomicsError::UnknownModel`].
    pub fn get(&self, model: &str) -> Result<&ModelPrice> {
        self.models.iter().find(|m| m.model == model).ok_or_else(|| EconomicsError::UnknownModel(model.to_string()))
    }

    /// Cost of a task on `model`.
    pub fn cost(&self, model: &str, prompt: u64, completion: u64) -> Result<Amount> {
        self.get(model)?.cost(prompt, completion)
    }
}

/// Debits a task's cost from a spending account; refuses (and changes nothing) if the balance
/// would go below zero. Returns the new balance.
pub fn charge(balance: Amount, cost: Amount) -> Result<Amount> {
    checked_debit(balance, cost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::economics::UNITS_PER_TOKEN;
    use proptest::prelude::*;

    #[test]
    fn table3_prices() {
        let t = PriceList::whitepaper_table3();
        assert_eq!(t.models.len(), 10);
        // 1k prompt + 1k completion units cost exactly the two table prices
        let expect: [(&str, &str); 10] = [
            ("OpenAI: GPT-4", "0.09"),
            ("OpenAI: GPT-3.5 Turbo", "0.03"),
            ("Google: PaLM 2 Chat", "0.00075"),
            ("Anthropic: Claude v2", "0.032"),
            ("Mistral: Medium", "0.011111"),
            ("Nous: Hermes 2 Mistral 8x7B DPO", "0.00072"),
            ("Meta: Llama v2 70B Chat", "0.0016"),
            ("Perplexity: PPLX 70B Chat", "0.0035"),
            ("Goliath 120B", "0.025"),
            ("Synthia 70B", "0.01"),
        ];
        for (model, total) in expect {
            let frac = total.strip_prefix("0.").unwrap();
            let base = frac.parse::<u128>().unwrap() * 10u128.pow(9 - frac.len() as u32);
            assert_eq!(t.cost(model, 1000, 1000).unwrap(), base, "{model}");
        }
        // GPT-4: 500 prompt + 250 completion units = 0.015 + 0.015 = 0.03 $BASED
        assert_eq!(t.cost("OpenAI: GPT-4", 500, 250).unwrap(), 3 * UNITS_PER_TOKEN / 100);
        // rounding up: 1 prompt unit of Hermes = 0.00000018 $BASED = 180 base units exactly
        assert_eq!(t.cost("Nous: Hermes 2 Mistral 8x7B DPO", 1, 0).unwrap(), 180);
        // 1 unit of Mistral Medium prompt = 2,778,000 / 1000 = 2,778 base units
        assert_eq!(t.cost("Mistral: Medium", 1, 1).unwrap(), 2_778 + 8_333);
        // context limit
        assert_eq!(
            t.cost("OpenAI: GPT-4", 8000, 192),
            Err(EconomicsError::ContextExceeded { units: 8192, context: 8191 })
        );
        assert!(t.cost("OpenAI: GPT-4", 8000, 191).is_ok());
        assert!(matches!(t.cost("nope", 1, 1), Err(EconomicsError::UnknownModel(_))));
        let odd = ModelPrice::new("x", 1, 1, 10);
        assert_eq!(odd.cost(1, 0).unwrap(), 1); // 0.001 base units rounds up to 1
        assert_eq!(odd.cost(0, 0).unwrap(), 0);
    }

    #[test]
    fn charging_never_overdraws() {
        assert_eq!(charge(10, 3), Ok(7));
        assert_eq!(charge(10, 10), Ok(0));
        assert_eq!(charge(10, 11), Err(EconomicsError::InsufficientBalance { needed: 11, available: 10 }));
    }

    proptest! {
        /// Cost is monotone in units, exact to within one base unit, and additive splits of a
        /// task never cost less than the whole (rounding is in the network's favour by < 1 unit
        /// per task).
        #[test]
        fn cost_properties(pp in 0u128..100_000_000, cp in 0u128..100_000_000,
                           a in 0u64..100_000, b in 0u64..100_000, c in 0u64..100_000) {
            let m = ModelPrice::new("m", pp, cp, u64::MAX);
            let exact_num = a as u128 * pp + b as u128 * cp;
            let cost = m.cost(a, b).unwrap();
            prop_assert!(cost * 1000 >= exact_num && cost * 1000 < exact_num + 1000);
            prop_assert!(m.cost(a + c, b).unwrap() >= cost);
            prop_assert!(m.cost(a, b + c).unwrap() >= cost);
            prop_assert!(m.cost(a, 0).unwrap() + m.cost(0, b).unwrap() >= cost);
        }
    }
}
