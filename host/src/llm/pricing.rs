//! Prices per million tokens, by model, and what a call costs. Built-in figures
//! for common models; the config's `[pricing."model"]` tables override or add.

use std::collections::HashMap;

use crate::config::Price;
use crate::record::Usage;

const fn price(input: f64, output: f64, cache_read: f64, cache_write: f64) -> Price {
    Price {
        input,
        output,
        cache_read,
        cache_write,
    }
}

/// Public list prices at the time of writing; override them in the config.
const BUILT_IN: &[(&str, Price)] = &[
    ("gpt-4o", price(2.50, 10.00, 1.25, 0.0)),
    ("gpt-4o-mini", price(0.15, 0.60, 0.075, 0.0)),
    ("gpt-4.1", price(2.00, 8.00, 0.50, 0.0)),
    ("gpt-4.1-mini", price(0.40, 1.60, 0.10, 0.0)),
    ("claude-sonnet-4-5", price(3.00, 15.00, 0.30, 3.75)),
    ("claude-haiku-4-5", price(1.00, 5.00, 0.10, 1.25)),
    ("claude-opus-4-1", price(15.00, 75.00, 1.50, 18.75)),
    ("scripted", price(0.0, 0.0, 0.0, 0.0)),
];

#[derive(Debug, Clone)]
pub struct Pricing {
    prices: HashMap<String, Price>,
}

impl Pricing {
    pub fn new(overrides: &HashMap<String, Price>) -> Self {
        let mut prices: HashMap<String, Price> = BUILT_IN.iter().map(|(m, p)| ((*m).to_owned(), *p)).collect();
        prices.extend(overrides.iter().map(|(m, p)| (m.clone(), *p)));
        Self { prices }
    }

    /// What `usage` on `model` costs, or `None` for a model without a price.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        let p = self.prices.get(model)?;
        let uncached = usage.prompt.saturating_sub(usage.cache_read) as f64;
        Some(
            (uncached * p.input
                + usage.completion as f64 * p.output
                + usage.cache_read as f64 * p.cache_read
                + usage.cache_write as f64 * p.cache_write)
                / 1_000_000.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_counts_cached_prompt_tokens_at_the_cache_price() {
        let mut overrides = HashMap::new();
        overrides.insert("m".to_owned(), price(1.0, 2.0, 0.5, 0.0));
        let pricing = Pricing::new(&overrides);
        let usage = Usage {
            prompt: 1_000_000,
            completion: 500_000,
            total: 1_500_000,
            cache_read: 200_000,
            cache_write: 0,
        };
        let cost = pricing.cost("m", &usage).unwrap();
        assert!((cost - (0.8 + 1.0 + 0.1)).abs() < 1e-9, "{cost}");
        assert_eq!(pricing.cost("unknown", &usage), None);
        assert_eq!(pricing.cost("scripted", &usage), Some(0.0));
    }
}
