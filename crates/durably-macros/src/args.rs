//! The `key = value` lists inside `#[durably::task(...)]` and `#[durably::workflow(...)]`: parsed
//! once into [`Arg`]s, checked against the keys a macro knows (with a "did you mean" for typos),
//! then read with typed accessors whose errors say what value was expected.

use proc_macro2::TokenStream;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Lit, LitBool, LitInt, LitStr, Meta, Token};

/// One `key = value` or bare `flag` of an attribute.
pub(crate) struct Arg {
    /// The key, spanned where the user wrote it.
    pub(crate) key: Ident,
    /// `None` for a bare flag such as `at_most_once`.
    pub(crate) value: Option<Expr>,
}

/// Parses an attribute's arguments, reporting unknown keys, duplicates and `key(...)` forms into
/// `errors` and returning the valid arguments, so that every problem is reported, not only the
/// first.
pub(crate) fn parse(tokens: TokenStream, attr: &str, known: &[&str], errors: &mut Errors) -> Vec<Arg> {
    let mut args: Vec<Arg> = Vec::new();
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(metas) => metas,
        Err(error) => {
            errors.push(error);
            return args;
        }
    };
    for meta in metas {
        let (key, value) = match meta {
            Meta::Path(path) => match path.get_ident() {
                Some(ident) => (ident.clone(), None),
                None => {
                    errors.push(syn::Error::new_spanned(path, format!("expected a `{attr}` argument name")));
                    continue;
                }
            },
            Meta::NameValue(nv) => match nv.path.get_ident() {
                Some(ident) => (ident.clone(), Some(peel(nv.value))),
                None => {
                    errors
                        .push(syn::Error::new_spanned(nv.path, format!("expected a `{attr}` argument name")));
                    continue;
                }
            },
            Meta::List(list) => {
                let key = list.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
                errors.push(syn::Error::new_spanned(
                    list,
                    format!("expected `{key} = ...`, not `{key}(...)`, in `{attr}`"),
                ));
                continue;
            }
        };
        let name = key.to_string();
        if !known.contains(&name.as_str()) {
            errors.push(syn::Error::new(key.span(), unknown_key_message(attr, &name, known)));
            continue;
        }
        if args.iter().any(|a| a.key == name) {
            errors.push(syn::Error::new(key.span(), format!("duplicate `{name}` in `{attr}`")));
            continue;
        }
        args.push(Arg { key, value });
    }
    args
}

/// Expressions coming through a `macro_rules!` `$e:expr` arrive wrapped in invisible groups.
fn peel(mut expr: Expr) -> Expr {
    while let Expr::Group(group) = expr {
        expr = *group.expr;
    }
    expr
}

fn unknown_key_message(attr: &str, key: &str, known: &[&str]) -> String {
    let mut msg = format!("unknown `{attr}` argument `{key}`; expected one of: {}", known.join(", "));
    if let Some(close) = closest(key, known.iter().copied()) {
        msg.push_str(&format!(" (did you mean `{close}`?)"));
    }
    msg
}

/// The candidate nearest to `word`, if it is a plausible typo of it: a few edits away, or
/// sharing all but the last letter of `word` as a prefix (`retry` for `retries`).
pub(crate) fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = word.chars().count();
    let limit = len.div_ceil(3);
    let stem: String = word.chars().take(len.saturating_sub(1)).collect();
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, c)| d <= limit || (len >= 3 && c.starts_with(&stem)))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, &cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Arg {
    fn name(&self) -> String {
        self.key.to_string()
    }

    /// The value of a `key = value` argument; an error for a bare `key`.
    fn require_value(&self, example: &str) -> syn::Result<&Expr> {
        self.value.as_ref().ok_or_else(|| {
            syn::Error::new(self.key.span(), format!("`{}` needs a value, e.g. `{example}`", self.name()))
        })
    }

    /// A non-empty string literal.
    pub(crate) fn lit_str(&self, example: &str) -> syn::Result<LitStr> {
        match self.require_value(example)? {
            Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) if s.value().is_empty() => {
                Err(syn::Error::new(s.span(), format!("`{}` cannot be empty", self.name())))
            }
            Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => Ok(s.clone()),
            other => Err(syn::Error::new_spanned(
                other,
                format!("`{}` expects a string literal, e.g. `{example}`", self.name()),
            )),
        }
    }

    /// A `u32` integer literal (checked here), or any other expression (a constant), which the
    /// compiler then checks to be a `u32`.
    pub(crate) fn u32_expr(&self, example: &str) -> syn::Result<TokenStream> {
        match self.require_value(example)? {
            Expr::Lit(syn::ExprLit { lit: Lit::Int(int), .. }) => {
                let n: u32 = int.base10_parse().map_err(|_| {
                    syn::Error::new(
                        int.span(),
                        format!("`{}` must be a whole number from 0 to {}", self.name(), u32::MAX),
                    )
                })?;
                Ok(quote::ToTokens::to_token_stream(&LitInt::new(&n.to_string(), int.span())))
            }
            Expr::Lit(lit) => Err(syn::Error::new_spanned(
                lit,
                format!("`{}` expects an integer, e.g. `{example}`", self.name()),
            )),
            Expr::Unary(unary @ syn::ExprUnary { op: syn::UnOp::Neg(_), .. }) => {
                Err(syn::Error::new_spanned(
                    unary,
                    format!("`{}` must be a whole number from 0 to {}", self.name(), u32::MAX),
                ))
            }
            other => Ok(quote::ToTokens::to_token_stream(other)),
        }
    }

    /// `true` for a bare flag, else the boolean literal given.
    pub(crate) fn flag(&self) -> syn::Result<LitBool> {
        match &self.value {
            None => Ok(LitBool::new(true, self.key.span())),
            Some(Expr::Lit(syn::ExprLit { lit: Lit::Bool(b), .. })) => Ok(b.clone()),
            Some(other) => Err(syn::Error::new_spanned(
                other,
                format!("`{0}` is a flag: write `{0}` or `{0} = true`/`{0} = false`", self.name()),
            )),
        }
    }

    /// Any expression that is not a literal.
    pub(crate) fn expr(&self, example: &str) -> syn::Result<&Expr> {
        match self.require_value(example)? {
            Expr::Lit(lit) => Err(syn::Error::new_spanned(
                lit,
                format!("`{}` expects an expression such as `{example}`, not a literal", self.name()),
            )),
            other => Ok(other),
        }
    }
}

/// Collects several `syn::Error`s into one that reports them all.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Keeps the error of a result, returning its value if there was none.
    pub(crate) fn take<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(error);
                None
            }
        }
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use quote::quote;

    const KNOWN: &[&str] = &["name", "retries", "backoff", "at_most_once"];

    fn ok(tokens: TokenStream, known: &[&str]) -> Vec<Arg> {
        let mut errors = Errors::default();
        let args = parse(tokens, "a", known, &mut errors);
        errors.finish().unwrap();
        args
    }

    fn err(tokens: TokenStream) -> String {
        let mut errors = Errors::default();
        parse(tokens, "#[durably::task]", KNOWN, &mut errors);
        match errors.finish() {
            Ok(()) => panic!("expected an error"),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" | "),
        }
    }

    #[test]
    fn parses_flags_and_values() {
        let args = ok(quote!(name = "x", retries = 3, at_most_once,), KNOWN);
        assert_eq!(args.len(), 3);
        assert_eq!(args[0].lit_str("").unwrap().value(), "x");
        assert_eq!(args[1].u32_expr("").unwrap().to_string(), "3");
        assert!(args[2].flag().unwrap().value);
        assert!(ok(TokenStream::new(), KNOWN).is_empty());
    }

    #[test]
    fn unknown_key_suggests_the_closest() {
        assert_eq!(
            err(quote!(retry = 3)),
            "unknown `#[durably::task]` argument `retry`; expected one of: name, retries, backoff, \
             at_most_once (did you mean `retries`?)"
        );
        assert!(!err(quote!(colour = 3)).contains("did you mean"));
    }

    #[test]
    fn duplicates_and_lists_are_errors_and_all_are_reported() {
        assert_eq!(
            err(quote!(name = "a", name = "b", retries(3))),
            "duplicate `name` in `#[durably::task]` | expected `retries = ...`, not `retries(...)`, in \
             `#[durably::task]`"
        );
    }

    #[test]
    fn typed_values() {
        let args = ok(quote!(name = 3, retries = "3", backoff = 2.0, at_most_once = 1), KNOWN);
        assert_eq!(
            args[0].lit_str("name = \"fetch\"").unwrap_err().to_string(),
            "`name` expects a string literal, e.g. `name = \"fetch\"`"
        );
        assert_eq!(
            args[1].u32_expr("retries = 3").unwrap_err().to_string(),
            "`retries` expects an integer, e.g. `retries = 3`"
        );
        assert_eq!(
            args[2].expr("exponential(2.0, 60.0)").unwrap_err().to_string(),
            "`backoff` expects an expression such as `exponential(2.0, 60.0)`, not a literal"
        );
        assert_eq!(
            args[3].flag().unwrap_err().to_string(),
            "`at_most_once` is a flag: write `at_most_once` or `at_most_once = true`/`at_most_once = false`"
        );
        let args = ok(quote!(retries = 5_000_000_000, retries2 = MAX), &["retries", "retries2"]);
        assert_eq!(
            args[0].u32_expr("").unwrap_err().to_string(),
            "`retries` must be a whole number from 0 to 4294967295"
        );
        assert_eq!(args[1].u32_expr("").unwrap().to_string(), "MAX");
        let args = ok(quote!(name, retries = 3_u32, backoff = -1), KNOWN);
        assert_eq!(
            args[2].u32_expr("").unwrap_err().to_string(),
            "`backoff` must be a whole number from 0 to 4294967295"
        );
        assert_eq!(
            args[0].lit_str("name = \"x\"").unwrap_err().to_string(),
            "`name` needs a value, e.g. `name = \"x\"`"
        );
        assert_eq!(args[1].u32_expr("").unwrap().to_string(), "3");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(closest("nme", ["name", "id"]), Some("name"));
        assert_eq!(closest("zzzz", ["name", "id"]), None);
        assert_eq!(closest("retry", ["name", "retries"]), Some("retries"));
        assert_eq!(closest("at_most", ["name", "at_most_once"]), Some("at_most_once"));
    }
}
