//! `#[derive(ShmSafe)]` for [multiproc](https://docs.rs/multiproc): implements
//! `multiproc::ShmSafe` for a `#[repr(C)]` (or `#[repr(transparent)]`) struct after checking,
//! at compile time, that every field's type is `ShmSafe` itself. Pointers, references, `Box`,
//! `String`, `Vec` and enums are not, so a struct holding one does not compile.
//!
//! Use it through the re-export: `#[derive(multiproc::ShmSafe)]`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Error, Fields, parse_macro_input};

/// Implements `multiproc::ShmSafe` for a struct whose layout is fixed (`#[repr(C)]` or
/// `#[repr(transparent)]`) and whose fields are all `ShmSafe`.
///
/// ```
/// use multiproc::sync::Mutex;
/// use std::sync::atomic::AtomicU64;
///
/// #[derive(multiproc::ShmSafe)]
/// #[repr(C)]
/// struct Stats {
///     hits: AtomicU64,
///     totals: Mutex<[u64; 4]>,
/// }
/// ```
#[proc_macro_derive(ShmSafe)]
pub fn derive_shm_safe(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let fields = match &input.data {
        Data::Struct(data) => &data.fields,
        Data::Enum(_) => {
            return Err(Error::new_spanned(
                &input.ident,
                "ShmSafe cannot be derived for an enum: a peer process can write any bits into \
                 shared memory, and most bit patterns are not a valid discriminant",
            ));
        }
        Data::Union(_) => {
            return Err(Error::new_spanned(
                &input.ident,
                "ShmSafe cannot be derived for a union",
            ));
        }
    };
    if !has_stable_repr(input)? {
        return Err(Error::new_spanned(
            &input.ident,
            "ShmSafe needs #[repr(C)] or #[repr(transparent)]: processes must agree on the layout",
        ));
    }
    if let Some(lifetime) = input.generics.lifetimes().next() {
        return Err(Error::new_spanned(
            lifetime,
            "ShmSafe types cannot borrow: a reference is an address, and every process maps \
             shared memory at a different one",
        ));
    }
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let mut predicates = where_clause
        .map(|w| w.predicates.iter().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    let field_types: Vec<&syn::Type> = match fields {
        Fields::Named(named) => named.named.iter().map(|f| &f.ty).collect(),
        Fields::Unnamed(unnamed) => unnamed.unnamed.iter().map(|f| &f.ty).collect(),
        Fields::Unit => Vec::new(),
    };
    for ty in &field_types {
        predicates.push(syn::parse_quote!(#ty: ::multiproc::ShmSafe));
    }
    Ok(quote! {
        // SAFETY: the derive checked a fixed layout (#[repr(C)]/transparent) and requires every
        // field type to be ShmSafe (the where clause); a struct of ShmSafe fields is valid for
        // every bit pattern of its fields, position independent, and has no meaningful Drop
        // (ShmSafe fields have none, and a Drop impl of the struct itself is never run on
        // shared memory by multiproc's handles).
        unsafe impl #impl_generics ::multiproc::ShmSafe for #name #ty_generics
        where
            #(#predicates,)*
            Self: ::core::marker::Sync,
        {
        }
    })
}

/// Whether the type has `#[repr(C)]` or `#[repr(transparent)]` (possibly among other reprs
/// such as `align(64)`).
fn has_stable_repr(input: &DeriveInput) -> syn::Result<bool> {
    let mut stable = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("C") || meta.path.is_ident("transparent") {
                stable = true;
            } else if meta.input.peek(syn::token::Paren) {
                // align(N) / packed(N): skip the argument.
                let content;
                syn::parenthesized!(content in meta.input);
                content.parse::<proc_macro2::TokenStream>()?;
            }
            Ok(())
        })?;
    }
    Ok(stable)
}
