//! Indicator targets such as `> 90` or `<= 3600`.

use serde::{Serialize, Serializer};

/// A comparison with a threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// The operator.
    pub op: Op,
    /// The threshold.
    pub value: f64,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
}

impl Op {
    /// The textual form.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
        }
    }
}

impl Target {
    /// Parse `"> 90"`, `">=60"`, `"< 20"`, `"<= 3600"`, `"== 100"`.
    pub fn parse(s: &str) -> Result<Target, String> {
        let s = s.trim();
        let (op, rest) = if let Some(r) = s.strip_prefix(">=") {
            (Op::Ge, r)
        } else if let Some(r) = s.strip_prefix("<=") {
            (Op::Le, r)
        } else if let Some(r) = s.strip_prefix("==") {
            (Op::Eq, r)
        } else if let Some(r) = s.strip_prefix('>') {
            (Op::Gt, r)
        } else if let Some(r) = s.strip_prefix('<') {
            (Op::Lt, r)
        } else {
            return Err(format!(
                "`{s}` không phải mục tiêu: viết một phép so sánh (>, >=, <, <=, ==) và một số, ví dụ \"> 90\""
            ));
        };
        let value: f64 = rest
            .trim()
            .parse()
            .map_err(|_| format!("`{}` trong mục tiêu `{s}` không phải là số", rest.trim()))?;
        if !value.is_finite() {
            return Err(format!("mục tiêu `{s}` không hữu hạn"));
        }
        Ok(Target { op, value })
    }

    /// Whether `v` meets the target.
    pub fn met(&self, v: f64) -> bool {
        match self.op {
            Op::Gt => v > self.value,
            Op::Ge => v >= self.value,
            Op::Lt => v < self.value,
            Op::Le => v <= self.value,
            Op::Eq => (v - self.value).abs() < 1e-9,
        }
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Target", 2)?;
        st.serialize_field("op", self.op.as_str())?;
        st.serialize_field("value", &self.value)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares() {
        let t = Target::parse("> 90").unwrap();
        assert!(t.met(90.5));
        assert!(!t.met(90.0));
        let t = Target::parse(">=60").unwrap();
        assert!(t.met(60.0));
        let t = Target::parse("< 20").unwrap();
        assert!(t.met(19.99) && !t.met(20.0));
        assert!(Target::parse("90").is_err());
        assert!(Target::parse("> ninety").is_err());
    }
}
