//! Checks shared by both macros on the annotated `async fn`: its qualifiers, its parameters
//! (plain `name: Type` bindings only) and its return type, plus the sorting of the user's
//! attributes between the items a macro generates.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, Pat, ReturnType, Signature, Type};

use crate::args::Errors;

/// What differs between the two macros in the shared checks.
pub(crate) struct Macro {
    /// `#[durably::task]`.
    pub(crate) attr: &'static str,
    /// `a durably task`.
    pub(crate) noun: &'static str,
    /// Why a parameter must be a plain binding.
    pub(crate) param_reason: &'static str,
    /// What to do instead of taking `self`.
    pub(crate) self_hint: &'static str,
}

/// A parameter of the annotated fn.
#[derive(Clone)]
pub(crate) struct Param {
    /// Its attributes, kept on the body fn only.
    pub(crate) attrs: Vec<Attribute>,
    /// `mut`, if the user wrote it; kept on the body fn only.
    pub(crate) mutability: Option<syn::token::Mut>,
    /// The binding.
    pub(crate) ident: Ident,
    /// The declared type.
    pub(crate) ty: Type,
    /// The user's destructuring pattern (`State(db)`), when the binding is not a plain name:
    /// kept on the body fn, while `ident` is a generated name.
    pub(crate) pattern: Option<Pat>,
}

/// `State<T>` (any path ending in `State` with generic arguments): application state.
fn is_state_type(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    path.qself.is_none()
        && path.path.segments.last().is_some_and(|last| {
            last.ident == "State" && matches!(last.arguments, syn::PathArguments::AngleBracketed(_))
        })
}

impl Param {
    /// Whether the parameter is application state (`State<T>`, `durably::State<T>`): taken from
    /// the engine when the run executes, not from the caller, and not recorded.
    pub(crate) fn is_state(&self) -> bool {
        is_state_type(&self.ty)
    }

    /// The name as users write it, without `r#`.
    pub(crate) fn name(&self) -> String {
        self.ident.unraw().to_string()
    }

    /// `ident: Type`, as declared on a generated wrapper.
    pub(crate) fn plain(&self) -> TokenStream {
        let Param { ident, ty, .. } = self;
        quote!(#ident: #ty)
    }

    /// The declaration as the user wrote it, for the body fn.
    pub(crate) fn original(&self) -> TokenStream {
        let Param { attrs, mutability, ident, ty, pattern } = self;
        match pattern {
            Some(pattern) => quote!(#(#attrs)* #pattern: #ty),
            None => quote!(#(#attrs)* #mutability #ident: #ty),
        }
    }
}

/// Checks the signature; returns the parameters and the return type, or every problem found.
pub(crate) fn check(sig: &Signature, m: &Macro) -> syn::Result<(Vec<Param>, Type)> {
    let mut errors = Errors::default();
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span,
            format!("`{}` requires an `async fn`; write `async fn {}`", m.attr, sig.ident),
        ));
    }
    if let Some(constness) = &sig.constness {
        errors.push(syn::Error::new(constness.span, format!("`{}` cannot be used on a `const fn`", m.attr)));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new(unsafety.span, format!("`{}` cannot be used on an `unsafe fn`", m.attr)));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(abi, format!("`{}` cannot be used on an `extern` fn", m.attr)));
    }
    if let Some(variadic) = &sig.variadic {
        errors
            .push(syn::Error::new_spanned(variadic, format!("`{}` cannot be used on a variadic fn", m.attr)));
    }

    let mut params = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.push(syn::Error::new_spanned(
                receiver,
                format!("`{}` cannot be used on methods (a `self` parameter); {}", m.attr, m.self_hint),
            )),
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => params.push(Param {
                    attrs: typed.attrs.clone(),
                    mutability: pat.mutability,
                    ident: pat.ident.clone(),
                    ty: (*typed.ty).clone(),
                    pattern: None,
                }),
                // `State(db): State<Db>`, as with axum's extractor: the body keeps the pattern,
                // the generated code passes the value under a name of its own.
                Pat::TupleStruct(pat) if is_state_type(&typed.ty) => params.push(Param {
                    attrs: typed.attrs.clone(),
                    mutability: None,
                    ident: Ident::new(&format!("__durably_state_{}", params.len()), Span::mixed_site()),
                    ty: (*typed.ty).clone(),
                    pattern: Some(Pat::TupleStruct(pat.clone())),
                }),
                other => errors.push(syn::Error::new_spanned(
                    other,
                    format!(
                        "`{}` parameters must be plain `name: Type` bindings ({}); destructure inside the \
                         body instead",
                        m.attr, m.param_reason
                    ),
                )),
            },
        }
    }

    let ret = match &sig.output {
        ReturnType::Type(_, ty) => match &**ty {
            Type::ImplTrait(it) => {
                errors.push(syn::Error::new_spanned(
                    it,
                    format!("{} must return a concrete `Result<T, E>` type, not `impl Trait`", m.noun),
                ));
                None
            }
            ty => Some(ty.clone()),
        },
        ReturnType::Default => {
            errors.push(syn::Error::new(
                sig.ident.span(),
                format!(
                    "`{}` has no return type: {} must return a `Result<T, E>` (e.g. `-> anyhow::Result<()>`)",
                    sig.ident, m.noun
                ),
            ));
            None
        }
    };
    errors.finish()?;
    match ret {
        Some(ret) => Ok((params, ret)),
        None => Err(syn::Error::new(sig.span(), "missing return type")),
    }
}

/// Where a user attribute of the annotated fn goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// `doc`: the public entry point's documentation.
    Doc,
    /// `must_use`, `deprecated`: what a caller of the entry points should see.
    Caller,
    /// `cfg`: every generated item, so that they come and go together.
    Cfg,
    /// `allow`, `warn`, `deny`, `forbid`, `cfg_attr`: lint levels, wherever user code or
    /// user-visible signatures end up.
    Lint,
    /// `expect`: only where the user's body is, since an expectation unfulfilled elsewhere warns.
    Expect,
    /// Anything else (`tracing::instrument`, `inline`, …) belongs to the async body.
    Body,
}

/// Sorts an attribute.
pub(crate) fn place(attr: &Attribute) -> Place {
    let path = attr.path();
    let Some(ident) = path.get_ident() else { return Place::Body };
    match ident.to_string().as_str() {
        "doc" => Place::Doc,
        "must_use" | "deprecated" => Place::Caller,
        "cfg" => Place::Cfg,
        "allow" | "warn" | "deny" | "forbid" | "cfg_attr" => Place::Lint,
        "expect" => Place::Expect,
        _ => Place::Body,
    }
}

/// The attributes of `attrs` placed in one of `places`.
pub(crate) fn select<'a>(attrs: &'a [Attribute], places: &[Place]) -> Vec<&'a Attribute> {
    attrs.iter().filter(|a| places.contains(&place(a))).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const TASK: Macro = Macro {
        attr: "#[durably::task]",
        noun: "a durably task",
        param_reason: "each is cloned for every attempt",
        self_hint: "use `durably::step(name, || ...)` for methods",
    };

    fn errors(item: TokenStream) -> Vec<String> {
        let f: syn::ItemFn = syn::parse2(item).unwrap();
        match check(&f.sig, &TASK) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn accepts_plain_async_fns() {
        assert!(
            errors(quote!(
                async fn f(a: String, mut b: u32, r#type: u8) -> Result<(), E> {}
            ))
            .is_empty()
        );
    }

    #[test]
    fn reports_every_problem() {
        assert_eq!(
            errors(quote!(
                unsafe fn f((a, b): (u8, u8), ref c: u8) {}
            )),
            vec![
                "`#[durably::task]` requires an `async fn`; write `async fn f`",
                "`#[durably::task]` cannot be used on an `unsafe fn`",
                "`#[durably::task]` parameters must be plain `name: Type` bindings (each is cloned for every \
                 attempt); destructure inside the body instead",
                "`#[durably::task]` parameters must be plain `name: Type` bindings (each is cloned for every \
                 attempt); destructure inside the body instead",
                "`f` has no return type: a durably task must return a `Result<T, E>` (e.g. `-> \
                 anyhow::Result<()>`)",
            ]
        );
        assert_eq!(
            errors(quote!(
                async fn f(&self) -> impl Sized {}
            )),
            vec![
                "`#[durably::task]` cannot be used on methods (a `self` parameter); use `durably::step(name, \
                 || ...)` for methods",
                "a durably task must return a concrete `Result<T, E>` type, not `impl Trait`",
            ]
        );
    }

    #[test]
    fn sorts_attributes() {
        let f: syn::ItemFn = syn::parse_quote! {
            /// Docs.
            #[must_use]
            #[cfg(test)]
            #[allow(dead_code)]
            #[expect(unused)]
            #[tracing::instrument]
            #[inline]
            async fn f() {}
        };
        let places: Vec<Place> = f.attrs.iter().map(place).collect();
        assert_eq!(
            places,
            [Place::Doc, Place::Caller, Place::Cfg, Place::Lint, Place::Expect, Place::Body, Place::Body]
        );
        assert_eq!(select(&f.attrs, &[Place::Lint, Place::Cfg]).len(), 2);
    }
}
