//! Templates over topic segments and wildcard bindings: `{device}`,
//! `{device}-{key}`, `{name}`.

use super::topic::is_name;

/// A part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// The value bound to this name.
    Var(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    text: String,
}

impl Template {
    /// Parse; `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err(format!("`{text}`: thiếu `}}`")),
                        }
                    }
                    if !is_name(&name) {
                        return Err(format!(
                            "`{text}`: `{{{name}}}` không phải tên hợp lệ (chữ thường không dấu, số, `_`)"
                        ));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(name));
                }
                '}' => return Err(format!("`{text}`: `}}` thừa")),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        Ok(Template {
            parts,
            text: text.to_string(),
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The names it uses.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(n) => Some(n.as_str()),
            Part::Text(_) => None,
        })
    }

    /// True when it has no `{name}`.
    pub fn is_constant(&self) -> bool {
        self.names().next().is_none()
    }

    /// Render with `lookup`; `None` when a name has no value.
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Var(n) => out.push_str(lookup(n)?),
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_names_and_keeps_literal_braces() {
        let t = Template::parse("{device}-{key}").unwrap();
        assert_eq!(t.names().collect::<Vec<_>>(), vec!["device", "key"]);
        let got = t.render(|n| match n {
            "device" => Some("tasmota"),
            "key" => Some("LYWSD03-52680f"),
            _ => None,
        });
        assert_eq!(got.as_deref(), Some("tasmota-LYWSD03-52680f"));
        assert_eq!(t.render(|_| None), None);
        let lit = Template::parse("a{{b}}").unwrap();
        assert!(lit.is_constant());
        assert_eq!(lit.render(|_| None).as_deref(), Some("a{b}"));
        for bad in ["{Device}", "{x", "x}", "{}"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
