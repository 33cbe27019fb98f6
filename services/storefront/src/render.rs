//! Pages in the shop's layout, with their security headers, in one place:
//! every page goes out through [`page`], so none misses its CSP or the
//! cookies its visitor needs. Text is escaped by kit::html, once.

use crate::session::Visitor;
use crate::upstream::Down;
use crate::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kit::html::{self, escape, Part};

const LAYOUT: &str = include_str!("../templates/layout.html");
const STYLESHEET: &str = include_str!("../templates/shop.css");

/// No scripts at all; styles only from our own stylesheet; forms only to
/// ourselves; never framed.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       base-uri 'none'; frame-ancestors 'none'";

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// A note at the top of the page.
pub enum Message {
    None,
    Ok(String),
    Error(String),
}

impl Message {
    fn markup(&self) -> String {
        match self {
            Message::None => String::new(),
            Message::Ok(t) => format!(
                r#"<div class="message ok" id="message" role="status">{}</div>"#,
                escape(t)
            ),
            Message::Error(t) => format!(
                r#"<div class="message error" id="message" role="alert">{}</div>"#,
                escape(t)
            ),
        }
    }

    /// The fixed notes a redirect may ask for (`?m=…`): a code, never
    /// text from the URL, so nobody can make the shop say their words.
    pub fn from_code(code: Option<&str>) -> Self {
        let ok = |t: &str| Message::Ok(t.to_owned());
        match code {
            Some("welcome") => ok("Welcome! Your account is ready and you are logged in."),
            Some("logged-in") => ok("You are logged in."),
            Some("logged-out") => ok("You are logged out."),
            Some("topped-up") => ok("The money is in your wallet."),
            Some("login-first") => Message::Error("Please log in first.".into()),
            _ => Message::None,
        }
    }
}

/// The words for a service that did not answer.
pub fn down_message(d: Down) -> Message {
    Message::Error(format!(
        "The {} service is not answering right now. Nothing was changed; please try again in a moment.",
        d.0.name()
    ))
}

/// A whole page: `main` is markup built from escaped parts.
pub fn page(
    state: &State,
    v: &Visitor,
    status: StatusCode,
    title: &str,
    message: Message,
    main: &str,
) -> Response {
    let message = match (&message, v.session_ended) {
        (Message::None, true) => {
            Message::Error("Your session has ended; please log in again.".into())
        }
        _ => message,
    };
    let body = html::fill(
        LAYOUT,
        &[
            ("title", Part::Text(title)),
            ("nav", Part::Markup(&nav(state, v))),
            ("message", Part::Markup(&message.markup())),
            ("main", Part::Markup(main)),
        ],
    )
    .expect("templates/layout.html uses exactly these names (tested)");
    let mut res = html::page_response(status, body, CSP);
    let h = res.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Pages show one shopper's data: never kept by a shared cache.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in v.cookies() {
        h.append(header::SET_COOKIE, c);
    }
    res
}

/// See Other to `to` (after a form: a reload does not post it again),
/// setting `cookies` and whatever the visitor needs.
pub fn redirect(v: &Visitor, to: &str, cookies: &[HeaderValue]) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    if let Ok(loc) = HeaderValue::from_str(to) {
        h.insert(header::LOCATION, loc);
    }
    for c in v.cookies().into_iter().chain(cookies.iter().cloned()) {
        h.append(header::SET_COOKIE, c);
    }
    res
}

fn nav(state: &State, v: &Visitor) -> String {
    match &v.shopper {
        Some(_) => format!(
            r#"<a href="/">Catalogue</a> <a href="/cart">Cart</a> <a href="/orders">Orders</a> <a href="/wallet">Wallet</a> <form method="post" action="/logout"><input type="hidden" name="csrf" value="{}"><button id="logout" type="submit">Log out</button></form>"#,
            escape(&v.csrf_token(&state.csrf))
        ),
        None => {
            r#"<a href="/">Catalogue</a> <a href="/login">Log in</a> <a href="/signup">Sign up</a>"#
                .to_owned()
        }
    }
}

/// `amount` minor units of `currency` as a shopper reads it: "12.50 EUR".
pub fn money(amount: i64, currency: &str) -> String {
    format!("{} {currency}", kit::money::format_minor(amount, currency))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_takes_exactly_its_parts() {
        let page = html::fill(
            LAYOUT,
            &[
                ("title", Part::Text("<T>")),
                ("nav", Part::Markup("")),
                ("message", Part::Markup("")),
                ("main", Part::Markup("")),
            ],
        )
        .unwrap();
        assert!(page.contains("<title>&lt;T&gt; · eshop</title>"));
    }

    #[test]
    fn redirect_messages_are_codes_not_text() {
        assert!(matches!(
            Message::from_code(Some("<script>")),
            Message::None
        ));
        assert!(matches!(
            Message::from_code(Some("topped-up")),
            Message::Ok(_)
        ));
    }
}
