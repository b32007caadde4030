//! The activity log: overall, or one machine's (`?vm=ID`), newest first, filtered and paged; and
//! "Download as CSV" with the same filters, as the API's export. Exactly the entries the API lets the
//! caller read, selected by the same function.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use ajar_domain::activity::ActivityQuery;
use ajar_web::{ActivityFilter, ActivityPage, CSV_LIMIT, FilterErrors, PAGE_SIZE, Paging, SEARCH_STRETCH, Stretch};

use super::{SignedIn, html, message, rendered};
use crate::http::{HttpError, HttpResult, Query};
use crate::routes::AppState;
use crate::routes::ajar_v1::{activity_csv as csv_response, activity_within};

/// A refusal as a page; any other failure as it is.
fn refused(e: HttpError) -> HttpResult<Response> {
    if e.0.status == 403 {
        return message(
            StatusCode::FORBIDDEN,
            "Refused",
            &format!("{} You need the Ajar/activityLog/read permission for this.", e.0.body.message),
        );
    }
    Err(e)
}

pub(in crate::routes) async fn activity(
    State(state): State<AppState>,
    SignedIn { caller, session }: SignedIn,
    query: Query,
) -> HttpResult<Response> {
    let within = match activity_within(&state, &caller).await {
        Ok(w) => w,
        Err(e) => return refused(e),
    };
    let filter = ActivityFilter::from_query(|name| query.get(name));
    let before = match query.get("before").map(str::parse::<i64>) {
        None => None,
        Some(Ok(seq)) => Some(seq),
        Some(Err(_)) => return message(StatusCode::BAD_REQUEST, "Not a page", "The address names no page of the activity log."),
    };
    let (status, entries, paging, errors) = match filter.to_query() {
        Ok(q) => {
            let newest = match before {
                Some(_) => 0,
                None => {
                    state.store.activity(ActivityQuery { limit: Some(1), ..ActivityQuery::default() }).await?.first().map_or(0, |e| e.seq)
                }
            };
            let stretch = Stretch::new(before, newest, SEARCH_STRETCH);
            let query = ActivityQuery { within, before: Some(stretch.top), after: Some(stretch.floor), limit: Some(PAGE_SIZE + 1), ..q };
            let mut entries = state.store.activity(query).await?;
            let paging = stretch.paging(&mut entries, PAGE_SIZE, before.is_some());
            (StatusCode::OK, entries, paging, FilterErrors::default())
        }
        Err(errors) => (StatusCode::BAD_REQUEST, Vec::new(), Paging::default(), errors),
    };
    let page = ActivityPage::new(&caller.principal.name, &session.csrf, filter, errors, &entries, paging);
    Ok(html(status, rendered(page.render_page())?, Vec::new()))
}

/// "Download as CSV": a GET that changes nothing, so it needs a session but no CSRF token.
pub(in crate::routes) async fn activity_csv(
    State(state): State<AppState>,
    SignedIn { caller, .. }: SignedIn,
    query: Query,
) -> HttpResult<Response> {
    let within = match activity_within(&state, &caller).await {
        Ok(w) => w,
        Err(e) => return refused(e),
    };
    match ActivityFilter::from_query(|name| query.get(name)).to_query() {
        Ok(q) => csv_response(&state.store.activity(ActivityQuery { within, limit: Some(CSV_LIMIT), ..q }).await?),
        Err(errors) => {
            let problems: Vec<String> = [errors.vm, errors.result, errors.since, errors.until].into_iter().flatten().collect();
            message(StatusCode::BAD_REQUEST, "Not a filter", &problems.join(" "))
        }
    }
}
