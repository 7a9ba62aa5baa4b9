//! Run-id templates such as `"order-{order_id}"`: parsed at compile time so that a placeholder
//! naming no parameter is a compile error, then turned into a `format!` string with positional
//! `{}` holes (the placeholders' values are passed as explicit arguments, which keeps macro
//! hygiene out of the way).

/// A piece of a parsed template.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text, braces already unescaped.
    Text(String),
    /// `{name}` or `{name:spec}`.
    Param {
        /// The parameter the placeholder names.
        name: String,
        /// The format spec after `:`, without the colon (empty if none).
        spec: String,
    },
}

/// Splits a template into text and placeholders. `{{` and `}}` stand for literal braces.
pub(crate) fn parse(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '}' => {
                return Err("unmatched `}` in the id template; write `}}` for a literal brace".to_owned());
            }
            '{' => {
                let mut inner = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    inner.push(c);
                }
                if !closed {
                    return Err(format!(
                        "unclosed `{{{inner}` in the id template; write `{{{{` for a literal brace"
                    ));
                }
                let (name, spec) = match inner.split_once(':') {
                    Some((name, spec)) => (name.trim(), spec),
                    None => (inner.trim(), ""),
                };
                if name.is_empty() {
                    return Err(format!(
                        "empty placeholder `{{{inner}}}` in the id template: name a parameter, e.g. `{{order_id}}`"
                    ));
                }
                if !is_identifier(name) {
                    return Err(format!(
                        "id template placeholder `{{{inner}}}` must be a parameter name, e.g. `{{order_id}}`"
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Param { name: name.to_owned(), spec: spec.to_owned() });
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn is_identifier(s: &str) -> bool {
    let s = s.strip_prefix("r#").unwrap_or(s);
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
        && s != "_"
}

/// The `format!` string for the pieces: text re-escaped, each placeholder a positional hole.
pub(crate) fn format_string(pieces: &[Piece]) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(&text.replace('{', "{{").replace('}', "}}")),
            Piece::Param { spec, .. } if spec.is_empty() => out.push_str("{}"),
            Piece::Param { spec, .. } => {
                out.push_str("{:");
                out.push_str(spec);
                out.push('}');
            }
        }
    }
    out
}

/// The template text that parses to `pieces` (braces in text doubled): what the property test
/// and the `id_template` fuzz target compare a parse against.
#[cfg(any(test, fuzzing))]
#[cfg_attr(fuzzing, allow(dead_code))] // the macros crate itself, built for the fuzz targets
pub(crate) fn unparse(pieces: &[Piece]) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(&t.replace('{', "{{").replace('}', "}}")),
            Piece::Param { name, spec } if spec.is_empty() => out.push_str(&format!("{{{name}}}")),
            Piece::Param { name, spec } => out.push_str(&format!("{{{name}:{spec}}}")),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn text(s: &str) -> Piece {
        Piece::Text(s.to_owned())
    }

    fn param(name: &str, spec: &str) -> Piece {
        Piece::Param { name: name.to_owned(), spec: spec.to_owned() }
    }

    #[test]
    fn splits_text_and_placeholders() {
        assert_eq!(parse("order-{order_id}").unwrap(), vec![text("order-"), param("order_id", "")]);
        assert_eq!(parse("{a}{b:>4}-x").unwrap(), vec![param("a", ""), param("b", ">4"), text("-x")]);
        assert_eq!(parse("fixed").unwrap(), vec![text("fixed")]);
        assert_eq!(parse("{ a }").unwrap(), vec![param("a", "")]);
        assert_eq!(parse("{r#type}").unwrap(), vec![param("r#type", "")]);
    }

    #[test]
    fn escapes() {
        assert_eq!(parse("{{lit}}-{id}-}}").unwrap(), vec![text("{lit}-"), param("id", ""), text("-}")]);
        let pieces = parse("{{lit}}-{id}-{n:03}").unwrap();
        assert_eq!(format_string(&pieces), "{{lit}}-{}-{:03}");
    }

    #[test]
    fn malformed_templates() {
        assert_eq!(
            parse("a}b").unwrap_err(),
            "unmatched `}` in the id template; write `}}` for a literal brace"
        );
        assert_eq!(
            parse("a-{id").unwrap_err(),
            "unclosed `{id` in the id template; write `{{` for a literal brace"
        );
        assert_eq!(
            parse("a-{}").unwrap_err(),
            "empty placeholder `{}` in the id template: name a parameter, e.g. `{order_id}`"
        );
        assert_eq!(
            parse("a-{0}").unwrap_err(),
            "id template placeholder `{0}` must be a parameter name, e.g. `{order_id}`"
        );
        assert!(parse("{a.b}").is_err());
        assert!(parse("{_}").is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2_000, ..Default::default() })]

        /// Any string is either refused with a message or parsed into pieces that print back
        /// to a template parsing to the same pieces: never a panic.
        #[test]
        fn any_template_parses_or_is_refused(template in "\\PC{0,40}|[{}a-z_:0 -]{0,24}") {
            match parse(&template) {
                Ok(pieces) => {
                    assert_eq!(parse(&unparse(&pieces)).unwrap(), pieces);
                    let _ = format_string(&pieces);
                }
                Err(message) => assert!(message.contains("id template"), "{message}"),
            }
        }

        /// Escaped literal text comes back verbatim, braces included.
        #[test]
        fn escaped_text_round_trips(text in "\\PC{1,40}") {
            let escaped = text.replace('{', "{{").replace('}', "}}");
            assert_eq!(parse(&escaped).unwrap(), vec![Piece::Text(text)]);
        }
    }
}
