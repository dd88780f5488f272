//! `#[plugin]`: turns `fn NAME(ev: Event, cfg: &Config) -> Result<Outcome>` into
//! the plugin's export.
//!
//! Deliberately dependency-free (no `syn`): all it needs is the function's name,
//! and plugin crates build faster without a parser in their build graph.

use proc_macro::{Delimiter, Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};

/// Export a function as this crate's wasmhook plugin.
///
/// ```ignore
/// use wasmhook_sdk::prelude::*;
///
/// #[plugin]
/// fn handle(ev: Event, cfg: &Config) -> Result<Outcome> {
///     Ok(Outcome::keep(ev))
/// }
/// ```
///
/// The function stays an ordinary Rust function, so it can be unit-tested with
/// plain `cargo test`; the export only exists when compiling to WebAssembly.
#[proc_macro_attribute]
pub fn plugin(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error("#[plugin] takes no arguments");
    }
    let Some(name) = fn_name(&item) else {
        return compile_error(
            "#[plugin] goes on a function: fn handle(ev: Event, cfg: &Config) -> Result<Outcome>",
        );
    };
    // `::wasmhook_sdk::export_plugin!(name);`
    let export: TokenStream = [
        TokenTree::Punct(Punct::new(':', Spacing::Joint)),
        TokenTree::Punct(Punct::new(':', Spacing::Alone)),
        TokenTree::Ident(Ident::new("wasmhook_sdk", Span::call_site())),
        TokenTree::Punct(Punct::new(':', Spacing::Joint)),
        TokenTree::Punct(Punct::new(':', Spacing::Alone)),
        TokenTree::Ident(Ident::new("export_plugin", Span::call_site())),
        TokenTree::Punct(Punct::new('!', Spacing::Alone)),
        TokenTree::Group(Group::new(
            Delimiter::Parenthesis,
            TokenStream::from(TokenTree::Ident(name)),
        )),
        TokenTree::Punct(Punct::new(';', Spacing::Alone)),
    ]
    .into_iter()
    .collect();
    let mut out = item;
    out.extend(export);
    out
}

/// The identifier after the `fn` keyword at the top level of `item`.
fn fn_name(item: &TokenStream) -> Option<Ident> {
    let mut tokens = item.clone().into_iter();
    while let Some(tt) = tokens.next() {
        if let TokenTree::Ident(ident) = &tt
            && ident.to_string() == "fn"
        {
            return match tokens.next() {
                Some(TokenTree::Ident(name)) => Some(name),
                _ => None,
            };
        }
    }
    None
}

fn compile_error(message: &str) -> TokenStream {
    format!("::core::compile_error!({message:?});")
        .parse()
        .expect("a compile_error! invocation is valid Rust")
}
