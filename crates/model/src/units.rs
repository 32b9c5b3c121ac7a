//! Byte counts as the configuration and the command line write them.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// Why a text is not a byte count.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("`{0}` is not a size: use forms like 4096, 500k, 10MiB, 2G")]
    NotASize(String),
    #[error("`{text}`: unknown unit `{unit}` (use k, M, G, T)")]
    UnknownUnit { text: String, unit: String },
}

/// A byte count, written in the file as an integer or as `10 MiB`, `1.5G`, `500k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

impl Size {
    pub fn parse(text: &str) -> Result<Size, Error> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let num: f64 = num.parse().map_err(|_| Error::NotASize(text.to_string()))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => {
                return Err(Error::UnknownUnit {
                    text: text.to_string(),
                    unit: unit.trim().to_string(),
                })
            }
        };
        Ok(Size((num * mult as f64).round() as u64))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            (1u64 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (scale, unit) in units {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{} {unit}", self.0 / scale);
            }
        }
        write!(f, "{} bytes", self.0)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Size(n)),
            Raw::Text(t) => Size::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let check = |t: &str, n: u64| assert_eq!(Size::parse(t), Ok(Size(n)), "{t}");
        check("4096", 4096);
        check("500k", 500 * 1024);
        check("10 MiB", 10 << 20);
        check("1.5G", 3 << 29);
        assert!(Size::parse("ten").is_err());
        assert!(Size::parse("10 parsecs").is_err());
        assert_eq!(Size(10 << 20).to_string(), "10 MiB");
        assert_eq!(Size(1000).to_string(), "1000 bytes");
    }

    #[test]
    fn errors_say_what_to_write() {
        assert_eq!(
            Size::parse("ten").unwrap_err().to_string(),
            "`ten` is not a size: use forms like 4096, 500k, 10MiB, 2G"
        );
        assert_eq!(
            Size::parse("10 parsecs").unwrap_err().to_string(),
            "`10 parsecs`: unknown unit `parsecs` (use k, M, G, T)"
        );
    }
}
