//! The sign-in page (an API token, or an OIDC issuer's sign-in) and the page that follows an OIDC sign-in.

use askama::Template;

use crate::{RenderError, encode};

/// An OIDC issuer one may sign in with.
struct Provider {
    label: String,
    href: String,
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    csrf: &'a str,
    error: Option<&'a str>,
    providers: Vec<Provider>,
}

/// The sign-in page: the token form with its CSRF token, a button per OIDC issuer (by label) that offers
/// sign-in, and what went wrong last time.
pub fn signin_page(csrf: &str, error: Option<&str>, oidc_labels: &[String]) -> Result<String, RenderError> {
    let providers =
        oidc_labels.iter().map(|label| Provider { label: label.clone(), href: format!("/ui/signin/oidc/{}", encode(label)) }).collect();
    Ok(SignInPage { csrf, error, providers }.render()?)
}

#[derive(Template)]
#[template(path = "signed_in.html")]
struct SignedInPage<'a> {
    name: &'a str,
    next: &'a str,
}

/// The answer to an identity provider's redirect back: the session cookie is set, and the page moves on to
/// `next` by itself (a refresh, which is a navigation from this site, so the browser sends its
/// `SameSite=Strict` cookie), with a link in case it does not.
pub fn signed_in_page(name: &str, next: &str) -> Result<String, RenderError> {
    Ok(SignedInPage { name, next }.render()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oidc_buttons_only_for_issuers_with_sign_in() {
        let none = signin_page("c", None, &[]).unwrap();
        assert!(!none.contains("Sign in with") && none.contains(r#"<label for="token">"#), "{none}");
        let page = signin_page("c", Some("That failed <b>"), &["corp".to_owned(), "lab-2".to_owned()]).unwrap();
        assert!(page.contains(r#"href="/ui/signin/oidc/corp">Sign in with corp</a>"#), "{page}");
        assert!(page.contains(r#"href="/ui/signin/oidc/lab-2">Sign in with lab-2</a>"#), "{page}");
        assert!(page.contains("That failed &#60;b&#62;") || page.contains("That failed &lt;b&gt;"), "escaped: {page}");
    }

    #[test]
    fn the_signed_in_page_moves_on_without_a_script() {
        let page = signed_in_page("Alice <A>", "/ui/jit").unwrap();
        assert!(page.contains(r#"<meta http-equiv="refresh" content="0; url=/ui/jit">"#), "{page}");
        assert!(page.contains(r#"<a href="/ui/jit">"#) && !page.contains("<script"), "{page}");
        assert!(!page.contains("Alice <A>"), "escaped: {page}");
    }
}
