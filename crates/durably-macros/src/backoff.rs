//! `backoff = exponential(2.0, 60.0)` in a task attribute: the constructors are written bare, as
//! in the design, and resolved here to `::durably::backoff::…` so that users need no import.

use quote::ToTokens;
use syn::{Expr, Ident, Path, PathArguments};

/// The backoff constructors that may be written without a path.
const CONSTRUCTORS: &[&str] = &["exponential", "linear", "constant"];

/// Prefixes the innermost receiver of a method chain with `::durably::backoff::` when it is a
/// call of a bare `exponential`, `linear` or `constant`; returns any other expression unchanged.
pub(crate) fn resolve(expr: &Expr) -> Expr {
    let mut expr = expr.clone();
    let mut cur = &mut expr;
    loop {
        match cur {
            Expr::MethodCall(call) => cur = &mut *call.receiver,
            Expr::Group(group) => cur = &mut *group.expr,
            Expr::Call(call) => {
                if let Some(ident) = bare_constructor(&call.func) {
                    let path: Path = syn::parse_quote_spanned!(ident.span()=> ::durably::backoff::#ident);
                    *call.func = Expr::Path(syn::ExprPath { attrs: Vec::new(), qself: None, path });
                }
                break;
            }
            _ => break,
        }
    }
    expr
}

fn bare_constructor(func: &Expr) -> Option<Ident> {
    let Expr::Path(path) = func else { return None };
    if path.qself.is_some() || path.path.leading_colon.is_some() || path.path.segments.len() != 1 {
        return None;
    }
    let segment = path.path.segments.first()?;
    let is_constructor = CONSTRUCTORS.iter().any(|c| segment.ident == c);
    (is_constructor && matches!(segment.arguments, PathArguments::None)).then(|| segment.ident.clone())
}

/// [`resolve`], as tokens.
pub(crate) fn resolve_tokens(expr: &Expr) -> proc_macro2::TokenStream {
    resolve(expr).to_token_stream()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use quote::quote;

    fn rewrite(tokens: proc_macro2::TokenStream) -> String {
        resolve_tokens(&syn::parse2(tokens).unwrap()).to_string()
    }

    #[test]
    fn bare_constructors_get_the_durably_path() {
        assert_eq!(
            rewrite(quote!(exponential(2.0, 60.0))),
            quote!(::durably::backoff::exponential(2.0, 60.0)).to_string()
        );
        assert_eq!(rewrite(quote!(constant(5.0))), quote!(::durably::backoff::constant(5.0)).to_string());
        assert_eq!(
            rewrite(quote!(linear(1.0, 2.0).jitter(0.1))),
            quote!(::durably::backoff::linear(1.0, 2.0).jitter(0.1)).to_string()
        );
        assert_eq!(
            rewrite(quote!(exponential(2.0, 60.0).jitter(0.1).jitter(0.2))),
            quote!(::durably::backoff::exponential(2.0, 60.0).jitter(0.1).jitter(0.2)).to_string()
        );
    }

    #[test]
    fn other_expressions_pass_through() {
        for tokens in [
            quote!(durably::backoff::exponential(2.0, 60.0)),
            quote!(::durably::backoff::constant(1.0)),
            quote!(my_backoff()),
            quote!(MY_BACKOFF),
            quote!(MY_BACKOFF.jitter(0.5)),
            quote!(exponential),
            quote!(exponential::<f64>(1.0, 2.0)),
            quote!(policy(exponential(2.0, 60.0))),
        ] {
            assert_eq!(rewrite(tokens.clone()), tokens.to_string());
        }
    }
}
