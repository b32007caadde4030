//! HTTP plumbing shared by the routes: ARM errors as responses, strict body,
//! path and query extraction, and paging links.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use ajar_api::ApiError;
use ajar_store::StoreError;

/// An error answered as an ARM `CloudError` body.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], self.0.to_json()).into_response()
    }
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(p) => HttpError(p.into()),
            StoreError::Backend(msg) => {
                tracing::error!(error = %msg, "store failure");
                HttpError(ApiError::internal())
            }
        }
    }
}

pub type HttpResult<T> = Result<T, HttpError>;

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn not_json() -> HttpError {
    HttpError(ApiError::new(415, "UnsupportedMediaType", "send the body as JSON with 'Content-Type: application/json'"))
}

/// A JSON request body, within the size limit, with `Content-Type: application/json`.
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let bytes = Bytes::from_request(req, state).await.map_err(unreadable_body)?;
        if bytes.is_empty() {
            return Err(HttpError(ApiError::new(
                400,
                "InvalidRequestContent",
                "the request body is empty; this operation needs a JSON body",
            )));
        }
        Ok(JsonBody(bytes))
    }
}

/// As [`JsonBody`], for an operation whose body may be left out: no body at all, with or without a
/// `Content-Type`, is an empty one.
pub struct OptionalJsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for OptionalJsonBody {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state).await.map_err(unreadable_body)?;
        if !bytes.is_empty() && !json {
            return Err(not_json());
        }
        Ok(OptionalJsonBody(bytes))
    }
}

fn unreadable_body(rejection: BytesRejection) -> HttpError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        HttpError(ApiError::new(413, "RequestEntityTooLarge", "the request body is larger than this server accepts"))
    } else {
        HttpError(ApiError::new(400, "InvalidRequestContent", format!("the request body could not be read: {rejection}")))
    }
}

/// Reads the whole request body (within the body limit) before the request goes on. An answer given
/// with the body still unread (a refused token, a missing api-version, an unknown route) makes the
/// connection close with data in flight, and the client then sees a reset instead of the answer.
pub async fn read_body_first(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    match Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await {
        Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(rejection) => unreadable_body(rejection).into_response(),
    }
}

/// Path parameters, with ARM errors instead of axum's plain-text rejections.
pub struct ArmPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ArmPath<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ArmPath(p.0))
            .map_err(|e| HttpError(ApiError::new(400, "InvalidResourceId", format!("the URL path is malformed: {e}"))))
    }
}

/// Query parameters by name. Unknown ones are ignored, as ARM does.
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let pairs = parts.uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        Ok(Query(pairs))
    }
}

/// The link to the next page: this URL with `$skipToken` set to the continuation key.
pub fn next_link(headers: &HeaderMap, parts_uri: &axum::http::Uri, next: Option<String>) -> Option<String> {
    let key = next?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| parts_uri.authority().map(|a| a.as_str()))?;
    let kept: Vec<(String, String)> = parts_uri
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().filter(|(k, _)| k != "$skipToken").collect())
        .unwrap_or_default();
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in kept {
        query.append_pair(&k, &v);
    }
    query.append_pair("$skipToken", &URL_SAFE_NO_PAD.encode(key));
    Some(format!("https://{host}{}?{}", parts_uri.path(), query.finish()))
}

/// The continuation key a `$skipToken` carries.
pub fn skip_token(query: &Query) -> HttpResult<Option<String>> {
    query
        .get("$skipToken")
        .map(|t| {
            URL_SAFE_NO_PAD.decode(t).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| {
                HttpError(ApiError::bad_request("InvalidSkipToken", "$skipToken", "the $skipToken is not one this server issued"))
            })
        })
        .transpose()
}
