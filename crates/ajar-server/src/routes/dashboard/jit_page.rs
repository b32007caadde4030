//! "Just-in-time VM access": the three tabs of machines the caller may read.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use time::OffsetDateTime;

use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::actions;
use ajar_domain::ids::Scope;
use ajar_web::{Allowed, Filter, JitListing, Listed, Tab};

use super::{SignedIn, html, rendered};
use crate::http::{HttpResult, Query};
use crate::routes::AppState;

/// "Just-in-time VM access": every machine the caller may read JIT at, on three tabs.
pub(in crate::routes) async fn jit(
    State(state): State<AppState>,
    SignedIn { caller, session }: SignedIn,
    query: Query,
) -> HttpResult<Response> {
    let tab = query.get("tab").and_then(Tab::parse).unwrap_or(Tab::Configured);
    // A page number that is not one shows the first page.
    let page_number = query.get("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1);
    let filter = Filter {
        subscription: query.get("subscription").unwrap_or_default().to_owned(),
        resource_group: query.get("resourceGroup").unwrap_or_default().to_owned(),
        location: query.get("location").unwrap_or_default().to_owned(),
        name: query.get("name").unwrap_or_default().to_owned(),
    };
    let index = state.access.index().await?;
    let ids = caller.ids();
    let mut subscriptions = Vec::new();
    let mut listed = Vec::new();
    let within = state.readable_within(&caller, actions::JIT_READ).await?;
    for sub in state.store.subscriptions().await? {
        if !index.may_any_below(&ids, actions::JIT_READ, &AccessScope::subscription_scope(&sub.id)) {
            continue;
        }
        subscriptions.push(sub.id.to_string());
        let scope = Scope { subscription: sub.id.clone(), resource_group: None, location: None };
        for (vm, jit_state) in state.store.jit_states(&scope, within.clone()).await? {
            let scope = AccessScope::from(&vm.id);
            if !index.check(&ids, actions::JIT_READ, &scope).is_allowed() {
                continue;
            }
            let allowed = Allowed {
                request: index.check(&ids, actions::JIT_INITIATE, &scope).is_allowed(),
                configure: index.check(&ids, actions::JIT_WRITE, &scope).is_allowed()
                    && index.check(&ids, actions::VM_WRITE, &scope).is_allowed(),
            };
            listed.push(Listed { vm, state: jit_state, allowed });
        }
    }
    let listing = JitListing::new(tab, page_number, &filter, &listed);
    let statuses = state.store.vm_statuses_of(listing.page().map(|l| l.vm.id.clone()).collect()).await?;
    let page = rendered(listing.render(&caller.principal.name, &session.csrf, subscriptions, &statuses, OffsetDateTime::now_utc()))?;
    Ok(html(StatusCode::OK, page, Vec::new()))
}
