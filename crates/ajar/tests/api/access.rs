//! Who may call: throttled authentication failures, and the caller's address behind a proxy.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::Server;

const ACTIVITY: &str = "/ajar/v1/activity?limit=100";

#[tokio::test]
async fn repeated_authentication_failures_are_slowed_down_and_logged_once_per_block() {
    let s = Server::start(&[]).await;
    for i in 0..6 {
        let (st, v, _) = s.send(Method::GET, ACTIVITY, Some(&format!("ajar_guess-{i}")), None, "").await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "attempt {i}: {v}");
    }
    // The sixth failure blocked the address for a second: even a valid token waits.
    for token in ["ajar_guess-again", s.token.as_str()] {
        let (st, v, headers) = s.send(Method::GET, ACTIVITY, Some(token), None, "").await;
        assert_eq!((st, v["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("TooManyRequests")), "{v}");
        assert_eq!(headers["retry-after"], "1");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (st, v, _) = s.send(Method::GET, ACTIVITY, Some(&s.token), None, "").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let refused: Vec<&Value> = v["value"].as_array().unwrap().iter().filter(|e| e["operation"] == "Ajar/authenticate").collect();
    assert_eq!(refused.len(), 6, "each refused attempt before the block is on record, none while blocked: {refused:?}");
    assert!(refused.iter().any(|e| e.to_string().contains("blockedForSeconds")), "{refused:?}");
    assert!(!v.to_string().contains("guess-"), "tokens never reach the log");
}

#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    for (args, expected) in [(vec![], "127.0.0.1"), (vec!["--trusted-proxy", "127.0.0.1"], "198.51.100.7")] {
        let s = Server::start(&args).await;
        let forwarded = [("x-forwarded-for", "203.0.113.1, 198.51.100.7")];
        let (st, _, _) = s.send_with(Method::GET, ACTIVITY, Some("ajar_unknown"), None, "", &forwarded).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        let log = s.activity("limit=10").await;
        let refused = log.iter().find(|e| e["operation"] == "Ajar/authenticate").unwrap();
        assert_eq!(refused["callerAddress"], expected, "{args:?}: {refused}");
    }
}
