//! The command-line pieces both load benchmarks parse alike.

use std::str::FromStr;

use anyhow::{bail, Context};

/// The number `value` given to option `what` (`_` may group digits:
/// `10_000`).
pub fn number<T>(value: Option<&String>, what: &str) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value
        .with_context(|| format!("{what} needs a number"))?
        .trim()
        .replace('_', "")
        .parse()
        .with_context(|| format!("{what} needs a number"))
}

/// `--only`'s list of scenarios (`1,3`): bit n set for scenario n.
pub fn scenarios(list: Option<&String>) -> anyhow::Result<u8> {
    let list = list.context("--only needs scenarios, e.g. 1,3")?;
    let mut only = 0u8;
    for n in list.split(',') {
        let n: u8 = n.trim().parse().context("--only takes 1, 2 and 3")?;
        if !(1..=3).contains(&n) {
            bail!("--only takes 1, 2 and 3");
        }
        only |= 1 << n;
    }
    Ok(only)
}
