//! Numbers as devices send them: JSON numbers, booleans, numbers in
//! strings (`"80.00"`), decimal commas (`"12,5"`), grouped thousands
//! (`"1.234,5"`, `"1,234.5"`), and named states (`ON` → 1).

use serde_json::Value;

/// The number in `v`: `Ok(None)` for `null` (absent), an error that says
/// what the value is when it is not a number.
pub fn number(v: &Value, states: &[(String, f64)]) -> Result<Option<f64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(if *b { 1.0 } else { 0.0 })),
        Value::Number(n) => n
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or_else(|| format!("`{n}` is not a finite number")),
        Value::String(s) => {
            if let Some((_, n)) = states.iter().find(|(k, _)| k == s || k == s.trim()) {
                return Ok(Some(*n));
            }
            text(s).map(Some).ok_or_else(|| {
                let shown: String = s.chars().take(40).collect();
                if states.is_empty() {
                    format!("`{shown}` is not a number")
                } else {
                    format!(
                        "`{shown}` is not a number nor one of {}",
                        states
                            .iter()
                            .map(|(k, _)| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            })
        }
        Value::Array(_) => Err("is an array, not a number".into()),
        Value::Object(_) => Err("is an object, not a number".into()),
    }
}

/// A number written as text: optional sign, digits, one decimal separator
/// (`.` or `,`), optional thousands groups of three digits with the other
/// separator, optional exponent. `NaN` and infinities are not numbers.
pub fn text(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (sign, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    if digits.is_empty()
        || !digits
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b',')
    {
        return None;
    }
    let dots = digits.matches('.').count();
    let commas = digits.matches(',').count();
    let normal: String = match (dots, commas) {
        (0, 0) => digits.to_string(),
        (1, 0) => digits.to_string(),
        (0, 1) => digits.replace(',', "."),
        _ => {
            // Both, or one of them several times: the last separator, when
            // it differs from the others, is the decimal one; the others
            // must group thousands.
            let last = digits.rfind(['.', ','])?;
            let dec = digits.as_bytes()[last];
            let group = if dec == b'.' { ',' } else { '.' };
            let (int, frac) = if digits[..last].contains(dec as char) {
                // `1.234.567`: every separator groups thousands.
                (digits, "")
            } else {
                (&digits[..last], &digits[last + 1..])
            };
            let groups: Vec<&str> = int.split([group, dec as char]).collect();
            let ok = groups.len() > 1
                && (1..=3).contains(&groups[0].len())
                && groups[1..].iter().all(|g| g.len() == 3);
            if !ok {
                return None;
            }
            if frac.is_empty() {
                groups.concat()
            } else {
                format!("{}.{frac}", groups.concat())
            }
        }
    };
    if normal.starts_with('.') || normal.ends_with('.') {
        return None;
    }
    let full = match exp {
        Some(e)
            if !e.is_empty()
                && e.trim_start_matches(['+', '-'])
                    .bytes()
                    .all(|b| b.is_ascii_digit()) =>
        {
            format!("{sign}{normal}e{e}")
        }
        Some(_) => return None,
        None => format!("{sign}{normal}"),
    };
    full.parse::<f64>().ok().filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_numbers_with_points_commas_and_groups() {
        for (s, want) in [
            ("80.00", 80.0),
            ("12,5", 12.5),
            (" -3,25 ", -3.25),
            ("+7", 7.0),
            ("1.234,5", 1234.5),
            ("1,234.5", 1234.5),
            ("1.234.567", 1_234_567.0),
            ("1,234,567", 1_234_567.0),
            ("2.5e3", 2500.0),
            ("0", 0.0),
        ] {
            assert_eq!(text(s), Some(want), "{s}");
        }
        for s in [
            "",
            "abc",
            "NaN",
            "inf",
            "1.2.3,4,5",
            "12,34,5",
            ".5",
            "5.",
            "1e",
            "1,2345.6",
            "--1",
            "1 000",
        ] {
            assert_eq!(text(s), None, "{s}");
        }
    }

    #[test]
    fn json_values_states_and_nulls() {
        assert_eq!(number(&json!(21.5), &[]), Ok(Some(21.5)));
        assert_eq!(number(&json!("80.00"), &[]), Ok(Some(80.0)));
        assert_eq!(number(&json!(true), &[]), Ok(Some(1.0)));
        assert_eq!(number(&json!(null), &[]), Ok(None));
        let states = vec![("ON".to_string(), 1.0), ("OFF".to_string(), 0.0)];
        assert_eq!(number(&json!("OFF"), &states), Ok(Some(0.0)));
        let e = number(&json!("TOGGLE"), &states).unwrap_err();
        assert!(e.contains("TOGGLE") && e.contains("ON, OFF"), "{e}");
        assert!(number(&json!({"a":1}), &[]).unwrap_err().contains("object"));
        assert!(number(&json!("Normal"), &[])
            .unwrap_err()
            .contains("Normal"));
    }
}
