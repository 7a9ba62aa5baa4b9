//! `#[durably::task]`: turns `async fn f(args) -> Result<T, E>` into `fn f(args) -> TaskCall<T>`,
//! whose attempts re-run the original body (kept as a nested `async fn`) on clones of the
//! arguments.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{GenericParam, ItemFn, LitStr};

use crate::args::{self, Errors};
use crate::backoff;
use crate::sig::{self, Macro, Place};

const MACRO: Macro = Macro {
    attr: "#[durably::task]",
    noun: "a durably task",
    param_reason: "each one is cloned for every attempt",
    self_hint: "use `durably::step(name, || ...)` for methods",
};

const KEYS: &[&str] = &["name", "retries", "backoff", "at_most_once"];

/// The parsed `#[durably::task(...)]` arguments.
#[derive(Default)]
struct TaskArgs {
    name: Option<LitStr>,
    retries: Option<TokenStream>,
    backoff: Option<TokenStream>,
    at_most_once: Option<syn::LitBool>,
}

fn parse_args(attr: TokenStream) -> syn::Result<TaskArgs> {
    let mut out = TaskArgs::default();
    let mut errors = Errors::default();
    for arg in args::parse(attr, MACRO.attr, KEYS, &mut errors) {
        match arg.key.to_string().as_str() {
            "name" => out.name = errors.take(arg.lit_str("name = \"fetch\"")),
            "retries" => out.retries = errors.take(arg.u32_expr("retries = 3")),
            "backoff" => {
                out.backoff = errors.take(arg.expr("exponential(2.0, 60.0)")).map(backoff::resolve_tokens);
            }
            _ => out.at_most_once = errors.take(arg.flag()),
        }
    }
    errors.finish()?;
    Ok(out)
}

/// The expansion of the attribute on `item`.
pub(crate) fn try_expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let args = errors.take(parse_args(attr));
    let func = syn::parse2::<ItemFn>(item)?;
    let checked = errors.take(sig::check(&func.sig, &MACRO));
    errors.finish()?;
    let (Some(args), Some((params, ret))) = (args, checked) else {
        return Err(syn::Error::new(Span::call_site(), "invalid `#[durably::task]`"));
    };

    let ItemFn { attrs, vis, sig, block } = &func;
    let ident = &sig.ident;
    // The user's `fn` token and braces keep the item's span in user code, so that `dead_code`
    // still reports an unused task (rustc is silent on items from expansions).
    let fn_token = &sig.fn_token;
    let generics = &sig.generics;
    let where_clause = &generics.where_clause;
    let name = args.name.unwrap_or_else(|| LitStr::new(&ident.unraw().to_string(), ident.span()));
    let retries = args.retries.map(|n| quote!(.retries(#n)));
    let backoff = args.backoff.map(|b| quote!(.backoff(#b)));
    let at_most_once = args.at_most_once.map(|b| quote!(.at_most_once(#b)));

    // Lints, docs and `cfg` stay on the outer fn: lint levels reach the nested body from there.
    let outer_attrs =
        sig::select(attrs, &[Place::Doc, Place::Caller, Place::Cfg, Place::Lint, Place::Expect]);
    let body_attrs = sig::select(attrs, &[Place::Body]);

    let body_fn = Ident::new("__durably_body", Span::call_site());
    let original_params = params.iter().map(sig::Param::original);
    let plain_params = params.iter().map(sig::Param::plain);
    let output = &sig.output;
    let turbofish = turbofish(generics);

    let idents: Vec<_> = params.iter().map(|p| &p.ident).collect();
    // Spanned on each parameter's type, so that a missing `Clone` is reported there.
    let clones = params.iter().map(|p| {
        let (ident, ty) = (&p.ident, &p.ty);
        quote_spanned!(ty.span()=> let #ident = ::core::clone::Clone::clone(&#ident);)
    });

    // Locals of the generated code. No user tokens are in their scope, so they cannot collide;
    // `error` is located at the return type, where a non-error `E` gets reported.
    let ok = Ident::new("value", Span::call_site());
    let err = Ident::new("error", ret.span());
    let retryable = Ident::new("retryable", Span::call_site());
    let fut = Ident::new("attempt", Span::call_site());

    // Whole calls spanned on the return type: an output that is not a `Result`, not serde-able or
    // whose error is not an error is reported there rather than on the attribute.
    let rs = ret.span();
    let call_ty = quote_spanned!(rs=> ::durably::TaskCall<<#ret as ::durably::__private::TaskOutput>::Ok>);
    let body_call = Ident::new("__durably_body", rs);
    let result = quote_spanned!(rs=> ::durably::__private::TaskOutput::into_result(#body_call #turbofish (#(#idents),*).await));
    let failure = quote_spanned!(rs=> ::durably::__private::TaskFailure::new(#err, #retryable));
    let spec = quote!(::durably::__private::TaskSpec::new(#name) #retries #backoff #at_most_once);
    let make = quote! {
        move || {
            #(#clones)*
            let #fut: ::durably::__private::AttemptFuture<_> = ::std::boxed::Box::pin(async move {
                match #result {
                    ::core::result::Result::Ok(#ok) => ::core::result::Result::Ok(#ok),
                    ::core::result::Result::Err(#err) => {
                        #[allow(unused_imports)]
                        use ::durably::__private::{ViaDefault as _, ViaRetryable as _};
                        let #retryable = (&&::durably::__private::Probe(&#err)).durably_is_retryable();
                        ::core::result::Result::Err(#failure)
                    }
                }
            });
            #fut
        }
    };
    let task_call = quote_spanned!(rs=> ::durably::__private::task_call(#spec, #make));

    let mut outer_body = Group::new(
        Delimiter::Brace,
        quote! {
                #(#body_attrs)*
                async fn #body_fn #generics (#(#original_params),*) #output #where_clause #block

                #task_call
        },
    );
    outer_body.set_span(block.brace_token.span.join());
    Ok(quote! {
        #(#outer_attrs)*
        #vis #fn_token #ident #generics (#(#plain_params),*) -> #call_ty #where_clause #outer_body
    })
}

/// `::<T, N>` naming the type and const parameters of the body fn (lifetimes are inferred), or
/// nothing for a non-generic task.
fn turbofish(generics: &syn::Generics) -> TokenStream {
    let args: Vec<_> = generics
        .params
        .iter()
        .filter_map(|p| match p {
            GenericParam::Type(t) => Some(&t.ident),
            GenericParam::Const(c) => Some(&c.ident),
            GenericParam::Lifetime(_) => None,
        })
        .collect();
    if args.is_empty() { TokenStream::new() } else { quote!(::<#(#args),*>) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn expand_ok(attr: TokenStream, item: TokenStream) -> String {
        crate::testing::expand_ok(try_expand, attr, item)
    }

    fn expand_err(attr: TokenStream, item: TokenStream) -> Vec<String> {
        crate::testing::expand_err(try_expand, attr, item)
    }

    #[test]
    fn builds_the_spec_from_the_arguments() {
        let out = expand_ok(
            quote!(name = "fetch", retries = 3, backoff = exponential(2.0, 60.0).jitter(0.1), at_most_once),
            quote!(
                pub async fn fetch_data(url: String, n: u32) -> Result<u8, E> {
                    Ok(1)
                }
            ),
        );
        let spec = quote!(
            ::durably::__private::TaskSpec::new("fetch")
                .retries(3)
                .backoff(::durably::backoff::exponential(2.0, 60.0).jitter(0.1))
                .at_most_once(true)
        );
        assert!(out.contains(&spec.to_string()), "{out}");
        assert!(out.starts_with(
            &quote!(pub fn fetch_data(url: String, n: u32) -> ::durably::TaskCall<<Result<u8, E> as ::durably::__private::TaskOutput>::Ok>).to_string()
        ), "{out}");
        assert!(
            out.contains(&quote!(async fn __durably_body(url: String, n: u32) -> Result<u8, E>).to_string())
        );
    }

    #[test]
    fn defaults_name_to_the_fn_and_leaves_policy_to_the_workflow() {
        let out = expand_ok(
            quote!(),
            quote!(
                async fn r#fetch() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(
            out.contains(&quote!(::durably::__private::TaskSpec::new("fetch"), move).to_string()),
            "{out}"
        );
    }

    #[test]
    fn keeps_generics_mut_and_attributes_where_they_belong() {
        let out = expand_ok(
            quote!(),
            quote!(
                /// Docs.
                #[allow(clippy::x)]
                #[tracing::instrument]
                pub(crate) async fn f<'a, T: Clone, const N: usize>(mut t: T) -> Result<T, E>
                where
                    T: Send,
                {
                    Ok(t)
                }
            ),
        );
        assert!(
            out.starts_with(&quote!(#[doc = r" Docs."] #[allow(clippy::x)] pub(crate) fn f<'a, T: Clone, const N: usize>(t: T)).to_string()),
            "{out}"
        );
        assert!(
            out.contains(&quote!(#[tracing::instrument] async fn __durably_body<'a, T: Clone, const N: usize>(mut t: T) -> Result<T, E> where T: Send).to_string()),
            "{out}"
        );
        assert!(out.contains(&quote!(__durably_body::<T, N>(t)).to_string()), "{out}");
    }

    #[test]
    fn errors() {
        assert_eq!(
            expand_err(
                quote!(retry = 3, name = 1),
                quote!(
                    fn f(self) {}
                )
            ),
            vec![
                "unknown `#[durably::task]` argument `retry`; expected one of: name, retries, backoff, \
                 at_most_once (did you mean `retries`?)",
                "`name` expects a string literal, e.g. `name = \"fetch\"`",
                "`#[durably::task]` requires an `async fn`; write `async fn f`",
                "`#[durably::task]` cannot be used on methods (a `self` parameter); use `durably::step(name, \
                 || ...)` for methods",
                "`f` has no return type: a durably task must return a `Result<T, E>` (e.g. `-> \
                 anyhow::Result<()>`)",
            ]
        );
        assert_eq!(
            expand_err(
                quote!(name = 1, backoff = "fast"),
                quote!(
                    async fn f() -> R {}
                )
            ),
            vec![
                "`name` expects a string literal, e.g. `name = \"fetch\"`",
                "`backoff` expects an expression such as `exponential(2.0, 60.0)`, not a literal",
            ]
        );
    }

    #[test]
    fn on_error_the_item_is_kept() {
        let out = crate::expand_or_keep(
            quote!(bogus),
            quote!(
                async fn f() -> R {}
            ),
            try_expand,
        );
        let out = out.to_string();
        assert!(out.starts_with(":: core :: compile_error !"), "{out}");
        assert!(
            out.ends_with(
                &quote!(
                    async fn f() -> R {}
                )
                .to_string()
            ),
            "{out}"
        );
    }
}
