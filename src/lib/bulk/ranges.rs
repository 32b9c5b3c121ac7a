//! Sets of chunk indices, written as ranges (`0-7,9,12-15`): what a
//! receiver asks for, and what it holds.

use std::collections::BTreeSet;

/// The most ranges, and indices, a text may hold (hostile input is
/// bounded).
const MAX_RANGES: usize = 4096;
pub const MAX_INDICES: u64 = 65536;

/// Chunk indices, each below the transfer's chunk count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges(BTreeSet<u64>);

impl Ranges {
    /// Reads `0-7,9` with every index below `count`.
    pub fn parse(text: &str, count: u64) -> Result<Ranges, String> {
        let mut out = BTreeSet::new();
        let text = text.trim();
        if text.is_empty() {
            return Ok(Ranges(out));
        }
        for (i, part) in text.split(',').enumerate() {
            if i >= MAX_RANGES {
                return Err(format!("more than {MAX_RANGES} ranges"));
            }
            let num = |s: &str| {
                s.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("`{}` is not a chunk index", s.escape_debug()))
            };
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(part)?, num(part)?),
            };
            if a > b || b >= count {
                return Err(format!(
                    "range {a}-{b} is not within 0-{}",
                    count.saturating_sub(1)
                ));
            }
            if (out.len() as u64).saturating_add(b - a) >= MAX_INDICES {
                return Err(format!("more than {MAX_INDICES} chunks asked for at once"));
            }
            out.extend(a..=b);
        }
        Ok(Ranges(out))
    }

    /// Every index from `from` below `to`.
    pub fn span(from: u64, to: u64) -> Ranges {
        Ranges((from..to).collect())
    }

    pub fn insert(&mut self, i: u64) -> bool {
        self.0.insert(i)
    }

    pub fn contains(&self, i: u64) -> bool {
        self.0.contains(&i)
    }

    pub fn len(&self) -> u64 {
        self.0.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().copied()
    }

    /// Whether every index of `other` is here.
    pub fn covers(&self, other: &Ranges) -> bool {
        other.0.is_subset(&self.0)
    }

    /// The first `n` indices below `count` not here.
    pub fn missing(&self, count: u64, n: u64) -> Ranges {
        Ranges(
            (0..count)
                .filter(|i| !self.0.contains(i))
                .take(n as usize)
                .collect(),
        )
    }
}

impl std::fmt::Display for Ranges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        let mut it = self.0.iter().copied().peekable();
        while let Some(a) = it.next() {
            let mut b = a;
            while it.peek() == Some(&(b + 1)) {
                b += 1;
                it.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip_and_refuse_what_is_out_of_bounds() {
        let r = Ranges::parse("0-3,5, 7-8", 10).unwrap();
        assert_eq!(r.to_string(), "0-3,5,7-8");
        assert_eq!(r.len(), 7);
        assert_eq!(r.missing(10, 2).to_string(), "4,6");
        assert!(Ranges::parse("0-10", 10).is_err());
        assert!(Ranges::parse("3-1", 10).is_err());
        assert!(Ranges::parse("x", 10).is_err());
        assert!(Ranges::parse("", 10).unwrap().is_empty());
        let many = vec!["1"; MAX_RANGES + 1].join(",");
        assert!(Ranges::parse(&many, 10).is_err());
    }
}
