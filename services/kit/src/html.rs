//! HTML for the services' server-rendered pages, in one place: text is
//! escaped exactly once, here, and a page template is filled in a single
//! pass, so what one value holds (`{{outcome}}`, markup) is never read as
//! part of the template.

/// Escapes text for element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page as a response: HTML with its Content-Security-Policy, and
/// `nosniff` so nothing it carries is ever run as another type.
pub fn page_response(
    status: axum::http::StatusCode,
    html: String,
    csp: &'static str,
) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    use axum::response::IntoResponse;
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// What goes into a `{{name}}` of a page template.
pub enum Part<'a> {
    /// Input or data: escaped here.
    Text(&'a str),
    /// Markup the service built from escaped parts.
    Markup(&'a str),
}

/// Fills every `{{name}}` of `template` in one pass. A name with no part,
/// or a part the template does not use, is an error: a page that would
/// ship a stray placeholder or lose a value is a bug.
pub fn fill(template: &str, parts: &[(&str, Part<'_>)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut used = vec![false; parts.len()];
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("unclosed {{ in template")?;
        let name = after[..end].trim();
        let i = parts
            .iter()
            .position(|(n, _)| *n == name)
            .ok_or_else(|| format!("template uses {name:?}, which has no value"))?;
        used[i] = true;
        match &parts[i].1 {
            Part::Text(t) => out.push_str(&escape(t)),
            Part::Markup(m) => out.push_str(m),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    match used.iter().position(|u| !u) {
        Some(i) => Err(format!("{:?} is not in the template", parts[i].0)),
        None => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_input_is_escaped() {
        assert_eq!(
            escape(r#"<script>"x"&'y'"#),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;"
        );
    }

    #[test]
    fn a_value_holding_a_placeholder_stays_text() {
        let page = fill(
            "<input value=\"{{q}}\"><div>{{outcome}}</div>",
            &[
                ("q", Part::Text("{{outcome}}<b>")),
                ("outcome", Part::Markup("<p>ok</p>")),
            ],
        )
        .unwrap();
        assert_eq!(
            page,
            "<input value=\"{{outcome}}&lt;b&gt;\"><div><p>ok</p></div>"
        );
        assert!(fill("{{x}}", &[]).is_err());
        assert!(fill("x", &[("y", Part::Text(""))]).is_err());
    }
}
