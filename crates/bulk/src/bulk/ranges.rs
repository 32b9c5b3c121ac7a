//! Sets of chunk indices, written as ranges (`0-7,9,12-15`): what a
//! receiver asks for, and what it holds.

use std::collections::BTreeSet;

/// The most ranges, and indices, a text may hold (hostile input is
/// bounded).
const MAX_RANGES: usize = 4096;
pub const MAX_INDICES: u64 = 65536;

/// Why a text does not name a set of chunk indices. The message is what a
/// sender logs of an answer it cannot follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("more than {max} ranges", max = MAX_RANGES)]
    TooManyRanges,
    #[error("`{}` is not a chunk index", .text.escape_debug())]
    NotAnIndex { text: String },
    #[error("range {from}-{to} is not within 0-{}", .count.saturating_sub(1))]
    OutOfRange { from: u64, to: u64, count: u64 },
    #[error("more than {max} chunks asked for at once", max = MAX_INDICES)]
    TooManyIndices,
}

/// Chunk indices, each below the transfer's chunk count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges(BTreeSet<u64>);

impl Ranges {
    /// Reads `0-7,9` with every index below `count`.
    pub fn parse(text: &str, count: u64) -> Result<Ranges, Error> {
        let mut out = BTreeSet::new();
        let text = text.trim();
        if text.is_empty() {
            return Ok(Ranges(out));
        }
        for (i, part) in text.split(',').enumerate() {
            if i >= MAX_RANGES {
                return Err(Error::TooManyRanges);
            }
            let num = |s: &str| {
                s.trim().parse::<u64>().map_err(|_| Error::NotAnIndex {
                    text: s.to_string(),
                })
            };
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(part)?, num(part)?),
            };
            if a > b || b >= count {
                return Err(Error::OutOfRange {
                    from: a,
                    to: b,
                    count,
                });
            }
            if (out.len() as u64).saturating_add(b - a) >= MAX_INDICES {
                return Err(Error::TooManyIndices);
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

    /// What a sender logs of an answer it cannot follow.
    #[test]
    fn errors_say_what_is_wrong_with_the_ranges() {
        let many = vec!["1"; MAX_RANGES + 1].join(",");
        let wide = format!("0-{}", MAX_INDICES);
        for (text, count, message) in [
            (many.as_str(), 10, "more than 4096 ranges"),
            ("x", 10, "`x` is not a chunk index"),
            ("0, y", 10, "` y` is not a chunk index"),
            ("1-\"", 10, "`\\\"` is not a chunk index"),
            ("0-10", 10, "range 0-10 is not within 0-9"),
            ("3-1", 10, "range 3-1 is not within 0-9"),
            (
                wide.as_str(),
                u64::MAX,
                "more than 65536 chunks asked for at once",
            ),
        ] {
            assert_eq!(Ranges::parse(text, count).unwrap_err().to_string(), message);
        }
    }
}
