//! The landing page: a plain HTML form that works without JavaScript. The
//! form GETs `/` with its fields in the query, so a result is also a link.

use crate::api::{self, check_product_id, check_quantity, PriceError, PriceQuery};
use crate::quote::Quote;
use crate::State as AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use kit::extract::Query;
use kit::html::{self, escape, Part};
use kit::money::format_minor;
use kit::telemetry::RequestContext;
use std::sync::Arc;

const TEMPLATE: &str = include_str!("../templates/index.html");

/// Only inline styles are used; no scripts, frames or foreign resources.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub async fn landing(
    State(state): State<Arc<AppState>>,
    ctx: RequestContext,
    Query(q): Query<PriceQuery>,
) -> Response {
    let (status, outcome) = if q.product_id.is_none() && q.quantity.is_none() {
        (StatusCode::OK, String::new())
    } else {
        match price(&state, &ctx, &q).await {
            Ok(quote) => (StatusCode::OK, render_quote(&quote)),
            Err(e) => (
                e.status(),
                format!(
                    r#"<div class="error" id="error" role="alert">{}</div>"#,
                    escape(&e.message())
                ),
            ),
        }
    };
    let html = html::fill(
        TEMPLATE,
        &[
            (
                "product_id",
                Part::Text(q.product_id.as_deref().unwrap_or("")),
            ),
            ("quantity", Part::Text(q.quantity.as_deref().unwrap_or(""))),
            ("outcome", Part::Markup(&outcome)),
        ],
    )
    .expect("templates/index.html uses exactly these names (tested)");
    html::page_response(status, html, CSP)
}

async fn price(
    state: &AppState,
    ctx: &RequestContext,
    q: &PriceQuery,
) -> Result<Quote, PriceError> {
    let id = check_product_id(q.product_id.as_deref())?;
    let quantity = check_quantity(q.quantity.as_deref(), state.max_quantity)?;
    api::calculate(state, ctx, &id, quantity).await
}

fn render_quote(q: &Quote) -> String {
    let m = |v: i64| format!("{} {}", escape(&q.currency), format_minor(v, &q.currency));
    let discount = if q.discount_minor > 0 {
        format!(
            r#"<tr><td>Volume discount ({}%)</td><td class="amount" id="discount">−{}</td></tr>"#,
            q.discount_percent,
            m(q.discount_minor)
        )
    } else {
        String::new()
    };
    format!(
        r#"<div class="result" id="result">
<h2 id="product-name">{name}</h2>
<p id="availability" data-status="{status}">{avail}</p>
<table>
<tr><td>{qty} × {unit}</td><td class="amount" id="subtotal">{subtotal}</td></tr>
{discount}
<tr><td>Tax ({tax_pct}%)</td><td class="amount" id="tax">{tax}</td></tr>
<tr class="total"><td>Total</td><td class="amount" id="total">{total}</td></tr>
</table>
</div>"#,
        name = escape(&q.product_name),
        status = serde_json::to_value(q.availability.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        avail = escape(&q.availability.message),
        qty = q.quantity,
        unit = m(q.unit_price_minor),
        subtotal = m(q.subtotal_minor),
        tax_pct = q.tax_percent,
        tax = m(q.tax_minor),
        total = m(q.total_minor),
    )
}

#[cfg(test)]
mod tests {
    /// The page's names and the template's agree (the `expect` above).
    #[test]
    fn the_template_takes_exactly_the_pages_parts() {
        use kit::html::Part;
        let page = kit::html::fill(
            super::TEMPLATE,
            &[
                ("product_id", Part::Text("{{outcome}}")),
                ("quantity", Part::Text("1")),
                ("outcome", Part::Markup("")),
            ],
        )
        .unwrap();
        assert!(page.contains(r#"value="{{outcome}}""#));
    }
}
