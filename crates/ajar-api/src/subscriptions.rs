//! `GET /subscriptions`: the subscriptions a caller can see.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionOut {
    pub id: String,
    pub subscription_id: String,
    pub display_name: String,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionList {
    pub value: Vec<SubscriptionOut>,
}

pub fn subscription_out(id: &str, display_name: &str) -> SubscriptionOut {
    SubscriptionOut {
        id: format!("/subscriptions/{id}"),
        subscription_id: id.to_owned(),
        display_name: display_name.to_owned(),
        state: "Enabled".to_owned(),
    }
}
