//! Vietnamese text folded for comparison: lower case, diacritics removed
//! (precomposed letters and combining marks alike), đ → d, runs of
//! non-alphanumerics collapsed to one space.

/// Accented lower-case letters grouped by their base letter.
const GROUPS: &[(char, &str)] = &[
    ('a', "àáảãạăằắẳẵặâầấẩẫậ"),
    ('e', "èéẻẽẹêềếểễệ"),
    ('i', "ìíỉĩị"),
    ('o', "òóỏõọôồốổỗộơờớởỡợ"),
    ('u', "ùúủũụưừứửữự"),
    ('y', "ỳýỷỹỵ"),
    ('d', "đ"),
];

fn base(c: char) -> char {
    for (b, group) in GROUPS {
        if group.contains(c) {
            return *b;
        }
    }
    c
}

/// Fold `s` for diacritics- and case-insensitive comparison, words
/// separated by single spaces, with a space at each end (so a phrase
/// ` ban na ` matches whole words only).
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(' ');
    for c in s.chars().flat_map(char::to_lowercase) {
        // Combining diacritics (decomposed input).
        if ('\u{300}'..='\u{36f}').contains(&c) {
            continue;
        }
        let c = base(c);
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    if !out.ends_with(' ') {
        out.push(' ');
    }
    out
}

/// Lower case with diacritics kept, words separated by single spaces, a
/// space at each end (hazard phrases, where "lũ" and "lu" differ).
pub fn lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(' ');
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    if !out.ends_with(' ') {
        out.push(' ');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_vietnamese() {
        assert_eq!(fold("Bản Nà Cúng"), " ban na cung ");
        assert_eq!(fold("THÔN ĐỒNG  Tâm, xã"), " thon dong tam xa ");
        // Decomposed: a + combining grave.
        assert_eq!(fold("Ba\u{300}n"), " ban ");
        assert_eq!(lower("Lũ quét, SẠT LỞ"), " lũ quét sạt lở ");
    }
}
