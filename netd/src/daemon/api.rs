//! The HTTP/JSON API on the daemon's unix socket. Requests are handled one
//! at a time (one lock around the service), so every change is applied and
//! persisted whole before the next one starts.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;
use tokio::sync::Mutex;

use super::{
    error::ServiceError,
    requests::{AddGuest, CreateNetwork},
    service::Service,
    status,
};

pub type Shared = Arc<Mutex<Service>>;

pub fn router(service: Shared) -> Router {
    Router::new()
        .route("/v1/networks", get(list_networks).post(create_network))
        .route(
            "/v1/networks/{network}",
            get(inspect_network).delete(remove_network),
        )
        .route(
            "/v1/networks/{network}/guests",
            get(list_guests).post(add_guest),
        )
        .route(
            "/v1/networks/{network}/guests/{guest}",
            get(inspect_guest).delete(remove_guest),
        )
        .route("/v1/status", get(status))
        .route("/v1/cleanup", post(cleanup))
        .with_state(service)
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let ServiceError::Internal(err) = &self {
            tracing::error!("{err:#}");
        }
        (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ServiceError>;

fn ok<T: Serialize>(value: T) -> ApiResult<T> {
    Ok(Json(value))
}

async fn list_networks(State(svc): State<Shared>) -> ApiResult<Vec<super::requests::NetworkView>> {
    let svc = svc.lock().await;
    ok(svc
        .state
        .networks
        .values()
        .map(|n| svc.network_view(n))
        .collect())
}

async fn create_network(
    State(svc): State<Shared>,
    Json(request): Json<CreateNetwork>,
) -> ApiResult<super::requests::NetworkView> {
    ok(svc.lock().await.create_network(request).await?)
}

async fn inspect_network(
    State(svc): State<Shared>,
    Path(network): Path<String>,
) -> ApiResult<super::requests::NetworkView> {
    let svc = svc.lock().await;
    let net = svc.network(&network)?;
    ok(svc.network_view(net))
}

async fn remove_network(State(svc): State<Shared>, Path(network): Path<String>) -> ApiResult<()> {
    ok(svc.lock().await.remove_network(&network).await?)
}

async fn list_guests(
    State(svc): State<Shared>,
    Path(network): Path<String>,
) -> ApiResult<Vec<super::requests::GuestView>> {
    let svc = svc.lock().await;
    let net = svc.network(&network)?;
    ok(net
        .guests
        .values()
        .map(|g| svc.guest_view(net, g))
        .collect())
}

async fn add_guest(
    State(svc): State<Shared>,
    Path(network): Path<String>,
    Json(request): Json<AddGuest>,
) -> ApiResult<super::requests::GuestView> {
    ok(svc.lock().await.add_guest(&network, request).await?)
}

async fn inspect_guest(
    State(svc): State<Shared>,
    Path((network, guest)): Path<(String, String)>,
) -> ApiResult<super::requests::GuestView> {
    let svc = svc.lock().await;
    let net = svc.network(&network)?;
    let g = net.guests.get(&guest).ok_or_else(|| {
        ServiceError::NotFound(format!(
            "no guest named {guest:?} in network {network:?}: `netd guest ls {network}` lists them"
        ))
    })?;
    ok(svc.guest_view(net, g))
}

async fn remove_guest(
    State(svc): State<Shared>,
    Path((network, guest)): Path<(String, String)>,
) -> ApiResult<()> {
    ok(svc.lock().await.remove_guest(&network, &guest).await?)
}

async fn status(State(svc): State<Shared>) -> ApiResult<status::Status> {
    let svc = svc.lock().await;
    ok(status::collect(&svc).await)
}

async fn cleanup(State(svc): State<Shared>) -> ApiResult<super::requests::CleanupReport> {
    ok(svc.lock().await.cleanup().await?)
}
