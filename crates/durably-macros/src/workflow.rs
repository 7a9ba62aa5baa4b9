//! `#[durably::workflow]`: moves the body of `async fn f(args) -> Result<T, E>` into a hidden
//! `async fn`, and generates the entry points `f(&wf, args)` (run id from the `id` template) and
//! `f::with_id(&wf, run_id, args)`. The second one lives on a braced struct named `f`: such a
//! struct occupies only the type namespace, so it can share its name with the fn.

use proc_macro2::{Delimiter, Group, Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{ItemFn, LitStr};

use crate::args::{self, Errors};
use crate::sig::{self, Macro, Param, Place};
use crate::template::{self, Piece};

const MACRO: Macro = Macro {
    attr: "#[durably::workflow]",
    noun: "a durably workflow",
    param_reason: "they are the run's recorded input",
    self_hint: "a workflow is a free `async fn` whose parameters are its recorded input; inside methods \
                use `wf.run(run_id, |ctx| ...)`",
};

const KEYS: &[&str] = &["id", "name"];

#[derive(Default)]
struct WorkflowArgs {
    id: Option<LitStr>,
    name: Option<LitStr>,
}

fn parse_args(attr: TokenStream) -> syn::Result<WorkflowArgs> {
    let mut out = WorkflowArgs::default();
    let mut errors = Errors::default();
    for arg in args::parse(attr, MACRO.attr, KEYS, &mut errors) {
        match arg.key.to_string().as_str() {
            "id" => out.id = errors.take(arg.lit_str("id = \"order-{order_id}\"")),
            _ => out.name = errors.take(arg.lit_str("name = \"orders\"")),
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
    let generics = &func.sig.generics;
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            generics,
            "`#[durably::workflow]` functions cannot be generic: a run records its input and output and \
             is resumed by name, so their types must be concrete",
        ));
    }
    for input in &func.sig.inputs {
        if let syn::FnArg::Typed(typed) = input
            && let syn::Type::ImplTrait(it) = &*typed.ty
        {
            errors.push(syn::Error::new_spanned(
                it,
                "`#[durably::workflow]` parameters cannot be `impl Trait` (a hidden generic): a run records \
                 its input, so its types must be concrete",
            ));
        }
    }
    let run_id = match (&args, &checked) {
        (Some(args), Some((params, _))) => {
            let recorded: Vec<Param> = params.iter().filter(|p| !p.is_state()).cloned().collect();
            errors.take(run_id_expr(args.id.as_ref(), &func.sig.ident, &recorded))
        }
        _ => None,
    };
    errors.finish()?;
    let (Some(args), Some((params, ret)), Some(run_id)) = (args, checked, run_id) else {
        return Err(syn::Error::new(Span::call_site(), "invalid `#[durably::workflow]`"));
    };

    let ItemFn { attrs, vis, sig, block } = &func;
    let ident = &sig.ident;
    // The user's `fn` token and braces keep the entry point's span in user code, so that
    // `dead_code` still reports an unused workflow (rustc is silent on items from expansions).
    let fn_token = &sig.fn_token;
    let display = ident.unraw().to_string();
    let name = args.name.unwrap_or_else(|| LitStr::new(&display, ident.span()));
    let body_fn = format_ident!("__durably_workflow_{}", ident.unraw(), span = Span::call_site());

    let docs = sig::select(attrs, &[Place::Doc]);
    let caller = sig::select(attrs, &[Place::Caller]);
    let cfg = sig::select(attrs, &[Place::Cfg]);
    let lints = sig::select(attrs, &[Place::Lint]);
    let body_attrs = sig::select(attrs, &[Place::Lint, Place::Expect, Place::Body]);

    // A parameter may be used only to build the run id: it is used, so `unused_variables` must
    // not fire on the body fn, where the id template is out of sight.
    let in_template = template_params(args.id.as_ref());
    let original_params: Vec<_> = params
        .iter()
        .map(|p| {
            let param = p.original();
            if in_template.iter().any(|name| *name == p.name()) {
                quote!(#[allow(unused_variables)] #param)
            } else {
                param
            }
        })
        .collect();
    // `State<T>` parameters come from the engine, not from the caller: they are no argument of
    // the entry points, no part of the recorded input, and taken when the run starts.
    let all_idents: Vec<Ident> = params.iter().map(|p| p.ident.clone()).collect();
    let (state_params, params): (Vec<Param>, Vec<Param>) = params.into_iter().partition(Param::is_state);
    let plain_params: Vec<_> = params.iter().map(Param::plain).collect();
    let output = &sig.output;

    // Hygienic names: a user parameter called `wf` or `run_id` must not collide with ours.
    let wf = Ident::new("wf", Span::mixed_site());
    let run_id_param = Ident::new("run_id", Span::mixed_site());
    let run_id_var = Ident::new("run_id", Span::mixed_site());
    let input_var = Ident::new("input", Span::mixed_site());
    let stored_var = Ident::new("stored", Span::mixed_site());
    let stored_id = Ident::new("stored_run_id", Span::mixed_site());
    let args_var = Ident::new("args", Span::mixed_site());
    let out_var = Ident::new("out", Span::mixed_site());

    let idents: Vec<_> = params.iter().map(|p| &p.ident).collect();
    // Spanned on each parameter's type, so that a missing `Serialize` is reported there.
    let input_args = params.iter().map(|p| {
        let (ident, name) = (&p.ident, p.name());
        quote_spanned!(p.ty.span()=> .arg(#name, &#ident))
    });
    let input = quote!(::durably::__private::WorkflowInput::new() #(#input_args)*);

    let rs = ret.span();
    let future_ty = quote_spanned! {rs=>
        impl ::core::future::Future<
            Output = ::durably::Result<<#ret as ::durably::__private::TaskOutput>::Ok>
        > + 'wf
    };
    let state_idents: Vec<_> = state_params.iter().map(|p| &p.ident).collect();
    let state_types: Vec<_> = state_params.iter().map(|p| &p.ty).collect();
    // Spanned on the return type: an output that is not a serde-able `Result` is reported there.
    let run = if state_params.is_empty() {
        let body = if params.is_empty() { quote!(#body_fn) } else { quote!(move || #body_fn(#(#idents),*)) };
        quote_spanned! {rs=>
            ::durably::__private::run_workflow(#wf, #name, #run_id_var, #input_var, #body)
        }
    } else {
        let states = quote! {
            (|| ::durably::Result::Ok((
                #( <#state_types as ::durably::__private::FromWorkflow>::from_workflow(#wf)?, )*
            )))()
        };
        quote_spanned! {rs=>
            ::durably::__private::run_workflow_with_state(
                #wf, #name, #run_id_var, #input_var, #states,
                move |(#(#state_idents,)*)| #body_fn(#(#all_idents),*),
            )
        }
    };

    // Rebuilds each argument from the run's stored input, for `DurableWorkflow` (recovery).
    let decode_args = params.iter().map(|p| {
        let (ident, ty, arg_name) = (&p.ident, &p.ty, p.name());
        quote_spanned! {p.ty.span()=>
            let #ident: #ty = (&&::durably::__private::ArgDecoder::<#ty>::new())
                .durably_decode(&mut #args_var, #arg_name)?;
        }
    });
    let decode_args: Vec<TokenStream> = decode_args.collect();

    let struct_doc = format!(" Explicit-id entry points of the workflow `{display}`.");
    let with_id_doc = match &args.id {
        Some(id) => format!(
            " Runs `{display}` under an explicit run id, instead of the one made from its `id` template \
             `{}`.",
            id.value()
        ),
        None => format!(
            " Runs `{display}` under an explicit run id, instead of the default one (derived from the app \
             name, the workflow name and the arguments)."
        ),
    };

    let mut entry_body = Group::new(
        Delimiter::Brace,
        quote! {
            let #run_id_var = #run_id;
            let #input_var = #input;
            #run
        },
    );
    entry_body.set_span(block.brace_token.span.join());

    Ok(quote! {
        #(#cfg)*
        #[doc(hidden)]
        #[allow(non_snake_case)]
        #(#body_attrs)*
        async fn #body_fn (#(#original_params),*) #output #block

        #(#cfg)*
        #(#docs)*
        #(#caller)*
        #(#lints)*
        #[allow(clippy::too_many_arguments)]
        #vis #fn_token #ident<'wf>(#wf: &'wf ::durably::Workflow, #(#plain_params),*) -> #future_ty #entry_body

        #(#cfg)*
        #[doc = #struct_doc]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {}

        #(#cfg)*
        #[allow(dead_code)]
        impl #ident {
            #[doc = #with_id_doc]
            #(#caller)*
            #(#lints)*
            #[allow(clippy::too_many_arguments)]
            #vis fn with_id<'wf>(
                #wf: &'wf ::durably::Workflow,
                #run_id_param: impl ::core::convert::Into<::std::string::String>,
                #(#plain_params),*
            ) -> #future_ty {
                let #run_id_var = ::durably::__private::RunId::Explicit(
                    ::core::convert::Into::<::std::string::String>::into(#run_id_param),
                );
                let #input_var = #input;
                #run
            }
        }

        #(#cfg)*
        impl ::durably::__private::DurableWorkflow for #ident {
            const NAME: &'static str = #name;

            #[allow(unused_variables)]
            fn check_input(
                #stored_id: &str,
                #stored_var: &str,
            ) -> ::core::result::Result<(), ::durably::Error> {
                #[allow(unused_imports)]
                use ::durably::__private::{DecodeFallback as _, DecodeViaSerde as _};
                #[allow(unused_mut, unused_variables)]
                let mut #args_var =
                    ::durably::__private::StoredArgs::parse(#stored_id, #name, ::core::option::Option::Some(#stored_var))?;
                #(#decode_args)*
                ::core::result::Result::Ok(())
            }

            fn execute_stored(
                #wf: ::durably::Workflow,
                #stored_id: ::std::string::String,
                #stored_var: ::core::option::Option<::std::string::String>,
            ) -> ::durably::__private::StoredRun {
                ::std::boxed::Box::pin(async move {
                    #[allow(unused_imports)]
                    use ::durably::__private::{DecodeFallback as _, DecodeViaSerde as _};
                    #[allow(unused_mut, unused_variables)]
                    let mut #args_var =
                        ::durably::__private::StoredArgs::parse(&#stored_id, #name, #stored_var.as_deref())?;
                    #(#decode_args)*
                    let #run_id_var = ::durably::__private::RunId::Explicit(
                        ::std::clone::Clone::clone(&#stored_id),
                    );
                    let #input_var = #input;
                    let #wf = &#wf;
                    let #out_var = #run.await?;
                    ::durably::__private::output_json(&#stored_id, &#out_var)
                })
            }
        }
    })
}

/// The `RunId` expression of the plain entry point: the formatted `id` template, or `Default`.
/// A placeholder naming no parameter is an error spanned on the template.
fn run_id_expr(id: Option<&LitStr>, fn_ident: &Ident, params: &[Param]) -> syn::Result<TokenStream> {
    let Some(id) = id else {
        return Ok(quote!(::durably::__private::RunId::Default));
    };
    let pieces = template::parse(&id.value()).map_err(|msg| syn::Error::new(id.span(), msg))?;
    let mut errors = Errors::default();
    let mut values = Vec::new();
    for piece in &pieces {
        let Piece::Param { name, .. } = piece else { continue };
        let wanted = name.strip_prefix("r#").unwrap_or(name);
        match params.iter().find(|p| p.name() == wanted) {
            // The user's own span keeps the reference resolving to the parameter; the template's
            // span puts a missing `Display` on the template.
            Some(p) => {
                let mut ident = p.ident.clone();
                ident.set_span(id.span());
                values.push(ident);
            }
            None => errors.push(syn::Error::new(id.span(), unknown_placeholder(name, fn_ident, params))),
        }
    }
    errors.finish()?;
    if values.is_empty() {
        let text =
            pieces.iter().map(|p| if let Piece::Text(t) = p { t.as_str() } else { "" }).collect::<String>();
        return Ok(quote!(::durably::__private::RunId::Template(::std::string::String::from(#text))));
    }
    let format = LitStr::new(&template::format_string(&pieces), id.span());
    Ok(quote!(::durably::__private::RunId::Template(::std::format!(#format, #(#values),*))))
}

/// The parameter names the `id` template formats (none without a template, or when it does not
/// parse: that error is reported elsewhere).
fn template_params(id: Option<&LitStr>) -> Vec<String> {
    let Some(Ok(pieces)) = id.map(|id| template::parse(&id.value())) else { return Vec::new() };
    pieces
        .iter()
        .filter_map(|piece| match piece {
            Piece::Param { name, .. } => Some(name.strip_prefix("r#").unwrap_or(name).to_owned()),
            Piece::Text(_) => None,
        })
        .collect()
}

fn unknown_placeholder(name: &str, fn_ident: &Ident, params: &[Param]) -> String {
    let fn_name = fn_ident.unraw();
    if params.is_empty() {
        return format!(
            "id template placeholder `{{{name}}}` names no parameter: `{fn_name}` has no parameters"
        );
    }
    let names: Vec<String> = params.iter().map(Param::name).collect();
    let mut msg = format!(
        "id template placeholder `{{{name}}}` names no parameter of `{fn_name}`; parameters are: {}",
        names.join(", ")
    );
    if let Some(close) = args::closest(name, names.iter().map(String::as_str)) {
        msg.push_str(&format!(" (did you mean `{{{close}}}`?)"));
    }
    msg
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
    fn template_becomes_a_format_call() {
        let out = expand_ok(
            quote!(id = "order-{order_id}-{{x}}", name = "orders"),
            quote!(
                pub async fn process_order(order_id: u64, amount: f64) -> anyhow::Result<u64> {
                    Ok(1)
                }
            ),
        );
        assert!(
            out.contains(
                &quote!(::durably::__private::RunId::Template(::std::format!("order-{}-{{x}}", order_id)))
                    .to_string()
            ),
            "{out}"
        );
        assert!(
            out.contains(
                &quote!(
                    ::durably::__private::WorkflowInput::new()
                        .arg("order_id", &order_id)
                        .arg("amount", &amount)
                )
                .to_string()
            ),
            "{out}"
        );
        assert!(out.contains(&quote!("orders").to_string()));
        assert!(
            out.contains(
                &quote!(
                    pub struct process_order {}
                )
                .to_string()
            ),
            "{out}"
        );
        // `order_id` names the run only: using it there is using it.
        assert!(out.contains(&quote!(async fn __durably_workflow_process_order(#[allow(unused_variables)] order_id: u64, amount: f64) -> anyhow::Result<u64>).to_string()), "{out}");
    }

    #[test]
    fn constant_template_and_default_id() {
        let out = expand_ok(
            quote!(id = "{{singleton}}"),
            quote!(
                async fn f() -> R {
                    x
                }
            ),
        );
        assert!(
            out.contains(&quote!(RunId::Template(::std::string::String::from("{singleton}"))).to_string()),
            "{out}"
        );
        let out = expand_ok(
            quote!(),
            quote!(
                async fn f() -> R {
                    x
                }
            ),
        );
        assert!(out.contains(&quote!(::durably::__private::RunId::Default).to_string()), "{out}");
        assert!(
            out.contains(&quote!(run_workflow(wf, "f", run_id, input, __durably_workflow_f)).to_string()),
            "{out}"
        );
    }

    #[test]
    fn unknown_placeholders_list_the_parameters() {
        assert_eq!(
            expand_err(
                quote!(id = "order-{orderid}-{x}"),
                quote!(
                    async fn process_order(order_id: u64, amount: f64) -> R {}
                )
            ),
            vec![
                "id template placeholder `{orderid}` names no parameter of `process_order`; parameters are: \
                 order_id, amount (did you mean `{order_id}`?)",
                "id template placeholder `{x}` names no parameter of `process_order`; parameters are: \
                 order_id, amount",
            ]
        );
        assert_eq!(
            expand_err(
                quote!(id = "{x}"),
                quote!(
                    async fn f() -> R {}
                )
            ),
            vec!["id template placeholder `{x}` names no parameter: `f` has no parameters"]
        );
        assert_eq!(
            expand_err(
                quote!(id = "a}"),
                quote!(
                    async fn f() -> R {}
                )
            ),
            vec!["unmatched `}` in the id template; write `}}` for a literal brace"]
        );
    }

    #[test]
    fn other_errors() {
        assert_eq!(
            expand_err(
                quote!(ids = "x", name = ""),
                quote!(
                    fn f<T>(&self, t: impl Sized) {}
                )
            ),
            vec![
                "unknown `#[durably::workflow]` argument `ids`; expected one of: id, name (did you mean `id`?)",
                "`name` cannot be empty",
                "`#[durably::workflow]` requires an `async fn`; write `async fn f`",
                "`#[durably::workflow]` cannot be used on methods (a `self` parameter); a workflow is a free \
                 `async fn` whose parameters are its recorded input; inside methods use `wf.run(run_id, \
                 |ctx| ...)`",
                "`f` has no return type: a durably workflow must return a `Result<T, E>` (e.g. `-> \
                 anyhow::Result<()>`)",
                "`#[durably::workflow]` functions cannot be generic: a run records its input and output and is \
                 resumed by name, so their types must be concrete",
                "`#[durably::workflow]` parameters cannot be `impl Trait` (a hidden generic): a run records its \
                 input, so its types must be concrete",
            ]
        );
    }

    #[test]
    fn attributes_are_sorted_between_the_items() {
        let out = expand_ok(
            quote!(),
            quote!(
                /// Docs.
                #[cfg(feature = "x")]
                #[allow(clippy::y)]
                #[expect(unused)]
                #[tracing::instrument]
                pub async fn f(mut a: u8) -> R {
                    x
                }
            ),
        );
        let body = quote!(
            #[cfg(feature = "x")]
            #[doc(hidden)]
            #[allow(non_snake_case)]
            #[allow(clippy::y)]
            #[expect(unused)]
            #[tracing::instrument]
            async fn __durably_workflow_f(mut a: u8) -> R {
                x
            }
        );
        assert!(out.starts_with(&body.to_string()), "{out}");
        let outer = quote!(
            #[cfg(feature = "x")] #[doc = r" Docs."] #[allow(clippy::y)] #[allow(clippy::too_many_arguments)]
            pub fn f<'wf>
        );
        assert!(out.contains(&outer.to_string()), "{out}");
        assert_eq!(out.matches(&quote!(#[cfg(feature = "x")]).to_string()).count(), 5);
        assert_eq!(out.matches("expect").count(), 1);
    }
}
