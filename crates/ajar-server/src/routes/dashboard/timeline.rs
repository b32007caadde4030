//! The timeline of grants over a day or a week, on the machines the caller may read JIT at.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use time::OffsetDateTime;

use ajar_domain::activity::actions;
use ajar_domain::history::GrantHistory;
use ajar_web::{TIMELINE_LIMIT, TimelineForm, TimelinePage};

use super::{SignedIn, html, rendered};
use crate::http::{HttpResult, Query};
use crate::routes::AppState;

pub(in crate::routes) async fn timeline(
    State(state): State<AppState>,
    SignedIn { caller, session }: SignedIn,
    query: Query,
) -> HttpResult<Response> {
    let now = OffsetDateTime::now_utc();
    let form = TimelineForm::from_query(|name| query.get(name));
    let window = form.window(now);
    let history = match &window {
        Ok(w) => match state.readable_within(&caller, actions::JIT_READ).await? {
            // Nothing to read anywhere: nothing to ask the store.
            Some(scopes) if scopes.is_empty() => GrantHistory::default(),
            within => state.store.grants_between(w.from, w.to, within, TIMELINE_LIMIT).await?,
        },
        Err(_) => GrantHistory::default(),
    };
    let status = if window.is_ok() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let page = TimelinePage::new(&caller.principal.name, &session.csrf, &form, window, &history, now);
    Ok(html(status, rendered(page.render_page())?, Vec::new()))
}
