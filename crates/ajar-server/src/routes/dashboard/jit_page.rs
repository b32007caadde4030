//! "Just-in-time VM access": the three tabs of machines the caller may read.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use time::OffsetDateTime;

use ajar_domain::access::Scope as AccessScope;
use ajar_domain::activity::actions;
use ajar_domain::ids::Scope;
use ajar_store::PageRequest;
use ajar_web::{Allowed, Filter, Tab};

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
    let filter = Filter {
        subscription: query.get("subscription").unwrap_or_default().to_owned(),
        resource_group: query.get("resourceGroup").unwrap_or_default().to_owned(),
        location: query.get("location").unwrap_or_default().to_owned(),
        name: query.get("name").unwrap_or_default().to_owned(),
    };
    let index = state.access.index().await?;
    let ids = caller.ids();
    let mut subscriptions = Vec::new();
    let mut statuses = Vec::new();
    for sub in state.store.subscriptions().await? {
        if !index.may_any_below(&ids, actions::JIT_READ, &AccessScope::subscription_scope(&sub.id)) {
            continue;
        }
        subscriptions.push(sub.id.to_string());
        let scope = Scope { subscription: sub.id.clone(), resource_group: None, location: None };
        let mut after = None;
        loop {
            let page = state.store.vm_statuses(&scope, PageRequest { after, size: 500 }).await?;
            for status in page.items {
                let scope = AccessScope::from(&status.vm.id);
                if !index.check(&ids, actions::JIT_READ, &scope).is_allowed() {
                    continue;
                }
                let allowed = Allowed {
                    request: index.check(&ids, actions::JIT_INITIATE, &scope).is_allowed(),
                    configure: index.check(&ids, actions::JIT_WRITE, &scope).is_allowed()
                        && index.check(&ids, actions::VM_WRITE, &scope).is_allowed(),
                };
                statuses.push((status, allowed));
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    let page = rendered(ajar_web::jit_page(
        &caller.principal.name,
        &session.csrf,
        tab,
        &filter,
        subscriptions,
        &statuses,
        OffsetDateTime::now_utc(),
    ))?;
    Ok(html(StatusCode::OK, page, Vec::new()))
}
