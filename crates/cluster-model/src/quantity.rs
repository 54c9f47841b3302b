//! Physical quantities written with their unit (`2kW`, `208V`, `50A`, `64GB`, `400Gbps`), so a
//! figure in the wrong unit is an error at its field, not a silent misreading.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a quantity measures, with the units it may be written in (factor to the base unit).
pub trait Dimension {
    const NAME: &'static str;
    const EXAMPLE: &'static str;
    const BASE: &'static str;
    const UNITS: &'static [(&'static str, f64)];
}

macro_rules! dimension {
    ($t:ident, $name:literal, $example:literal, $base:literal, [$(($u:literal, $f:expr)),*]) => {
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
        pub struct $t;
        impl Dimension for $t {
            const NAME: &'static str = $name;
            const EXAMPLE: &'static str = $example;
            const BASE: &'static str = $base;
            const UNITS: &'static [(&'static str, f64)] = &[$(($u, $f)),*];
        }
    };
}

dimension!(
    Power,
    "a power",
    "700W or 2kW",
    "W",
    [("kW", 1e3), ("W", 1.0)]
);
dimension!(Voltage, "a voltage", "208V", "V", [("V", 1.0)]);
dimension!(Current, "a current", "50A", "A", [("A", 1.0)]);
dimension!(
    Bytes,
    "a size",
    "64GB or 7.68TB",
    "B",
    [
        ("TB", 1e12),
        ("GB", 1e9),
        ("MB", 1e6),
        ("TiB", 1099511627776.0),
        ("GiB", 1073741824.0)
    ]
);
dimension!(
    Bandwidth,
    "a bandwidth",
    "400Gbps",
    "bit/s",
    [("Tbps", 1e12), ("Gbps", 1e9), ("Mbps", 1e6)]
);
dimension!(
    Frequency,
    "a frequency",
    "2.4GHz",
    "Hz",
    [("GHz", 1e9), ("MHz", 1e6)]
);

/// A value of dimension `D`, held in the base unit.
#[derive(Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Q<D> {
    pub value: f64,
    text: Option<&'static str>,
    _d: std::marker::PhantomData<D>,
}

impl<D: Dimension> Q<D> {
    pub fn new(value: f64) -> Self {
        Q {
            value,
            text: None,
            _d: std::marker::PhantomData,
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        for (unit, factor) in D::UNITS {
            if let Some(num) = t.strip_suffix(unit) {
                let num = num.trim();
                if let Ok(v) = num.parse::<f64>() {
                    if v.is_finite() && v >= 0.0 {
                        return Ok(Q::new(v * factor));
                    }
                }
            }
        }
        let units: Vec<&str> = D::UNITS.iter().map(|(u, _)| *u).collect();
        Err(format!(
            "expected {} such as {} (units: {}), got {text:?}",
            D::NAME,
            D::EXAMPLE,
            units.join(", ")
        ))
    }

    /// In the largest (first listed) unit that keeps the number at least 1.
    pub fn human(&self) -> String {
        for (unit, factor) in D::UNITS {
            if self.value >= *factor {
                let v = self.value / factor;
                return format!("{}{unit}", trim(v));
            }
        }
        format!("{}{}", trim(self.value), D::BASE)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl<D: Dimension> fmt::Debug for Q<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.human())
    }
}

impl<D: Dimension> fmt::Display for Q<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = self.text;
        write!(f, "{}", self.human())
    }
}

impl<'de, D: Dimension> Deserialize<'de> for Q<D> {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match &v {
            serde_json::Value::String(s) => Q::parse(s).map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "expected {} with its unit, such as {}, got {other}",
                D::NAME,
                D::EXAMPLE
            ))),
        }
    }
}

impl<D: Dimension> Serialize for Q<D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.human())
    }
}

impl<D: Dimension> JsonSchema for Q<D> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Quantity_{}", D::BASE.replace('/', "_")).into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let units: Vec<&str> = D::UNITS.iter().map(|(u, _)| *u).collect();
        schemars::json_schema!({
            "type": "string",
            "description": format!("{} with its unit ({}), e.g. {}", D::NAME, units.join(", "), D::EXAMPLE),
            "pattern": format!("^[0-9.]+ ?({})$", units.join("|")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_required_and_checked() {
        assert_eq!(Q::<Power>::parse("2kW").unwrap().value, 2000.0);
        assert_eq!(Q::<Power>::parse("700 W").unwrap().value, 700.0);
        assert_eq!(Q::<Bytes>::parse("7.68TB").unwrap().value, 7.68e12);
        let e = Q::<Power>::parse("64GB").unwrap_err();
        assert_eq!(
            e,
            "expected a power such as 700W or 2kW (units: kW, W), got \"64GB\""
        );
        assert!(Q::<Current>::parse("-5A").is_err());
        assert_eq!(Q::<Power>::new(14400.0).human(), "14.4kW");
        assert_eq!(Q::<Bytes>::new(1.024e12).human(), "1.02TB");
    }
}
